// The app's logic (app_logic.h).
//
// Index:
//   [SECTION] Queries
//   [SECTION] The batch: reading, decoding, inference
//   [SECTION] Models
//   [SECTION] Answers from the browser
//   [SECTION] Applying UI actions
//   [SECTION] Derived views, report, export

#include "app_logic.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loupe/dicom.h"
#include "loupe/error.h"
#include "loupe/image.h"
#include "loupe/image_report.h"
#include "loupe/onnx_model.h"
#include "loupe/prediction.h"
#include "loupe/preprocess.h"
#include "loupe/results.h"
#include "loupe/self_test.h"

namespace loupe_web {

//-----------------------------------------------------------------------------------------------
// [SECTION] Queries
//-----------------------------------------------------------------------------------------------

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
      cam.model_id != app.model.id || cam.planes.empty() || app.selected < 0) {
    return -1;
  }
  const Prediction& p = app.images[static_cast<size_t>(app.selected)].prediction;
  const int cls = app.heat_map.class_index >= 0 ? app.heat_map.class_index : p.model_id == app.model.id ? p.top : -1;
  return cls >= 0 && cls < cam.planes.classes ? cls : -1;
}

// An entry has a prediction (or one running) from the active model.
static bool has_prediction(const AppState& app, const ImageEntry& entry) {
  return app.model.id > 0 && entry.prediction.model_id == app.model.id &&
         entry.prediction.status != PredictionStatus::none;
}

// Images being read, staged or run.
static size_t work_in_flight(const AppState& app) {
  size_t running = 0;
  for (const InferenceRun& run : app.runs) running += run.entries.size();
  return app.reads.size() + app.staged.entries.size() + running;
}

BatchProgress batch_progress(const AppState& app) {
  BatchProgress progress;
  progress.in_flight = static_cast<int>(work_in_flight(app));
  if (app.model.status != ModelStatus::ready) return progress;
  for (const ImageEntry& entry : app.images) {
    if (entry.status == EntryStatus::error) continue;
    ++progress.total;
    const bool finished = has_prediction(app, entry) && entry.prediction.status != PredictionStatus::running;
    progress.done += finished;
  }
  progress.running = progress.in_flight > 0 || progress.done < progress.total;
  return progress;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] The batch: reading, decoding, inference
//-----------------------------------------------------------------------------------------------

static double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

static bool reading(const AppState& app, int entry) {
  return std::any_of(app.reads.begin(), app.reads.end(), [&](const FileRead& read) { return read.entry == entry; });
}

// The entry's input is staged or in a run: its prediction is on its way.
static bool queued(const AppState& app, int entry) {
  const std::vector<int>& staged = app.staged.entries;
  return std::find(staged.begin(), staged.end(), entry) != staged.end() ||
         std::any_of(app.runs.begin(), app.runs.end(), [&](const InferenceRun& run) {
           return std::find(run.entries.begin(), run.entries.end(), entry) != run.entries.end();
         });
}

// The entry's file must be read: never decoded yet, or decoded but not classified by the active
// model (pixels are not kept, so classifying means reading the file again).
static bool needs_read(const AppState& app, size_t index) {
  const ImageEntry& entry = app.images[index];
  if (entry.status == EntryStatus::pending) return true;
  if (entry.status != EntryStatus::ok) return false;
  return app.model.status == ModelStatus::ready && !app.paused && !has_prediction(app, entry);
}

// Hands `entries`' inputs ([entries.size(), C, H, W] floats at `inputs`, copied before this
// returns) to ORT in one run.
static void start_run(AppState& app, const std::vector<int>& entries, const float* inputs, bool with_cam) {
  const Model& model = app.model;
  const loupe::PreprocessSpec& spec = model.info.card.preprocess;
  const InferenceRun run{app.next_request++, entries, model.id, with_cam};
  app.runs.push_back(run);
  ++app.profile.runs;
  app.profile.images_run += static_cast<long>(entries.size());
  const size_t plane = static_cast<size_t>(spec.channels()) * static_cast<size_t>(spec.height) * static_cast<size_t>(spec.width);
  const nlohmann::json dims = {entries.size(), spec.channels(), spec.height, spec.width};
  const nlohmann::json outputs = loupe::prediction_outputs(model.info.card, with_cam);
  app.host->run_model(run.request, model.session, inputs, entries.size() * plane, dims.dump(), outputs.dump());
}

// Preprocesses `image` as the model card says, into the staged batch, or into a run of its own
// for the selected image when the model has a "cam" output (its heat map: the same forward pass,
// shown as soon as it is back). Failures (an image the preprocessing rejects) become the entry's
// prediction error; the batch goes on.
static void start_inference(AppState& app, int index, const loupe::Image& image) {
  ImageEntry& entry = app.images[static_cast<size_t>(index)];
  const Model& model = app.model;
  const loupe::PreprocessSpec& spec = model.info.card.preprocess;
  entry.prediction = Prediction{};
  entry.prediction.model_id = model.id;
  ++app.images_revision;
  const auto started = std::chrono::steady_clock::now();
  const bool with_cam = index == app.selected && model.info.card.has_output("cam");
  StagedBatch& staged = app.staged;
  if (staged.model_id != model.id) staged = StagedBatch{model.id, {}, {}};
  const size_t plane = static_cast<size_t>(spec.channels()) * static_cast<size_t>(spec.height) * static_cast<size_t>(spec.width);
  std::vector<float> own;  // the selected image's run
  float* input = nullptr;
  try {
    if (with_cam) {
      own.resize(plane);
      input = own.data();
    } else {
      staged.inputs.resize(staged.inputs.size() + plane);
      input = staged.inputs.data() + staged.inputs.size() - plane;
    }
    loupe::preprocess_into(image, spec, input);
  } catch (const std::exception& error) {
    if (!with_cam) staged.inputs.resize(staged.entries.size() * plane);
    entry.prediction.status = PredictionStatus::error;
    entry.prediction.error = std::string("preprocessing: ") + error.what();
    return;
  }
  app.profile.preprocess_ms += ms_since(started);
  entry.prediction.status = PredictionStatus::running;
  if (with_cam) {
    start_run(app, {index}, own.data(), true);
  } else {
    staged.entries.push_back(index);
  }
}

// Sends staged inputs to ORT: a full batch at once; a smaller one when ORT has nothing else to do
// or nothing more is being read (the end of a batch, a cancelled one), so ORT never waits for a
// batch to fill.
static void dispatch_staged(AppState& app) {
  StagedBatch& staged = app.staged;
  if (staged.model_id != app.model.id || app.model.status != ModelStatus::ready) return;  // dropped by activate_model
  while (!staged.entries.empty()) {
    const bool full = staged.entries.size() >= kMaxBatchImages;
    if (!full && !app.runs.empty() && !app.reads.empty()) return;
    const size_t count = std::min(kMaxBatchImages, staged.entries.size());
    const size_t plane = staged.inputs.size() / staged.entries.size();
    const std::vector<int> entries(staged.entries.begin(), staged.entries.begin() + static_cast<std::ptrdiff_t>(count));
    start_run(app, entries, staged.inputs.data(), false);
    staged.entries.erase(staged.entries.begin(), staged.entries.begin() + static_cast<std::ptrdiff_t>(count));
    staged.inputs.erase(staged.inputs.begin(), staged.inputs.begin() + static_cast<std::ptrdiff_t>(count * plane));
  }
}

// Starts the next pieces of work, up to kMaxWorkInFlight images: the selected image first (its
// pixels for the viewer, its prediction), then the batch in order; then sends what is staged.
// Called after every change.
static void pump(AppState& app) {
  const bool model_ready = app.model.status == ModelStatus::ready;
  while (work_in_flight(app) < kMaxWorkInFlight) {
    int next = -1;
    if (app.selected >= 0) {
      const ImageEntry& selected = app.images[static_cast<size_t>(app.selected)];
      const bool decoded = app.view.entry == app.selected && !app.view.image.empty();
      // Its heat map needs the "cam" output, which batch runs do not ask for: run it again.
      const bool needs_cam = model_ready && app.model.info.card.has_output("cam") &&
                             (app.cam.entry != app.selected || app.cam.model_id != app.model.id);
      if (decoded && model_ready && selected.status == EntryStatus::ok && !queued(app, app.selected) &&
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
    if (next < 0) break;
    ImageEntry& image = app.images[static_cast<size_t>(next)];
    if (image.status == EntryStatus::pending) {
      image.status = EntryStatus::reading;
      ++app.images_revision;
    }
    const FileRead read{app.next_request++, next};
    app.reads.push_back(read);
    app.host->read_image_file(read.request, image.file_index, image.frame);
  }
  dispatch_staged(app);
}

// Inputs staged but not yet run are dropped (a cancel, another model): their entries count as not
// classified, so a resume or the new model reads them again.
static void drop_staged(AppState& app) {
  for (const int index : app.staged.entries) {
    Prediction& prediction = app.images[static_cast<size_t>(index)].prediction;
    if (prediction.model_id == app.staged.model_id && prediction.status == PredictionStatus::running) prediction = Prediction{};
  }
  app.staged = StagedBatch{};
  ++app.images_revision;
}

// Everything not yet classified by the active model is looked at again (a new model, a resume).
static void rescan(AppState& app) {
  app.scan_cursor = 0;
  ++app.images_revision;
  pump(app);
}

// Another frame of the selected multi-frame file: its prediction, pixels and heat map were the old
// frame's, so they go and the file is read again at the new one. Not while the entry is being read
// or classified (that answer would be the old frame's); the page disables the control then.
static void choose_frame(AppState& app, int frame) {
  if (app.selected < 0) return;
  ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
  if (entry.frames <= 1 || frame < 0 || frame >= entry.frames || frame == entry.frame) return;
  if (reading(app, app.selected) || queued(app, app.selected)) return;
  entry.frame = frame;
  entry.status = EntryStatus::pending;
  entry.prediction = Prediction{};
  app.view.entry = -1;
  app.view.image = loupe::Image{};
  app.cam = CamResult{};
  rescan(app);
}

bool can_choose_frame(const AppState& app) {
  if (app.selected < 0 || static_cast<size_t>(app.selected) >= app.images.size()) return false;
  return app.images[static_cast<size_t>(app.selected)].frames > 1 && !reading(app, app.selected) && !queued(app, app.selected);
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

static void activate_model(AppState& app) {
  static int next_model_id = 1;
  ModelLoad load = std::move(*app.model_load);
  app.model_load.reset();
  const int session = load.session;
  if (app.model.session > 0) app.host->release_session(app.model.session);
  Model& model = app.model;
  model.id = next_model_id++;
  model.status = ModelStatus::ready;
  model.file = load.file;
  model.source = load.source;
  model.info = std::move(*load.info);
  model.session = session;
  model.weights_sha256 = load.weights_sha256;
  model.has_self_test = load.self_test.has_value();
  model.self_test = load.self_test.value_or(loupe::SelfTestResult{});
  model.bytes = std::move(load.bytes);
  // Runs of the previous model still in flight are dropped when they answer (their model_id);
  // its staged inputs now.
  drop_staged(app);
  app.paused = false;
  rescan(app);
}

// The model being opened is not used: the message says why; the active model stays.
static void refuse_model_load(AppState& app, const std::string& message) {
  app.model_error = message;
  if (app.model_load->session > 0) app.host->release_session(app.model_load->session);
  app.model_load.reset();
}

// The card's self-test, before the model may classify anything: its synthetic images through
// this browser's ONNX Runtime, and the hash of its record. Both answers go to finish_self_test.
static void start_self_test(AppState& app) {
  ModelLoad& load = *app.model_load;
  const loupe::ModelCard& card = load.info->card;
  const loupe::SelfTest& test = *card.self_test;
  loupe::Tensor input;
  try {
    input = loupe::self_test_input(test, card.preprocess);
  } catch (const std::exception& error) {
    refuse_model_load(app, load.file + ": its self-test cannot be prepared: " + error.what());
    return;
  }
  load.self_test_hash = app.next_request++;
  load.self_test_run = app.next_request++;
  app.host->sha256(load.self_test_hash, loupe::self_test_digest_text(test));
  const nlohmann::json dims = input.shape;
  const nlohmann::json outputs = test.output_names();
  app.host->run_model(load.self_test_run, load.session, input.data.data(), input.data.size(), dims.dump(), outputs.dump());
}

static void finish_self_test(AppState& app) {
  ModelLoad& load = *app.model_load;
  if (!load.self_test || !load.self_test_sha256) return;  // the other answer is still to come
  const loupe::SelfTest& test = *load.info->card.self_test;
  if (*load.self_test_sha256 != test.sha256) {
    refuse_model_load(app, load.file + ": its self-test record does not match its SHA-256 (" + test.sha256.substr(0, 12) +
                               "... vs " + load.self_test_sha256->substr(0, 12) + "...): the file was modified or damaged");
    return;
  }
  if (!load.self_test->passed) {
    refuse_model_load(app, load.file + " fails its self-test in this browser (ONNX Runtime Web " + app.ort.version +
                               "): " + load.self_test->summary() + ". It is not used.");
    return;
  }
  activate_model(app);
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Answers from the browser
//-----------------------------------------------------------------------------------------------

void on_ort_status(AppState& app, OrtStatus status, const std::string& version, const std::string& backend, int threads,
                   const std::string& error) {
  app.ort.status = status;
  app.ort.version = version;
  app.ort.backend = backend;
  app.ort.threads = threads;
  app.ort.error = error;
}

void on_shipped_models(AppState& app, const char* manifest_json, const char* error) {
  app.shipped_error = error ? error : "";
  if (manifest_json && *manifest_json) {
    app.shipped_models = nlohmann::json::parse(manifest_json, nullptr, /*allow_exceptions=*/false);
    if (app.shipped_models.is_discarded()) {
      app.shipped_models = nullptr;
      app.shipped_error = "models/models.json is not valid JSON";
    }
  }
}

void on_model_file(AppState& app, const uint8_t* bytes, size_t size, const std::string& file, const std::string& source,
                   const char* error) {
  if (!bytes) {
    app.model_error = "Cannot open " + file + ": " + (error ? error : "unknown error");
    return;
  }
  // The same reader and checks as `loupe inspect`.
  loupe::OnnxModelInfo info;
  try {
    info = loupe::read_onnx_model(bytes, size, file);
  } catch (const std::exception& read_error) {
    app.model_error = std::string("Cannot use this model: ") + read_error.what();
    return;
  }
  app.model_error.clear();
  ModelLoad load;
  load.request = app.next_request++;
  load.file = file;
  load.source = source;
  load.bytes.assign(bytes, bytes + size);
  nlohmann::json ranges = nlohmann::json::array();
  for (const loupe::ByteRange& range : info.weight_ranges) ranges.push_back({range.offset, range.size});
  load.info = std::move(info);
  app.model_load = std::move(load);
  app.host->create_session(app.model_load->request, bytes, size, ranges.dump());
}

void on_ort_session(AppState& app, int request, int session, const std::string& weights_sha256, const char* error) {
  if (!app.model_load || app.model_load->request != request) {  // superseded by a newer model
    if (session > 0) app.host->release_session(session);
    return;
  }
  const std::string file = app.model_load->file;
  if (session <= 0) {
    app.model_error = "ONNX Runtime cannot run " + file + ": " + (error ? error : "unknown error");
    app.model_load.reset();
    return;
  }
  app.model_load->session = session;
  app.model_load->weights_sha256 = weights_sha256;
  const std::string& expected = app.model_load->info->card.weights_sha256;
  if (!expected.empty() && weights_sha256 != expected) {
    refuse_model_load(app, file + ": the weights do not match the model card's SHA-256 (" + expected.substr(0, 12) +
                               "... vs " + weights_sha256.substr(0, 12) + "...): the file was modified or damaged");
    return;
  }
  if (app.model_load->info->card.self_test) {
    start_self_test(app);
  } else {
    activate_model(app);
  }
}

void on_sha256(AppState& app, int request, const std::string& hex) {
  if (!app.model_load || app.model_load->self_test_hash != request || request == 0) return;
  app.model_load->self_test_sha256 = hex;
  finish_self_test(app);
}

// One run's outputs as ort_bridge laid them out: one float buffer, and per output its name, dims
// and offset.
struct RunOutputs {
  const float* data = nullptr;
  size_t count = 0;
  nlohmann::json layout;

  // Output `name`: its values (null when absent or cut short) and dims.
  const float* values(const std::string& name, nlohmann::json* dims = nullptr) const {
    for (const nlohmann::json& output : layout) {
      if (!output.is_object() || output.value("name", "") != name) continue;
      const nlohmann::json shape = output.value("dims", nlohmann::json::array());
      size_t size = 1;
      for (const nlohmann::json& d : shape) size *= d.is_number_unsigned() ? d.get<size_t>() : 0;
      const size_t offset = output.value("offset", size_t{0});
      if (dims) *dims = shape;
      return offset + size <= count ? data + offset : nullptr;
    }
    return nullptr;
  }
};

// The core's view of image `row`'s outputs in a run of `rows` images ([rows, classes], [rows] or
// [rows, 1], and [1, classes, h, w] for the selected image's own run). Null pointers where an
// output is missing or does not have one value set per image; interpret_outputs names what is
// missing.
static loupe::ImageOutputs image_outputs(const RunOutputs& run, const loupe::ModelCard& card, bool with_cam, size_t row,
                                         size_t rows) {
  loupe::ImageOutputs out;
  // Output `name`'s values for `row`, and how many there are per image.
  const auto row_values = [&](const std::string& name, size_t& per_row, nlohmann::json* dims_out = nullptr) -> const float* {
    nlohmann::json dims;
    const float* values = run.values(name, &dims);
    per_row = 0;
    if (!values || dims.empty() || dims[0] != rows) return nullptr;
    per_row = 1;
    for (size_t d = 1; d < dims.size(); ++d) per_row *= dims[d].is_number_unsigned() ? dims[d].get<size_t>() : 0;
    if (dims_out) *dims_out = dims;
    return values + row * per_row;
  };
  size_t per_row = 0;
  out.logits = row_values("logits", per_row);
  out.logits_size = per_row;
  if (card.ood) {
    out.ood_distance = row_values(card.ood->output, per_row);
    if (per_row != 1) out.ood_distance = nullptr;
  }
  if (with_cam) {
    nlohmann::json dims;
    const float* cam = row_values("cam", per_row, &dims);
    if (cam && dims.size() == 4 && dims[2].is_number_unsigned() && dims[3].is_number_unsigned() &&
        dims[1] == card.class_names.size()) {
      out.cam = cam;
      out.cam_height = dims[2].get<int>();
      out.cam_width = dims[3].get<int>();
    }
  }
  return out;
}

// The self-test's run: each recorded output as a tensor, for check_self_test.
static void on_self_test_run(AppState& app, const float* data, size_t count, const char* layout_json, const char* error) {
  ModelLoad& load = *app.model_load;
  if (!data) {
    refuse_model_load(app, load.file + ": ONNX Runtime cannot run its self-test: " + (error ? error : "unknown error"));
    return;
  }
  const RunOutputs run{data, count, nlohmann::json::parse(layout_json ? layout_json : "[]", nullptr, false)};
  std::map<std::string, loupe::Tensor> outputs;
  for (const std::string& name : load.info->card.self_test->output_names()) {
    nlohmann::json dims;
    const float* values = run.values(name, &dims);
    if (!values) continue;  // check_self_test names the missing output
    loupe::Tensor& tensor = outputs[name];
    for (const nlohmann::json& d : dims) tensor.shape.push_back(d.is_number_integer() ? d.get<int64_t>() : 0);
    tensor.data.assign(values, values + tensor.element_count());
  }
  load.self_test = loupe::check_self_test(*load.info->card.self_test, outputs);
  finish_self_test(app);
}

void on_ort_run(AppState& app, int request, const float* data, size_t count, const char* layout_json, const char* error) {
  if (app.model_load && app.model_load->self_test_run == request && request != 0) {
    on_self_test_run(app, data, count, layout_json, error);
    return;
  }
  const auto run = std::find_if(app.runs.begin(), app.runs.end(), [&](const InferenceRun& r) { return r.request == request; });
  if (run == app.runs.end()) return;
  const InferenceRun done = *run;
  app.runs.erase(run);
  if (done.model_id == app.model.id) {
    const auto started = std::chrono::steady_clock::now();
    ++app.images_revision;
    const RunOutputs outputs{data, count, nlohmann::json::parse(layout_json ? layout_json : "[]", nullptr, false)};
    const loupe::ModelCard& card = app.model.info.card;
    // A failed run fails each of its images with ORT's message (as a refused batch does in
    // `loupe predict`); so does an answer whose rows are not the run's images.
    std::string run_error = data ? "" : (error ? error : "unknown error");
    nlohmann::json logits_dims;
    if (data && outputs.values("logits", &logits_dims) && (logits_dims.empty() || logits_dims[0] != done.entries.size())) {
      run_error = "ONNX Runtime answered a run of " + std::to_string(done.entries.size()) + " images with logits of shape " +
                  logits_dims.dump();
    }
    for (size_t row = 0; row < done.entries.size(); ++row) {
      const int index = done.entries[row];
      ImageEntry& entry = app.images[static_cast<size_t>(index)];
      if (!run_error.empty()) {
        entry.prediction.status = PredictionStatus::error;
        entry.prediction.error = run_error;
        continue;
      }
      try {
        static_cast<loupe::Prediction&>(entry.prediction) =
            loupe::interpret_outputs(card, image_outputs(outputs, card, done.with_cam, row, done.entries.size()));
        entry.prediction.status = PredictionStatus::done;
        entry.prediction.error.clear();
        if (!entry.prediction.cam.empty()) {  // kept for the selected image only, not per entry
          app.cam = CamResult{index, app.model.id, std::move(entry.prediction.cam)};
          entry.prediction.cam = loupe::CamPlanes{};
          app.view.heat_dirty = true;
        }
      } catch (const std::exception& interpret_error) {
        entry.prediction.status = PredictionStatus::error;
        entry.prediction.error = interpret_error.what();
      }
    }
    app.profile.interpret_ms += ms_since(started);
  }
  pump(app);
}

// A file was opened (picker, folder or drop). Only its name and size: bytes come when it is read.
void on_image_file_added(AppState& app, int file_index, const std::string& name, const std::string& path, double size) {
  ImageEntry entry;
  entry.file_index = file_index;
  entry.name = name;
  entry.path = path.empty() ? name : path;
  entry.size_bytes = size;
  app.images.push_back(std::move(entry));
  ++app.images_revision;
  if (app.selected < 0) select_entry(app, static_cast<int>(app.images.size()) - 1);
  pump(app);
}

// A DICOM file arrives parsed by the page (attributes + pixel data); the pixel math is the core's.
// The entry keeps the attributes the card's intended images are checked against, and the frame.
static loupe::Image decode_file(const uint8_t* bytes, size_t size, const char* dicom_attributes, ImageEntry& entry) {
  if (!dicom_attributes || !*dicom_attributes) return loupe::decode_image(bytes, size);
  const nlohmann::json attributes = nlohmann::json::parse(dicom_attributes, nullptr, /*allow_exceptions=*/false);
  if (attributes.is_discarded()) throw loupe::Error(loupe::ErrorCode::CorruptImage, "DICOM attributes are not valid JSON");
  const loupe::DicomPixels dicom = loupe::dicom_pixels_from_json(attributes, bytes, size);
  entry.modality = dicom.modality;
  entry.body_part = dicom.body_part;
  entry.view_position = dicom.view_position;
  entry.frame = dicom.frame;
  entry.frames = dicom.frames > 1 ? dicom.frames : 0;
  return loupe::dicom_to_image(dicom);
}

const loupe::IntendedImages* intended_images(const AppState& app) {
  const auto& intended = app.model.info.card.intended_images;
  return app.model.status == ModelStatus::ready && intended ? &*intended : nullptr;
}

std::string intended_use_warning(const AppState& app, const ImageEntry& entry) {
  const loupe::IntendedImages* intended = intended_images(app);
  return intended ? intended->contradiction(entry.modality, entry.body_part, entry.view_position) : "";
}

// Decodes with the shared core, keeps the metadata, classifies the image when the active model
// has not, and keeps the pixels only when it is the selected image.
void on_image_file_read(AppState& app, int request, const uint8_t* bytes, size_t size, const char* dicom_attributes,
                        const char* error) {
  const auto read = std::find_if(app.reads.begin(), app.reads.end(), [&](const FileRead& r) { return r.request == request; });
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
      const auto started = std::chrono::steady_clock::now();
      loupe::Image image = decode_file(bytes, size, dicom_attributes, entry);
      app.profile.decode_ms += ms_since(started);
      ++app.profile.images_decoded;
      entry.status = EntryStatus::ok;
      entry.error.clear();
      entry.width = image.width;
      entry.height = image.height;
      entry.channels = image.channels;
      entry.bits = image.depth == loupe::PixelDepth::U16 ? 16 : 8;
      if (app.model.status == ModelStatus::ready && !has_prediction(app, entry) && (!app.paused || index == app.selected)) {
        start_inference(app, index, image);
      }
      if (index == app.selected) {
        ImageView& view = app.view;
        view.entry = index;
        view.auto_window = auto_window(image);
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
// [SECTION] Derived views, report, export
//-----------------------------------------------------------------------------------------------

// The table's rows, the results and the evaluation (below).
static void refresh_table_and_evaluation(AppState& app);

void refresh_views(AppState& app) {
  refresh_table_and_evaluation(app);
  refresh_site_calibration(app);  // after the results it reads
}

static void refresh_table_and_evaluation(AppState& app) {
  DerivedViews& views = app.views;
  if (views.revision == app.images_revision && views.model_id == app.model.id) return;
  // A matrix cell is one model's: another model's matrix has other counts.
  if (views.model_id != app.model.id) app.table.cell.reset();
  views.revision = app.images_revision;
  views.model_id = app.model.id;
  const std::vector<std::string>& classes = active_classes(app);
  views.results.clear();
  views.evaluation = loupe::Evaluation{};
  if (app.model.status == ModelStatus::ready) {
    views.results.reserve(app.images.size());
    for (const ImageEntry& entry : app.images) {
      views.results.push_back(result_row(entry, classes, app.model.id, intended_images(app)));
    }
  }
  views.rows = visible_rows(app.images, app.table, classes, app.model.id, &views.results);
  if (app.model.status != ModelStatus::ready) return;
  views.evaluation = loupe::evaluate(views.results, classes);
  if (!views.evaluation.report || batch_progress(app).running) return;
  // The labelled predictions, and a fingerprint of them (FNV-1a over labels and probabilities).
  std::vector<std::vector<double>> scores;
  std::vector<int> labels;
  uint64_t fingerprint = 1469598103934665603ull;
  const auto mix = [&](const void* data, size_t size) {
    for (size_t i = 0; i < size; ++i) fingerprint = (fingerprint ^ static_cast<const uint8_t*>(data)[i]) * 1099511628211ull;
  };
  for (const loupe::ResultRow& row : views.results) {
    if (row.label < 0 || row.status != loupe::ResultStatus::ok) continue;
    scores.emplace_back(row.prediction.probabilities.begin(), row.prediction.probabilities.end());
    labels.push_back(row.label);
    mix(&row.label, sizeof row.label);
    mix(row.prediction.probabilities.data(), row.prediction.probabilities.size() * sizeof(float));
  }
  if (!views.intervals || views.intervals_of != fingerprint) {
    views.intervals = loupe::report_intervals(classes, scores, labels);
    views.intervals_of = fingerprint;
  }
  views.evaluation.report->intervals = views.intervals;
}

loupe::HeatMap class_heat_map(const CamResult& cam, int cls) {
  return loupe::class_activation_map(cam.planes.plane(cls), cam.planes.height, cam.planes.width);
}

std::string export_csv(const AppState& app) {
  if (app.model.status != ModelStatus::ready) return {};
  const std::vector<std::string>& classes = app.model.info.card.class_names;
  const std::vector<int> rows = visible_rows(app.images, app.table, classes, app.model.id);
  std::vector<loupe::ResultRow> results;
  results.reserve(app.images.size());
  if (rows.size() == app.images.size()) {
    for (const int i : rows) {
      results.push_back(result_row(app.images[static_cast<size_t>(i)], classes, app.model.id, intended_images(app)));
    }
  } else {
    for (const ImageEntry& entry : app.images) results.push_back(result_row(entry, classes, app.model.id, intended_images(app)));
  }
  return loupe::results_csv(results, app.model.info.card);
}

// The selected image's report (shared core: loupe/image_report.h), saved as a PNG download.
static void save_report(const AppState& app) {
  if (app.selected < 0 || app.view.entry != app.selected || app.model.status != ModelStatus::ready) return;
  const ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
  const loupe::ModelCard& card = app.model.info.card;
  loupe::ImageReport report;
  report.file_name = entry.path;
  report.created_utc = app.host->now_iso8601();
  report.model_name = card.name;
  report.model_file = app.model.file;
  report.architecture = card.architecture;
  report.weights_sha256 = app.model.weights_sha256;
  report.class_names = card.class_names;
  const Prediction& p = entry.prediction;
  const bool predicted = p.model_id == app.model.id && p.status == PredictionStatus::done;
  if (predicted) report.probabilities = p.probabilities;
  report.disclaimer = card.disclaimer;
  report.labels = report_labels(app.ui.language);  // in the language the page is read in (i18n.h)
  report.probability_note = probability_note_text(card, app.ui.language);
  if (predicted && card.site_calibration && !card.site_calibration->operating_points.empty()) {
    report.predicted = p.top;  // chosen by the operating points (loupe/prediction.h)
    report.decision_note = decision_note_text(card, app.ui.language);
  }
  if (predicted && p.has_ood) {
    report.ood_status = loupe::report_ood_status(report.labels, p.out_of_distribution, p.ood_distance, card.ood->threshold);
    report.out_of_distribution = p.out_of_distribution;
  }
  const int cls = heat_map_class(app);
  if (cls >= 0) {
    report.heat_map = class_heat_map(app.cam, cls);
    report.heat_map_class = card.class_names[static_cast<size_t>(cls)];
    report.preprocess = card.preprocess;
    report.heat_map_opacity = app.heat_map.opacity;
  }
  try {
    const std::vector<uint8_t> png = loupe::encode_png(loupe::render_image_report(app.view.image, report));
    const std::string stem = entry.name.substr(0, entry.name.find_last_of('.'));
    app.host->download_bytes("loupe-report-" + stem + ".png", "image/png", png);
  } catch (const std::exception& report_error) {
    std::fprintf(stderr, "Loupe: cannot make the report: %s\n", report_error.what());
  }
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Applying UI actions
//-----------------------------------------------------------------------------------------------

void apply(AppState& app, const UiActions& actions) {
  if (actions.open_files) app.host->open_image_picker(false);
  if (actions.open_folder) app.host->open_image_picker(true);
  if (actions.open_model) app.host->open_model_picker();
  if (actions.open_shipped) app.host->open_shipped_model(*actions.open_shipped);
  if (actions.filter) {
    app.table.filter = *actions.filter;
    ++app.images_revision;
  }
  if (actions.matrix_cell) {
    app.table.cell = *actions.matrix_cell;
    ++app.images_revision;
    // The evaluation window lies over the table: a chosen cell shows its images (the window comes
    // back with the workspace's evaluation button, the cell marked).
    if (app.table.cell) app.show_evaluation = false;
    // The cell's first image in the viewer, with its heat map, unless the selection is one of them.
    refresh_views(app);
    const std::vector<int>& rows = app.views.rows;
    if (app.table.cell && !rows.empty() && std::find(rows.begin(), rows.end(), app.selected) == rows.end()) {
      select_entry(app, rows.front());
      app.scroll_to_selected = true;
    }
  }
  if (actions.sort) {
    app.table.sort_column = actions.sort->first;
    app.table.ascending = actions.sort->second;
    ++app.images_revision;
  }
  if (actions.cancel_batch) {
    app.paused = true;  // runs in flight finish; nothing new starts (the selected image excepted)
    drop_staged(app);
    pump(app);          // the selected image, if it was staged
  }
  if (actions.resume_batch) {
    app.paused = false;
    rescan(app);
  }
  if (actions.show_evaluation) app.show_evaluation = *actions.show_evaluation;
  apply_site_calibration(app, actions.site_calibration);
  if (actions.save_report) save_report(app);
  if (actions.heat_map) {
    app.heat_map = *actions.heat_map;
    app.view.heat_dirty = true;
  }
  if (actions.export_csv && app.model.status == ModelStatus::ready) {
    const std::string stem = app.model.info.card.name.empty() ? std::string("loupe") : app.model.info.card.name;
    app.host->download("loupe-results-" + stem + ".csv", "text/csv", export_csv(app));
  }
  if (actions.select >= 0) select_entry(app, actions.select);
  if (actions.frame) choose_frame(app, *actions.frame);
  if (actions.step != 0) {
    refresh_views(app);
    const std::vector<int>& rows = app.views.rows;
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

}  // namespace loupe_web
