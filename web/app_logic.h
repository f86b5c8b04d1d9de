// The app's logic: what happens when the browser answers a request or the user acts. Plain
// functions of AppState (app.h); every request to the browser goes through AppState::host
// (host.h). No ImGui, no GL, no JavaScript: tested natively in tests/web/.
//
// The batch pipeline (at most kMaxWorkInFlight images at once, app.h): read the file
// (Host::read_image_file) -> decode and preprocess it with the shared core exactly as the model
// card says, into the staged batch -> up to kMaxBatchImages inputs in one run of ORT Web in its
// worker (Host::run_model), while the next ones are read and decoded -> loupe::interpret_outputs()
// per image (the same code as `loupe predict`). Only the selected image's pixels are kept; a batch
// of thousands holds a few files' bytes and input tensors at any time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "app.h"
#include "loupe/heatmap.h"

namespace loupe_web {

// [SECTION] Answers from the browser (main.cpp's exported C callbacks call these). Strings and
// buffers stay the caller's.
void on_ort_status(AppState& app, OrtStatus status, const std::string& version, const std::string& backend, int threads,
                   const std::string& error);
void on_shipped_models(AppState& app, const char* manifest_json, const char* error);
// A model file's bytes (null: it could not be read, `error` says why). Its card is read with the
// shared core, then a session is requested; the active model stays until the new one is up.
void on_model_file(AppState& app, const uint8_t* bytes, size_t size, const std::string& file, const std::string& source,
                   const char* error);
void on_ort_session(AppState& app, int request, int session, const std::string& weights_sha256, const char* error);
// A run's outputs (data null on failure), laid out as ort_bridge.h says.
void on_ort_run(AppState& app, int request, const float* data, size_t count, const char* layout_json, const char* error);
// The SHA-256 a Host::sha256 request asked for (the model's self-test record).
void on_sha256(AppState& app, int request, const std::string& hex);
void on_image_file_added(AppState& app, int file_index, const std::string& name, const std::string& path, double size);
// A file's bytes (null: it could not be read), or a DICOM file's pixel data with the attributes
// the page parsed (`dicom_attributes` JSON, else empty).
void on_image_file_read(AppState& app, int request, const uint8_t* bytes, size_t size, const char* dicom_attributes,
                        const char* error);

// [SECTION] What the user did in one frame (draw_app's UiActions).
void apply(AppState& app, const UiActions& actions);

// [SECTION] Derived state
// Recomputes AppState::views (table rows, results, evaluation) when the images or the model
// changed since the last call; the frame loop calls it before drawing.
void refresh_views(AppState& app);
// One class's normalised activation map of the selected image.
loupe::HeatMap class_heat_map(const CamResult& cam, int cls);
// The results table of every image, in the table's order unless a filter hides some (then in
// file order): what "Export CSV" downloads.
std::string export_csv(const AppState& app);
// The active model's intended images (its card's), or null when it states none or none is ready.
const loupe::IntendedImages* intended_images(const AppState& app);
// What in a DICOM entry contradicts the active model's intended images ("" when nothing does).
std::string intended_use_warning(const AppState& app, const ImageEntry& entry);

}  // namespace loupe_web
