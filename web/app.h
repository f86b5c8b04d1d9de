// The app's state and what the user did in one frame: the contract between drawing (draw.cpp, a
// function of AppState only) and everything that changes the state (app_logic.h: applying
// UiActions and the answers JavaScript sends between frames; main.cpp: the frame loop).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "host.h"
#include "i18n.h"  // Language
#include "image_batch.h"
#include "loupe/image.h"
#include "loupe/onnx_model.h"
#include "loupe/prediction.h"
#include "loupe/results.h"
#include "loupe/version.h"
#include "ort_bridge.h"  // OrtStatus (declarations only: the app logic calls the browser through Host)
#include "page.h"        // PageInfo
#include "site_calibration.h"

namespace loupe_web {

struct OrtRuntime {
  OrtStatus status = OrtStatus::loading;
  std::string version;  // ONNX Runtime Web's, e.g. "1.30.0"
  std::string backend;  // "wasm" (SIMD, threads) or "webgpu" (a GPU was found; wasm as fallback)
  int threads = 0;      // wasm threads its sessions use (1 when the page is not cross-origin isolated)
  std::string error;    // why loading failed
};

// The classifier. One model is active at a time; opening another replaces it only once it has
// loaded, so a bad file never costs the user the model (and the results) they had.
enum class ModelStatus { none, loading, ready, failed };
struct Model {
  int id = 0;                     // > 0 once ready; predictions carry it (image_batch.h)
  ModelStatus status = ModelStatus::none;
  std::string file;               // file name, as opened or shipped
  std::string source;             // "shipped" or "file"
  loupe::OnnxModelInfo info;      // the card and the graph, read by the shared core; what the
                                  // outputs mean is the core's too (loupe/prediction.h)
  int session = 0;                // ONNX Runtime Web session
  std::string weights_sha256;     // as hashed in the browser
  // The card's self-test (loupe/self_test.h) as run in this browser before the model became
  // active; a model that fails it never becomes active.
  bool has_self_test = false;     // false: exported before Loupe wrote one
  loupe::SelfTestResult self_test;
  // The file as opened: a site calibration (site_calibration.h) writes a copy of it with a new card.
  std::vector<uint8_t> bytes;
};

// A model being read or opened; becomes AppState::model when its session is up, its weights
// match the card's hash and its self-test passes here.
struct ModelLoad {
  int request = 0;
  std::string file, source;
  std::optional<loupe::OnnxModelInfo> info;
  // Set once the session is up, while the self-test runs: its run and the hash of its record
  // are two answers from the browser, in either order.
  int session = 0;
  std::string weights_sha256;
  int self_test_run = 0, self_test_hash = 0;      // request ids
  std::optional<loupe::SelfTestResult> self_test;
  std::optional<std::string> self_test_sha256;
  std::vector<uint8_t> bytes;  // the file, kept for Model::bytes
};

// The selected image, decoded: the only full-resolution pixels the app holds.
struct ImageView {
  int entry = -1;           // index into AppState::images; -1 while nothing is decoded
  loupe::Image image;
  WindowLevel window;       // display only (gray images)
  WindowLevel auto_window;  // the image's own min..max: what "Reset" returns to
  float zoom = 1.0f;        // 1 = fit the panel
  float pan_x = 0, pan_y = 0;  // offset of the image centre from the panel centre, CSS px
  unsigned texture = 0;     // GL texture (RGBA8) of the image as displayed
  int texture_width = 0, texture_height = 0;
  bool texture_dirty = false;  // the pixels or the window changed: upload before drawing
  unsigned heat_texture = 0;   // GL texture (RGBA8) of the heat map over the image, same size
  int heat_texture_class = -1; // the class it was built for; -1: none
  bool heat_ready = false;     // heat_texture holds that class's map
  bool heat_dirty = false;     // the CAM, the class or the image changed: rebuild before drawing
};

// The class activation maps of the selected image (the model's "cam" output), kept for that image
// only.
struct CamResult {
  int entry = -1;
  int model_id = 0;
  loupe::CamPlanes planes;
};

// How the heat map is shown (the user's choices; they survive changing images).
struct HeatMapView {
  bool visible = true;
  int class_index = -1;   // -1: the predicted class
  float opacity = 0.45f;
};

// The batch pipeline (app_logic.h): files are read a few at a time, decoded and preprocessed as
// they arrive, and their inputs wait in a StagedBatch until several go to ONNX Runtime in one run
// (the batch dimension of every Loupe model is dynamic). While ORT runs one batch the next one is
// read and decoded, so ORT never waits for the page, and one run's round trip to ORT's worker is
// shared by its images.
//
// A file read in flight: only these few files' bytes are in memory.
struct FileRead {
  int request = 0;
  int entry = -1;
};
// Images decoded and preprocessed for the active model, waiting for their run: the inputs lie one
// after another in `inputs` (one [C, H, W] plane per entry), as the run's [N, C, H, W] tensor.
struct StagedBatch {
  int model_id = 0;
  std::vector<int> entries;
  std::vector<float> inputs;
};
// An inference in flight: its input tensor is in ORT's hands, nothing is held here. `entries` are
// its images in the order of the batch dimension.
struct InferenceRun {
  int request = 0;
  std::vector<int> entries;
  int model_id = 0;
  bool with_cam = false;  // the selected image's own run also asks for the "cam" output
};
// Images per ORT run, and images read, staged or running at once. The bound keeps memory flat (a
// few files' bytes and at most kMaxWorkInFlight input tensors, 0.6 MB each at 224x224) while one
// batch runs and the next one is prepared. Measured: docs/BENCHMARKS.md (the web app).
constexpr size_t kMaxBatchImages = 8;
constexpr size_t kMaxWorkInFlight = 2 * kMaxBatchImages;

// Where a batch's time goes on the page (cumulative, ms): the test hook publishes it
// (state.profile) and scripts/bench-web prints it. Main-thread work only: ORT's own time is
// measured by its bridge.
struct BatchProfile {
  double decode_ms = 0;      // the shared core decoding files (main thread)
  double preprocess_ms = 0;  // resizing/normalising into the run's input
  double interpret_ms = 0;   // outputs -> predictions
  double frame_ms = 0;       // drawing frames (ImGui + GL calls; the GPU process rasterises apart)
  double publish_ms = 0;     // the test-hook state (JSON)
  long frames = 0;
  long images_decoded = 0;
  long runs = 0, images_run = 0;
};

// What the table and the evaluation show, derived from the images and the model: recomputed by
// refresh_views() (app_logic.h) when images_revision or the model changed, not every frame.
struct DerivedViews {
  long revision = -1;
  int model_id = -1;
  std::vector<int> rows;                  // visible_rows(): filtered and sorted
  std::vector<loupe::ResultRow> results;  // one per image, in file order (loupe/results.h)
  loupe::Evaluation evaluation;           // of `results`; its intervals once the batch has finished
  // The evaluation's confidence intervals (a 2,000-resample bootstrap: computed once per set of
  // labelled predictions, not per table sort), and the fingerprint of the predictions they are of.
  std::optional<loupe::ReportIntervals> intervals;
  uint64_t intervals_of = 0;
};

// How the page reads: its language and type size, and whether the keyboard help is open. The font
// size is the one setting the page stores (localStorage, page.h); the language follows the
// browser's unless switched in the page.
constexpr float kDefaultFontSize = 15.0f;  // CSS px
constexpr float kMinFontSize = 12.0f, kMaxFontSize = 22.0f;
struct UiSettings {
  Language language = Language::en;
  float font_size = kDefaultFontSize;
  bool show_help = false;
};

struct AppState {
  Host* host = nullptr;  // the browser (main.cpp) or a test's stand-in
  loupe::BuildInfo build;
  PageInfo page;
  OrtRuntime ort;
  Model model;
  std::optional<ModelLoad> model_load;
  std::string model_error;        // why the last model could not be opened (cleared by the next)
  nlohmann::json shipped_models;  // models/models.json, or null
  std::string shipped_error;
  std::vector<ImageEntry> images;  // every file opened, in the order added
  TableView table;
  int selected = -1;               // index into images
  bool scroll_to_selected = false; // keyboard moved the selection: bring it into view this frame
  long images_revision = 0;        // bumped when images, predictions or the table view change
  size_t scan_cursor = 0;          // entries before this one need no more work
  bool paused = false;             // the user cancelled the batch: no new inference starts
  std::vector<FileRead> reads;     // in flight
  StagedBatch staged;              // decoded, waiting for a run
  std::vector<InferenceRun> runs;  // in flight
  BatchProfile profile;
  int next_request = 1;
  ImageView view;
  CamResult cam;
  HeatMapView heat_map;
  DerivedViews views;
  bool show_evaluation = false;
  SiteCalibrationView site;  // "Calibrate for this site" (site_calibration.h)
  UiSettings ui;
  int max_texture_side = 4096;
  long frames = 0;  // frames rendered so far; the first one makes the app "ready"
  int canvas_width = 0, canvas_height = 0;  // backbuffer, device pixels
  double pixel_ratio = 1;
  double heap_bytes = 0;  // the wasm heap (it only grows: the app's peak memory)
};

// A text drawn into a box narrower than it (ui_text.h), or shortened on purpose: where, which,
// how wide it is and how much room it had (CSS px).
struct TextFit {
  std::string window, text;
  float needed = 0, available = 0;
};
// The tooltip shown this frame and the item it describes (x, y, width, height, CSS px).
struct TooltipPlacement {
  std::string text;
  std::vector<float> item, tooltip;
};

// What the user did this frame. draw_app() only reads AppState; the frame loop applies these.
struct UiActions {
  bool open_files = false, open_folder = false, open_model = false;
  std::optional<std::string> open_shipped;  // a file from the shipped models' manifest
  int select = -1;  // an entry clicked in the table
  int step = 0;     // keyboard (see on_key): rows to move in the table as shown, + down, - up
  std::optional<std::string> filter;
  // Another frame of the selected multi-frame DICOM file (0-based): it is read and classified again.
  std::optional<int> frame;
  // A confusion-matrix cell clicked (its images only in the table), or nullopt inside: all again.
  std::optional<std::optional<loupe::MatrixCell>> matrix_cell;
  std::optional<std::pair<Column, bool>> sort;  // column, ascending
  float zoom_factor = 1.0f;
  float zoom_anchor_x = 0, zoom_anchor_y = 0;  // cursor relative to the panel centre
  float pan_dx = 0, pan_dy = 0;
  std::optional<WindowLevel> window;
  bool reset_view = false;
  bool cancel_batch = false, resume_batch = false;
  bool export_csv = false;
  bool save_report = false;  // the selected image's report (PNG)
  std::optional<bool> show_evaluation;
  SiteCalibrationActions site_calibration;
  std::optional<HeatMapView> heat_map;
  // Screen rectangles (CSS px: x, y, width, height) of the main buttons drawn this frame, by id.
  // Published in window.loupe.state.widgets so browser tests click the real buttons where they are.
  std::vector<std::pair<std::string, std::vector<float>>> widgets;
  // What this frame's text looked like (ui_text.h): published as window.loupe.state.clipped,
  // .ellipsised and .tooltip (state_json.h: frame_ui_json).
  std::vector<TextFit> clipped, ellipsised;
  std::optional<TooltipPlacement> tooltip;
  // The page's settings (ui_settings.h applies them).
  std::optional<Language> language;
  std::optional<float> font_size;
  std::optional<bool> show_help;
};

// Per-image work still to do with the active model.
struct BatchProgress {
  int total = 0;      // images that can be classified (decoded or still pending)
  int done = 0;       // predicted or failed, with the active model
  int in_flight = 0;  // images being read, staged or run
  bool running = false;
};
BatchProgress batch_progress(const AppState& app);

// The class whose heat map is shown for the selected image, or -1 when there is none to show
// (no CAM output, no CAM yet, heat map hidden).
int heat_map_class(const AppState& app);

// Whether the selected image is a multi-frame file whose frame can be changed now (not while it is
// being read or classified).
bool can_choose_frame(const AppState& app);

// The class names of the active model (empty when none is ready).
const std::vector<std::string>& active_classes(const AppState& app);

// Draws the whole page for this frame (draw.cpp).
void draw_app(const AppState& app, UiActions& actions);

const char* to_string(OrtStatus status);
const char* to_string(ModelStatus status);

}  // namespace loupe_web
