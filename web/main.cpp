// Loupe in the browser: a Dear ImGui page over loupe::core, drawn on WebGL2, classifying with
// ONNX Runtime Web.
//
// Everything the page shows lives in one AppState (app.h), drawn by draw_app() (draw.cpp). Three
// things write it, all here: the frame loop (frame counter, canvas size, textures), callbacks the
// JS side makes between frames (ORT status, models and files opened, file bytes read, inference
// results), and the UiActions that draw_app() returns, applied after each frame. The state is
// mirrored to `window.loupe.state` every frame so the browser tests can check what is on screen
// without reading pixels.
//
// The batch pipeline, one image at a time per slot (at most kMaxWorkInFlight slots): read the
// file (image_files.js) -> decode and preprocess it with the shared core exactly as the model card
// says -> run it in ORT Web's worker (ort_bridge.js) -> store the probabilities. Only the selected
// image's pixels are kept; a batch of thousands holds a few files' bytes at any time.
//
// Index:
//   [SECTION] State for the test hook
//   [SECTION] The batch: reading, decoding, inference
//   [SECTION] Models
//   [SECTION] Applying UI actions
//   [SECTION] Frame loop (canvas size, device pixel ratio, fonts, the image texture)
//   [SECTION] Callbacks from JavaScript
//   [SECTION] main

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <GLES3/gl3.h>
#include <GLFW/glfw3.h>
#include <emscripten.h>
#include <emscripten/heap.h>
#include <nlohmann/json.hpp>

#include "app.h"
#include "classify.h"
#include "image_batch.h"
#include "image_files.h"
#include "imgui.h"
#include "imgui_impl_glfw.h"
#include "imgui_impl_opengl3.h"
#include "loupe/dicom.h"
#include "loupe/error.h"
#include "loupe/heatmap.h"
#include "loupe/image.h"
#include "loupe/image_report.h"
#include "loupe/onnx_model.h"
#include "loupe/preprocess.h"
#include "loupe/version.h"
#include "model_files.h"
#include "ort_bridge.h"
#include "page.h"

using loupe_web::AppState;
using loupe_web::EntryStatus;
using loupe_web::ImageEntry;
using loupe_web::ImageView;
using loupe_web::ModelStatus;
using loupe_web::OrtStatus;
using loupe_web::PredictionStatus;
using loupe_web::UiActions;

static AppState g_app;

namespace loupe_web {

const char* to_string(OrtStatus status) {
  switch (status) {
    case OrtStatus::loading: return "loading";
    case OrtStatus::ready: return "ready";
    case OrtStatus::failed: return "failed";
  }
  return "unknown";
}

const char* to_string(ModelStatus status) {
  switch (status) {
    case ModelStatus::none: return "none";
    case ModelStatus::loading: return "loading";
    case ModelStatus::ready: return "ready";
    case ModelStatus::failed: return "failed";
  }
  return "unknown";
}

const std::vector<std::string>& active_classes(const AppState& app) {
  static const std::vector<std::string> none;
  return app.model.status == ModelStatus::ready ? app.model.info.card.class_names : none;
}

int heat_map_class(const AppState& app) {
  const CamResult& cam = app.cam;
  if (!app.heat_map.visible || app.model.status != ModelStatus::ready || cam.entry != app.selected ||
      cam.model_id != app.model.id || cam.values.empty() || app.selected < 0) {
    return -1;
  }
  const Prediction& p = app.images[static_cast<size_t>(app.selected)].prediction;
  const int cls = app.heat_map.class_index >= 0 ? app.heat_map.class_index : p.model_id == app.model.id ? p.top : -1;
  return cls >= 0 && cls < cam.classes ? cls : -1;
}

// An entry has a prediction (or one running) from the active model.
static bool has_prediction(const AppState& app, const ImageEntry& entry) {
  return app.model.id > 0 && entry.prediction.model_id == app.model.id &&
         entry.prediction.status != PredictionStatus::none;
}

std::string probability_note(const Model& model) {
  if (model.temperature <= 0) return model.scores_output == "probabilities" ? "not calibrated" : "softmax of the logits, not calibrated";
  char note[160];
  std::snprintf(note, sizeof note, "calibrated on the validation split (temperature scaling, T = %.3g)", model.temperature);
  return note;
}

BatchProgress batch_progress(const AppState& app) {
  BatchProgress progress;
  if (app.model.status != ModelStatus::ready) return progress;
  for (const ImageEntry& entry : app.images) {
    if (entry.status == EntryStatus::error) continue;
    ++progress.total;
    const bool finished = has_prediction(app, entry) && entry.prediction.status != PredictionStatus::running;
    progress.done += finished;
  }
  progress.running = !app.reads.empty() || !app.runs.empty() || progress.done < progress.total;
  return progress;
}

}  // namespace loupe_web

//-----------------------------------------------------------------------------------------------
// [SECTION] State for the test hook
//-----------------------------------------------------------------------------------------------

static nlohmann::json images_json(const AppState& app, bool with_list) {
  int ok = 0, failed = 0;
  for (const ImageEntry& entry : app.images) {
    ok += entry.status == EntryStatus::ok;
    failed += entry.status == EntryStatus::error;
  }
  const ImageView& view = app.view;
  nlohmann::json json = {
      {"count", app.images.size()},
      {"ok", ok},
      {"failed", failed},
      {"pending", static_cast<int>(app.images.size()) - ok - failed},
      {"revision", app.images_revision},
      {"selected", app.selected},
      {"selectedPath", app.selected >= 0 ? app.images[static_cast<size_t>(app.selected)].path : ""},
      {"table", {{"filter", app.table.filter}, {"sortColumn", static_cast<int>(app.table.sort_column)},
                 {"ascending", app.table.ascending}}},
      {"view", {{"entry", view.entry}, {"width", view.image.width}, {"height", view.image.height},
                {"channels", view.image.channels}, {"bits", view.image.depth == loupe::PixelDepth::U16 ? 16 : 8},
                {"zoom", view.zoom}, {"pan", {view.pan_x, view.pan_y}},
                {"window", {{"width", view.window.width}, {"level", view.window.level}}},
                {"texture", {{"width", view.texture_width}, {"height", view.texture_height}}}}},
  };
  // The list can hold thousands of entries: it is sent only when it changed (page.cpp keeps the
  // previous one otherwise).
  if (with_list) {
    const std::vector<std::string>& classes = loupe_web::active_classes(app);
    nlohmann::json list = nlohmann::json::array();
    for (const ImageEntry& entry : app.images) {
      nlohmann::json item = {{"name", entry.name}, {"path", entry.path}, {"size", entry.size_bytes},
                             {"status", loupe_web::status_text(entry)}, {"ok", entry.status == EntryStatus::ok},
                             {"width", entry.width}, {"height", entry.height}, {"channels", entry.channels},
                             {"bits", entry.bits}};
      const loupe_web::Prediction& p = entry.prediction;
      if (has_prediction(app, entry)) {
        item["prediction"] = {
            {"status", p.status == PredictionStatus::done ? "done" : p.status == PredictionStatus::error ? "error" : "running"},
            {"predicted", loupe_web::predicted_class(entry, classes, app.model.id)},
            {"confidence", p.confidence}, {"probabilities", p.probabilities}, {"error", p.error}};
        if (p.has_ood) item["prediction"]["ood"] = {{"distance", p.ood_distance}, {"flagged", p.out_of_distribution}};
      }
      list.push_back(std::move(item));
    }
    json["list"] = std::move(list);
    json["rows"] = loupe_web::visible_rows(app.images, app.table, classes, app.model.id);
  }
  return json;
}

static nlohmann::json model_json(const AppState& app) {
  const loupe_web::Model& model = app.model;
  nlohmann::json json = {{"status", to_string(model.status)}, {"id", model.id}, {"file", model.file},
                         {"source", model.source}, {"error", app.model_error},
                         {"loading", app.model_load ? app.model_load->file : ""}};
  if (model.status == ModelStatus::ready) {
    const loupe::ModelCard& card = model.info.card;
    json["name"] = card.name;
    json["architecture"] = card.architecture;
    json["classes"] = card.class_names;
    json["input"] = {card.input_channels, card.input_height, card.input_width};
    json["scoresOutput"] = model.scores_output;
    json["weightsSha256"] = model.weights_sha256;
    json["weightsVerified"] = !card.weights_sha256.empty() && card.weights_sha256 == model.weights_sha256;
    json["disclaimer"] = card.disclaimer;
    json["oodOutput"] = model.ood_output;
    json["oodThreshold"] = model.ood_threshold;
    json["temperature"] = model.temperature;
  }
  return json;
}

// The test hook's shape: window.loupe.state. Keep keys stable, tests depend on them.
static nlohmann::json state_json(const AppState& app, bool with_image_list) {
  const loupe_web::BatchProgress progress = loupe_web::batch_progress(app);
  nlohmann::json json = {
      {"images", images_json(app, with_image_list)},
      {"model", model_json(app)},
      {"batch", {{"total", progress.total}, {"done", progress.done}, {"running", progress.running},
                 {"paused", app.paused}, {"inFlight", app.reads.size() + app.runs.size()}}},
      {"showEvaluation", app.show_evaluation},
      {"heatMap", {{"available", app.model.status == ModelStatus::ready && app.model.info.card.has_output("cam")},
                   {"visible", app.heat_map.visible}, {"class", loupe_web::heat_map_class(app)},
                   {"opacity", app.heat_map.opacity}, {"camEntry", app.cam.entry},
                   {"camShape", {app.cam.classes, app.cam.height, app.cam.width}},
                   {"drawn", app.view.heat_ready && app.view.heat_texture_class >= 0 &&
                                 app.view.heat_texture_class == loupe_web::heat_map_class(app)}}},
      // The wasm heap only grows: its size is the app's peak memory (JS-side File handles aside).
      {"memory", {{"heapBytes", emscripten_get_heap_size()}}},
      {"ready", app.frames > 0},
      {"frames", app.frames},
      {"coreVersion", app.build.loupe_version},
      {"target", app.build.target},
      {"compiler", app.build.compiler},
      {"opencvVersion", app.build.opencv_version},
      {"crossOriginIsolated", app.page.cross_origin_isolated},
      {"hardwareConcurrency", app.page.hardware_concurrency},
      {"canvas", {{"width", app.canvas_width}, {"height", app.canvas_height}, {"pixelRatio", app.pixel_ratio}}},
      {"ort", {{"status", to_string(app.ort.status)}, {"version", app.ort.version}, {"backend", app.ort.backend},
               {"threads", app.ort.threads}, {"error", app.ort.error}}},
  };
  if (with_image_list && app.model.status == ModelStatus::ready) {
    const loupe_web::Evaluation evaluation =
        loupe_web::evaluate(app.images, app.model.info.card.class_names, app.model.id);
    nlohmann::json eval = {{"labelled", evaluation.labelled}, {"unlabelled", evaluation.unlabelled},
                           {"failed", evaluation.failed}, {"outOfDistribution", evaluation.out_of_distribution}};
    if (evaluation.report) {
      eval["report"] = evaluation.report->to_json();
      eval["text"] = evaluation.report->to_text(3);
      eval["matrix"] = evaluation.matrix->to_json();
    }
    json["evaluation"] = std::move(eval);
  }
  return json;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] The batch: reading, decoding, inference
//-----------------------------------------------------------------------------------------------

static bool reading(const AppState& app, int entry) {
  return std::any_of(app.reads.begin(), app.reads.end(),
                     [&](const loupe_web::FileRead& read) { return read.entry == entry; });
}

// The entry's file must be read: never decoded yet, or decoded but not classified by the active
// model (pixels are not kept, so classifying means reading the file again).
static bool needs_read(const AppState& app, size_t index) {
  const ImageEntry& entry = app.images[index];
  if (entry.status == EntryStatus::pending) return true;
  if (entry.status != EntryStatus::ok) return false;
  return app.model.status == ModelStatus::ready && !app.paused && !has_prediction(app, entry);
}

// Preprocesses `image` as the model card says and hands it to ORT. Failures (an image the
// preprocessing rejects) become the entry's prediction error; the batch goes on.
static void start_inference(AppState& app, int index, const loupe::Image& image) {
  ImageEntry& entry = app.images[static_cast<size_t>(index)];
  const loupe_web::Model& model = app.model;
  entry.prediction = loupe_web::Prediction{};
  entry.prediction.model_id = model.id;
  ++app.images_revision;
  loupe::Tensor input;
  try {
    input = loupe::preprocess(image, model.info.card.preprocess);
  } catch (const std::exception& error) {
    entry.prediction.status = PredictionStatus::error;
    entry.prediction.error = std::string("preprocessing: ") + error.what();
    return;
  }
  entry.prediction.status = PredictionStatus::running;
  // The selected image also gets its class activation maps, for the heat map (same forward pass).
  const bool with_cam = index == app.selected && model.info.card.has_output("cam");
  const loupe_web::InferenceRun run{app.next_request++, index, model.id, with_cam};
  app.runs.push_back(run);
  const nlohmann::json dims = input.shape;
  nlohmann::json outputs = {model.scores_output};
  if (!model.ood_output.empty()) outputs.push_back(model.ood_output);
  if (with_cam) outputs.push_back("cam");
  loupe_web::ort_bridge_run(run.request, model.session, input.data.data(), input.data.size(), dims.dump(),
                            outputs.dump());
}

// Starts the next pieces of work, up to kMaxWorkInFlight: the selected image first (its pixels
// for the viewer, its prediction), then the batch in order. Called after every change.
static void pump(AppState& app) {
  const bool model_ready = app.model.status == ModelStatus::ready;
  while (app.reads.size() + app.runs.size() < loupe_web::kMaxWorkInFlight) {
    int next = -1;
    if (app.selected >= 0) {
      ImageEntry& selected = app.images[static_cast<size_t>(app.selected)];
      const bool decoded = app.view.entry == app.selected && !app.view.image.empty();
      const bool running = std::any_of(app.runs.begin(), app.runs.end(),
                                       [&](const loupe_web::InferenceRun& r) { return r.entry == app.selected; });
      // Its heat map needs the "cam" output, which batch runs do not ask for: run it again.
      const bool needs_cam = model_ready && app.model.info.card.has_output("cam") &&
                             (app.cam.entry != app.selected || app.cam.model_id != app.model.id);
      if (decoded && model_ready && selected.status == EntryStatus::ok && !running &&
          (!has_prediction(app, selected) || needs_cam)) {
        start_inference(app, app.selected, app.view.image);  // the pixels are here: no need to read
        continue;
      }
      if (!decoded && selected.status != EntryStatus::error && !reading(app, app.selected)) next = app.selected;
    }
    while (next < 0 && app.scan_cursor < app.images.size()) {
      if (needs_read(app, app.scan_cursor) && !reading(app, static_cast<int>(app.scan_cursor))) {
        next = static_cast<int>(app.scan_cursor);
      } else {
        ++app.scan_cursor;
      }
    }
    if (next < 0) return;
    ImageEntry& image = app.images[static_cast<size_t>(next)];
    if (image.status == EntryStatus::pending) {
      image.status = EntryStatus::reading;
      ++app.images_revision;
    }
    const loupe_web::FileRead read{app.next_request++, next};
    app.reads.push_back(read);
    loupe_web::image_files_read(read.request, image.file_index);
  }
}

// Everything not yet classified by the active model is looked at again (a new model, a resume).
static void rescan(AppState& app) {
  app.scan_cursor = 0;
  ++app.images_revision;
  pump(app);
}

static void select_entry(AppState& app, int entry) {
  if (entry == app.selected) return;
  app.selected = entry;
  // Only one full image is held: drop the previous one now, not when the next one arrives.
  app.view.entry = -1;
  app.view.image = loupe::Image{};
  app.view.zoom = 1.0f;
  app.view.pan_x = app.view.pan_y = 0.0f;
  pump(app);
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Models
//-----------------------------------------------------------------------------------------------

// The model's bytes arrived: read its card with the shared core (the same checks as `loupe
// inspect`), then let ORT open it. The active model stays until the new one is up.
static void open_model_bytes(AppState& app, const unsigned char* bytes, size_t size, const std::string& file,
                             const std::string& source) {
  loupe::OnnxModelInfo info;
  try {
    info = loupe::read_onnx_model(bytes, size, file);
  } catch (const std::exception& error) {
    app.model_error = std::string("Cannot use this model: ") + error.what();
    return;
  }
  app.model_error.clear();
  loupe_web::ModelLoad load;
  load.request = app.next_request++;
  load.file = file;
  load.source = source;
  nlohmann::json ranges = nlohmann::json::array();
  for (const loupe::ByteRange& range : info.weight_ranges) ranges.push_back({range.offset, range.size});
  load.info = std::move(info);
  app.model_load = std::move(load);
  loupe_web::ort_bridge_create_session(app.model_load->request, bytes, size, ranges.dump());
}

static void activate_model(AppState& app, int session, const std::string& weights_sha256) {
  static int next_model_id = 1;
  loupe_web::ModelLoad load = std::move(*app.model_load);
  app.model_load.reset();
  if (app.model.session > 0) loupe_web::ort_bridge_release_session(app.model.session);
  loupe_web::Model& model = app.model;
  model.id = next_model_id++;
  model.status = ModelStatus::ready;
  model.file = load.file;
  model.source = load.source;
  model.info = std::move(*load.info);
  model.session = session;
  model.weights_sha256 = weights_sha256;
  model.scores_output = model.info.card.has_output("probabilities") ? "probabilities" : "logits";
  // The card's out-of-distribution check and calibration (model_card.h); absent in older models.
  const loupe::ModelCard& card = model.info.card;
  model.ood_output.clear();
  model.ood_threshold = 0;
  if (card.ood.is_object() && card.ood.value("threshold", nlohmann::json()).is_number()) {
    const auto found = card.ood.find("output");
    const std::string output = found != card.ood.end() && found->is_string() ? found->get<std::string>() : std::string();
    if (card.has_output(output)) {
      model.ood_output = output;
      model.ood_threshold = card.ood["threshold"].get<double>();
    }
  }
  model.temperature = 0;
  if (model.scores_output == "probabilities" && card.calibration.is_object() &&
      card.calibration.value("temperature", nlohmann::json()).is_number()) {
    model.temperature = card.calibration["temperature"].get<double>();
  }
  // Runs of the previous model still in flight are dropped when they answer (their model_id).
  app.paused = false;
  rescan(app);
}

// One class's normalised activation map from the selected image's "cam" output.
static loupe::HeatMap class_heat_map(const loupe_web::CamResult& cam, int cls) {
  const size_t plane = static_cast<size_t>(cam.height) * static_cast<size_t>(cam.width);
  return loupe::class_activation_map(cam.values.data() + plane * static_cast<size_t>(cls), cam.height, cam.width);
}

// The selected image's report (shared core: loupe/image_report.h), saved as a PNG download.
static void save_report(const AppState& app) {
  if (app.selected < 0 || app.view.entry != app.selected || app.model.status != ModelStatus::ready) return;
  const ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
  const loupe::ModelCard& card = app.model.info.card;
  loupe::ImageReport report;
  report.file_name = entry.path;
  report.created_utc = loupe_web::page_now_iso8601();
  report.model_name = card.name;
  report.model_file = app.model.file;
  report.architecture = card.architecture;
  report.weights_sha256 = app.model.weights_sha256;
  report.class_names = card.class_names;
  if (entry.prediction.model_id == app.model.id && entry.prediction.status == PredictionStatus::done) {
    report.probabilities = entry.prediction.probabilities;
  }
  report.disclaimer = card.disclaimer;
  report.probability_note = loupe_web::probability_note(app.model);
  const loupe_web::Prediction& p = entry.prediction;
  if (p.model_id == app.model.id && p.has_ood) {
    char status[200];
    std::snprintf(status, sizeof status, "%s (distance %.1f, threshold %.1f)",
                  p.out_of_distribution ? "this image does not look like the model's training data; its output is not reliable"
                                        : "within the range of the training data",
                  static_cast<double>(p.ood_distance), app.model.ood_threshold);
    report.ood_status = status;
    report.out_of_distribution = p.out_of_distribution;
  }
  const int cls = loupe_web::heat_map_class(app);
  if (cls >= 0) {
    report.heat_map = class_heat_map(app.cam, cls);
    report.heat_map_class = card.class_names[static_cast<size_t>(cls)];
    report.preprocess = card.preprocess;
    report.heat_map_opacity = app.heat_map.opacity;
  }
  try {
    const std::vector<uint8_t> png = loupe::encode_png(loupe::render_image_report(app.view.image, report));
    std::string stem = entry.name.substr(0, entry.name.find_last_of('.'));
    loupe_web::page_download_bytes("loupe-report-" + stem + ".png", "image/png", png);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "Loupe: cannot make the report: %s\n", error.what());
  }
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Applying UI actions
//-----------------------------------------------------------------------------------------------

static void apply(AppState& app, const UiActions& actions) {
  if (actions.open_files) loupe_web::image_files_open_picker(false);
  if (actions.open_folder) loupe_web::image_files_open_picker(true);
  if (actions.open_model) loupe_web::model_files_open_picker();
  if (actions.open_shipped) loupe_web::model_files_open_shipped(*actions.open_shipped);
  if (actions.filter) {
    app.table.filter = *actions.filter;
    ++app.images_revision;
  }
  if (actions.sort) {
    app.table.sort_column = actions.sort->first;
    app.table.ascending = actions.sort->second;
    ++app.images_revision;
  }
  if (actions.cancel_batch) {
    app.paused = true;  // runs in flight finish; nothing new starts (the selected image excepted)
    ++app.images_revision;
  }
  if (actions.resume_batch) {
    app.paused = false;
    rescan(app);
  }
  if (actions.show_evaluation) app.show_evaluation = *actions.show_evaluation;
  if (actions.save_report) save_report(app);
  if (actions.heat_map) {
    app.heat_map = *actions.heat_map;
    app.view.heat_dirty = true;
  }
  if (actions.export_csv && app.model.status == ModelStatus::ready) {
    const std::vector<int> rows =
        loupe_web::visible_rows(app.images, app.table, app.model.info.card.class_names, app.model.id);
    std::vector<int> all(app.images.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
    // Every image, in the table's order when no filter hides some, else in file order.
    const std::vector<int>& order = rows.size() == all.size() ? rows : all;
    const std::string stem = app.model.info.card.name.empty() ? std::string("loupe") : app.model.info.card.name;
    loupe_web::page_download("loupe-results-" + stem + ".csv", "text/csv",
                             loupe_web::results_csv(app.images, order, app.model.info.card.class_names, app.model.id,
                                                    !app.model.ood_output.empty()));
  }
  if (actions.select >= 0) select_entry(app, actions.select);
  if (actions.step != 0) {
    const std::vector<int> rows =
        loupe_web::visible_rows(app.images, app.table, loupe_web::active_classes(app), app.model.id);
    if (!rows.empty()) {
      const auto at = std::find(rows.begin(), rows.end(), app.selected);
      long position = at == rows.end() ? 0 : (at - rows.begin()) + actions.step;
      position = std::clamp(position, 0L, static_cast<long>(rows.size()) - 1);
      select_entry(app, rows[static_cast<size_t>(position)]);
      app.scroll_to_selected = true;
    }
  }
  ImageView& view = app.view;
  if (actions.zoom_factor != 1.0f) {
    const float zoom = std::clamp(view.zoom * actions.zoom_factor, 0.1f, 64.0f);
    const float ratio = zoom / view.zoom;
    // Keep the point under the cursor where it is.
    view.pan_x = actions.zoom_anchor_x - (actions.zoom_anchor_x - view.pan_x) * ratio;
    view.pan_y = actions.zoom_anchor_y - (actions.zoom_anchor_y - view.pan_y) * ratio;
    view.zoom = zoom;
  }
  view.pan_x += actions.pan_dx;
  view.pan_y += actions.pan_dy;
  if (actions.window) {
    view.window = *actions.window;
    view.texture_dirty = true;
  }
  if (actions.reset_view) {
    view.zoom = 1.0f;
    view.pan_x = view.pan_y = 0.0f;
    view.window = view.auto_window;
    view.texture_dirty = true;
  }
}

// [SECTION] Frame loop
//-----------------------------------------------------------------------------------------------

// Platform objects: not app state, nothing draws from them.
struct Platform {
  GLFWwindow* window = nullptr;
  double font_pixel_ratio = 0;  // the ratio the font atlas was rasterised for
  GLFWkeyfun imgui_key_callback = nullptr;
  GLFWcursorposfun imgui_cursor_callback = nullptr;
  GLFWmousebuttonfun imgui_button_callback = nullptr;
  GLFWscrollfun imgui_scroll_callback = nullptr;
  GLFWcharfun imgui_char_callback = nullptr;
  int key_steps = 0;  // next/previous presses since the last frame
  // Idle frames are skipped: an app that draws nothing new should not burn a core (on machines
  // without a GPU the browser rasterises every frame in software, which also slows ORT down).
  // Input, a callback from JS or a resize wakes the loop; it then draws a few more frames so
  // hover states and animations settle, and at least one frame a second regardless.
  bool woken = true;
  int frames_to_draw = 0;
  double last_frame_ms = 0;
};
static Platform g_platform;

// Something may have changed: draw the next frames.
static void wake() { g_platform.woken = true; }

static void on_cursor(GLFWwindow* window, double x, double y) {
  if (g_platform.imgui_cursor_callback) g_platform.imgui_cursor_callback(window, x, y);
  wake();
}
static void on_button(GLFWwindow* window, int button, int action, int mods) {
  if (g_platform.imgui_button_callback) g_platform.imgui_button_callback(window, button, action, mods);
  wake();
}
static void on_scroll(GLFWwindow* window, double dx, double dy) {
  if (g_platform.imgui_scroll_callback) g_platform.imgui_scroll_callback(window, dx, dy);
  wake();
}
static void on_char(GLFWwindow* window, unsigned int c) {
  if (g_platform.imgui_char_callback) g_platform.imgui_char_callback(window, c);
  wake();
}

// Next/previous image keys, counted as they arrive. ImGui 1.86 only sees which keys are down at
// each frame, so a press and release between two frames (a quick tap, a test's keyboard.press)
// would be lost; counting presses in the GLFW callback keeps every one.
static void on_key(GLFWwindow* window, int key, int scancode, int action, int mods) {
  if (g_platform.imgui_key_callback) g_platform.imgui_key_callback(window, key, scancode, action, mods);
  wake();
  if (action != GLFW_PRESS && action != GLFW_REPEAT) return;
  if (key == GLFW_KEY_DOWN || key == GLFW_KEY_J) ++g_platform.key_steps;
  if (key == GLFW_KEY_UP || key == GLFW_KEY_K) --g_platform.key_steps;
}

// The canvas fills the window in CSS pixels (style.css); its backbuffer must hold CSS size x
// devicePixelRatio device pixels or everything is blurry on high-DPI screens. Checked every frame:
// it catches window resizes, zoom and moving to another monitor alike.
static void fit_canvas_to_window(AppState& app) {
  const loupe_web::CanvasLayout layout = loupe_web::page_canvas_layout();
  const int width = std::max(1, static_cast<int>(std::lround(layout.css_width * layout.pixel_ratio)));
  const int height = std::max(1, static_cast<int>(std::lround(layout.css_height * layout.pixel_ratio)));
  if (width != app.canvas_width || height != app.canvas_height) {
    loupe_web::page_set_canvas_size(width, height);
    app.canvas_width = width;
    app.canvas_height = height;
  }
  app.pixel_ratio = layout.pixel_ratio;
}

// ImGui works in CSS pixels; the font is rasterised at device resolution and scaled back, so text
// stays sharp at any devicePixelRatio.
static void rebuild_fonts_for(double pixel_ratio) {
  ImGuiIO& io = ImGui::GetIO();
  io.Fonts->Clear();
  ImFontConfig config;
  config.SizePixels = std::round(13.0f * static_cast<float>(pixel_ratio));
  io.Fonts->AddFontDefault(&config);
  io.FontGlobalScale = 1.0f / static_cast<float>(pixel_ratio);
  ImGui_ImplOpenGL3_DestroyFontsTexture();
  ImGui_ImplOpenGL3_CreateFontsTexture();
  g_platform.font_pixel_ratio = pixel_ratio;
}

// Emscripten's GLFW reports sizes and the mouse in device pixels; turn them into CSS pixels.
static void use_css_pixels(double pixel_ratio) {
  ImGuiIO& io = ImGui::GetIO();
  const float ratio = static_cast<float>(pixel_ratio);
  io.DisplaySize = {io.DisplaySize.x / ratio, io.DisplaySize.y / ratio};
  io.DisplayFramebufferScale = {ratio, ratio};
  if (ImGui::IsMousePosValid(&io.MousePos)) io.MousePos = {io.MousePos.x / ratio, io.MousePos.y / ratio};
}

// Uploads RGBA8 pixels into `texture`, creating it on first use (linear filtering, clamped edges).
static void upload_rgba_texture(unsigned& texture, int width, int height, const std::vector<uint8_t>& rgba) {
  if (texture == 0) {
    GLuint created = 0;
    glGenTextures(1, &created);
    texture = created;
  }
  glBindTexture(GL_TEXTURE_2D, texture);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
  glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, width, height, 0, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
  glBindTexture(GL_TEXTURE_2D, 0);
}

// The viewed image as an RGBA8 texture, through the window/level (display only).
static void upload_view_texture(ImageView& view, int max_side) {
  view.texture_dirty = false;
  if (view.entry < 0 || view.image.empty()) return;
  int width = 0, height = 0;
  const std::vector<uint8_t> rgba = loupe_web::display_rgba(view.image, view.window, max_side, width, height);
  upload_rgba_texture(view.texture, width, height, rgba);
  view.texture_width = width;
  view.texture_height = height;
}

// The heat map of the selected image as an RGBA8 texture the size of the image's texture.
static void upload_heat_texture(AppState& app) {
  ImageView& view = app.view;
  view.heat_dirty = false;
  const int cls = loupe_web::heat_map_class(app);
  view.heat_texture_class = cls;
  view.heat_ready = false;
  if (cls < 0 || view.entry != app.selected || view.texture_width <= 0) return;
  std::vector<uint8_t> rgba;
  try {
    rgba = loupe::heat_map_overlay(class_heat_map(app.cam, cls), app.model.info.card.preprocess, view.image.width,
                                   view.image.height, view.texture_width, view.texture_height);
  } catch (const std::exception&) {
    return;  // a degenerate map: no overlay (the image stays)
  }
  upload_rgba_texture(view.heat_texture, view.texture_width, view.texture_height, rgba);
  view.heat_ready = true;
}

static void frame() {
  AppState& app = g_app;
  const int canvas_width = app.canvas_width, canvas_height = app.canvas_height;
  const double pixel_ratio = app.pixel_ratio;
  fit_canvas_to_window(app);
  if (app.canvas_width != canvas_width || app.canvas_height != canvas_height || app.pixel_ratio != pixel_ratio) wake();
  const double now = emscripten_get_now();
  if (g_platform.woken) {
    g_platform.woken = false;
    g_platform.frames_to_draw = 20;
  } else if (g_platform.frames_to_draw <= 0 && now - g_platform.last_frame_ms < 1000.0 && app.frames > 0) {
    return;  // nothing new to draw
  }
  --g_platform.frames_to_draw;
  g_platform.last_frame_ms = now;
  if (app.pixel_ratio != g_platform.font_pixel_ratio) rebuild_fonts_for(app.pixel_ratio);

  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  use_css_pixels(app.pixel_ratio);
  if (app.view.texture_dirty) {
    upload_view_texture(app.view, app.max_texture_side);
    app.view.heat_dirty = true;
  }
  if (app.view.heat_dirty || app.view.heat_texture_class != loupe_web::heat_map_class(app)) upload_heat_texture(app);
  ImGui::NewFrame();
  UiActions actions;
  loupe_web::draw_app(app, actions);
  ImGui::Render();
  // Keys move the selection unless the user is typing (the filter box).
  if (!ImGui::GetIO().WantTextInput) actions.step = g_platform.key_steps;
  g_platform.key_steps = 0;
  app.scroll_to_selected = false;
  apply(app, actions);

  glViewport(0, 0, app.canvas_width, app.canvas_height);
  const ImVec4 background = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];
  glClearColor(background.x, background.y, background.z, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

  if (app.frames++ == 0) loupe_web::page_hide_loading_overlay();
  // The image list changes with every file decoded; while a batch streams, send it twice a second
  // (JSON of thousands of entries every frame would slow the batch down), then once when it settles.
  static long published_revision = -1;
  const bool streaming = !app.reads.empty();
  const bool with_list = published_revision != app.images_revision && (!streaming || app.frames % 30 == 0);
  if (with_list) published_revision = app.images_revision;
  nlohmann::json state = state_json(app, with_list);
  nlohmann::json widgets = nlohmann::json::object();
  for (const auto& [id, rect] : actions.widgets) widgets[id] = rect;
  state["widgets"] = std::move(widgets);
  loupe_web::page_publish_state(state.dump());
}

//-----------------------------------------------------------------------------------------------

//-----------------------------------------------------------------------------------------------
// [SECTION] Callbacks from JavaScript (see ort_bridge.h, model_files.h, image_files.h)
//-----------------------------------------------------------------------------------------------

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_ort_status(int status, const char* version, const char* backend,
                                                         int threads, const char* error) {
  wake();
  loupe_web::OrtRuntime& ort = g_app.ort;
  ort.status = static_cast<OrtStatus>(status);
  ort.version = version ? version : "";
  ort.backend = backend ? backend : "";
  ort.threads = threads;
  ort.error = error ? error : "";
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_shipped_models(const char* manifest_json, const char* error) {
  wake();
  AppState& app = g_app;
  app.shipped_error = error ? error : "";
  if (manifest_json && *manifest_json) {
    app.shipped_models = nlohmann::json::parse(manifest_json, nullptr, /*allow_exceptions=*/false);
    if (app.shipped_models.is_discarded()) {
      app.shipped_models = nullptr;
      app.shipped_error = "models/models.json is not valid JSON";
    }
  }
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_model_file(unsigned char* bytes, double size, const char* name,
                                                         const char* source, const char* error) {
  wake();
  std::unique_ptr<unsigned char, void (*)(void*)> owned(bytes, std::free);
  AppState& app = g_app;
  const std::string file = name ? name : "model";
  if (!bytes) {
    app.model_error = "Cannot open " + file + ": " + (error ? error : "unknown error");
    return;
  }
  open_model_bytes(app, bytes, static_cast<size_t>(size), file, source ? source : "file");
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_ort_session(int request, int session, const char* weights_sha256,
                                                          const char* error) {
  wake();
  AppState& app = g_app;
  if (!app.model_load || app.model_load->request != request) {  // superseded by a newer model
    if (session > 0) loupe_web::ort_bridge_release_session(session);
    return;
  }
  const std::string file = app.model_load->file;
  if (session <= 0) {
    app.model_error = "ONNX Runtime cannot run " + file + ": " + (error ? error : "unknown error");
    app.model_load.reset();
    return;
  }
  const std::string hash = weights_sha256 ? weights_sha256 : "";
  const std::string& expected = app.model_load->info->card.weights_sha256;
  if (!expected.empty() && hash != expected) {
    app.model_error = file + ": the weights do not match the model card's SHA-256 (" + expected.substr(0, 12) +
                      "... vs " + hash.substr(0, 12) + "...): the file was modified or damaged";
    app.model_load.reset();
    loupe_web::ort_bridge_release_session(session);
    return;
  }
  activate_model(app, session, hash);
}

// The outputs of one run as ort_bridge laid them out: one float buffer, and per output its name,
// dims and offset (see loupe_on_ort_run in ort_bridge.h).
struct RunOutputs {
  const float* data = nullptr;
  size_t count = 0;
  nlohmann::json layout;

  // The first `needed` values of output `name`, or null when it is absent or shorter; `dims`, when
  // given, receives its shape.
  const float* values(const std::string& name, size_t needed, nlohmann::json* dims = nullptr) const {
    for (const nlohmann::json& output : layout) {
      if (output.value("name", "") != name) continue;
      if (dims) *dims = output.value("dims", nlohmann::json::array());
      const size_t offset = output.value("offset", size_t{0});
      return offset + needed <= count ? data + offset : nullptr;
    }
    return nullptr;
  }
};

// Keeps the "cam" output ([1, classes, h, w]) of the selected image's run.
static void store_cam(AppState& app, int entry, const RunOutputs& outputs) {
  nlohmann::json dims;
  if (!outputs.values("cam", 0, &dims) || dims.size() != 4 || !dims[1].is_number_integer() ||
      !dims[2].is_number_integer() || !dims[3].is_number_integer()) {
    return;
  }
  loupe_web::CamResult cam;
  cam.entry = entry;
  cam.model_id = app.model.id;
  cam.classes = dims[1].get<int>();
  cam.height = dims[2].get<int>();
  cam.width = dims[3].get<int>();
  const size_t size = static_cast<size_t>(cam.classes) * static_cast<size_t>(cam.height) * static_cast<size_t>(cam.width);
  const float* values = outputs.values("cam", size);
  if (size == 0 || !values) return;
  cam.values.assign(values, values + size);
  app.cam = std::move(cam);
  app.view.heat_dirty = true;
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_ort_run(int request, float* data, int count, const char* layout_json,
                                                      const char* error) {
  wake();
  std::unique_ptr<float, void (*)(void*)> owned(data, std::free);
  AppState& app = g_app;
  const auto run = std::find_if(app.runs.begin(), app.runs.end(),
                                [&](const loupe_web::InferenceRun& r) { return r.request == request; });
  if (run == app.runs.end()) return;
  const loupe_web::InferenceRun done = *run;
  app.runs.erase(run);
  if (done.model_id == app.model.id) {
    ImageEntry& entry = app.images[static_cast<size_t>(done.entry)];
    ++app.images_revision;
    const size_t classes = app.model.info.card.class_names.size();
    const RunOutputs outputs{data, static_cast<size_t>(std::max(count, 0)),
                             nlohmann::json::parse(layout_json ? layout_json : "[]", nullptr, false)};
    const float* scores = data ? outputs.values(app.model.scores_output, classes) : nullptr;
    if (!data) {
      entry.prediction.status = PredictionStatus::error;
      entry.prediction.error = error ? error : "unknown error";
    } else if (!scores) {
      entry.prediction.status = PredictionStatus::error;
      entry.prediction.error = "the model's '" + app.model.scores_output + "' output has fewer values than classes";
    } else {
      entry.prediction = loupe_web::make_prediction(
          app.model.id, app.model.scores_output == "probabilities" ? std::vector<float>(scores, scores + classes)
                                                                   : loupe_web::softmax(scores, classes));
      if (const float* distance = app.model.ood_output.empty() ? nullptr : outputs.values(app.model.ood_output, 1)) {
        entry.prediction.has_ood = true;
        entry.prediction.ood_distance = *distance;
        // NaN (a degenerate embedding) is flagged too: no distance means no reason to trust it.
        entry.prediction.out_of_distribution = !(*distance <= app.model.ood_threshold);
      }
      if (done.with_cam) store_cam(app, done.entry, outputs);
    }
  }
  pump(app);
}

// A file was opened (picker, folder or drop). Only its name and size: bytes come when it is read.
extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_image_file_added(int file_index, const char* name, const char* path,
                                                               double size) {
  wake();
  AppState& app = g_app;
  ImageEntry entry;
  entry.file_index = file_index;
  entry.name = name ? name : "";
  entry.path = path && *path ? path : entry.name;
  entry.size_bytes = size;
  app.images.push_back(std::move(entry));
  ++app.images_revision;
  if (app.selected < 0) select_entry(app, static_cast<int>(app.images.size()) - 1);
  pump(app);
}

// The bytes of a file in flight: decode them with the shared core, keep the metadata, classify
// the image when the active model has not, and keep the pixels only when it is the selected image.
// A DICOM file arrives parsed by the page (attributes + pixel data); the pixel math is the core's.
static loupe::Image decode_file(const unsigned char* bytes, size_t size, const char* dicom_attributes) {
  if (!dicom_attributes || !*dicom_attributes) return loupe::decode_image(bytes, size);
  const nlohmann::json attributes = nlohmann::json::parse(dicom_attributes, nullptr, /*allow_exceptions=*/false);
  if (attributes.is_discarded()) throw loupe::Error(loupe::ErrorCode::CorruptImage, "DICOM attributes are not valid JSON");
  return loupe::dicom_to_image(loupe::dicom_pixels_from_json(attributes, bytes, size));
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_image_file_read(int request, unsigned char* bytes, int size,
                                                              const char* dicom_attributes, const char* error) {
  wake();
  std::unique_ptr<unsigned char, void (*)(void*)> owned(bytes, std::free);
  AppState& app = g_app;
  const auto read = std::find_if(app.reads.begin(), app.reads.end(),
                                 [&](const loupe_web::FileRead& r) { return r.request == request; });
  if (read == app.reads.end()) return;
  const int index = read->entry;
  app.reads.erase(read);
  ImageEntry& entry = app.images[static_cast<size_t>(index)];
  ++app.images_revision;
  if (!bytes) {
    entry.status = EntryStatus::error;
    entry.error = std::string("could not read the file: ") + (error ? error : "unknown error");
  } else {
    try {
      loupe::Image image = decode_file(bytes, static_cast<size_t>(std::max(size, 0)), dicom_attributes);
      owned.reset();  // the file's bytes are not needed once decoded
      entry.status = EntryStatus::ok;
      entry.error.clear();
      entry.width = image.width;
      entry.height = image.height;
      entry.channels = image.channels;
      entry.bits = image.depth == loupe::PixelDepth::U16 ? 16 : 8;
      if (app.model.status == ModelStatus::ready && !has_prediction(app, entry) &&
          (!app.paused || index == app.selected)) {
        start_inference(app, index, image);
      }
      if (index == app.selected) {
        ImageView& view = app.view;
        view.entry = index;
        view.auto_window = loupe_web::auto_window(image);
        view.window = view.auto_window;
        view.image = std::move(image);
        view.texture_dirty = true;
      }
    } catch (const std::exception& decode_error) {  // loupe::Error, or std::bad_alloc
      entry.status = EntryStatus::error;
      entry.error = decode_error.what();
    }
  }
  pump(app);
}

//-----------------------------------------------------------------------------------------------
// [SECTION] main
//-----------------------------------------------------------------------------------------------
// [SECTION] main
//-----------------------------------------------------------------------------------------------

static void set_style() {
  ImGui::StyleColorsDark();
  ImGuiStyle& style = ImGui::GetStyle();
  style.WindowRounding = 0.0f;
  style.ChildRounding = 6.0f;
  style.FrameRounding = 4.0f;
  style.PopupRounding = 4.0f;
  style.WindowPadding = {12.0f, 10.0f};
  style.ItemSpacing = {8.0f, 6.0f};
  style.Colors[ImGuiCol_WindowBg] = {0.10f, 0.11f, 0.13f, 1.0f};
  style.Colors[ImGuiCol_ChildBg] = {0.13f, 0.14f, 0.17f, 1.0f};
  style.Colors[ImGuiCol_MenuBarBg] = {0.07f, 0.08f, 0.09f, 1.0f};
  style.Colors[ImGuiCol_Border] = {0.22f, 0.24f, 0.28f, 1.0f};
  style.Colors[ImGuiCol_Separator] = {0.22f, 0.24f, 0.28f, 1.0f};
}

int main() {
  // WebGL2 is OpenGL ES 3.0. The size is provisional: the first frame fits the canvas to the window.
  if (glfwInit()) {
    glfwWindowHint(GLFW_CLIENT_API, GLFW_OPENGL_ES_API);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    g_platform.window = glfwCreateWindow(1280, 720, "Loupe", nullptr, nullptr);
  }
  if (!g_platform.window) {
    loupe_web::page_show_fatal_error(
        "WebGL 2 is not available in this browser (is WebGL or hardware acceleration turned off?)");
    return 1;
  }
  glfwMakeContextCurrent(g_platform.window);

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // no file system to save window positions to
  set_style();
  ImGui_ImplGlfw_InitForOpenGL(g_platform.window, true);
  g_platform.imgui_key_callback = glfwSetKeyCallback(g_platform.window, on_key);
  g_platform.imgui_cursor_callback = glfwSetCursorPosCallback(g_platform.window, on_cursor);
  g_platform.imgui_button_callback = glfwSetMouseButtonCallback(g_platform.window, on_button);
  g_platform.imgui_scroll_callback = glfwSetScrollCallback(g_platform.window, on_scroll);
  g_platform.imgui_char_callback = glfwSetCharCallback(g_platform.window, on_char);
  ImGui_ImplOpenGL3_Init("#version 300 es");

  g_app.build = loupe::build_info();
  g_app.page = loupe_web::page_info();
  GLint max_texture_side = 0;
  glGetIntegerv(GL_MAX_TEXTURE_SIZE, &max_texture_side);
  g_app.max_texture_side = std::clamp(static_cast<int>(max_texture_side), 256, 4096);
  loupe_web::ort_bridge_load();
  loupe_web::model_files_listen();
  loupe_web::image_files_listen();

  // The browser owns the loop: frame() runs on every requestAnimationFrame. `true` unwinds main()
  // here (Emscripten's "simulate infinite loop"), so nothing after this line runs.
  emscripten_set_main_loop(frame, 0, true);
  return 0;
}
