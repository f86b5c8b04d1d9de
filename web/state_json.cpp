// The test hook's state (state_json.h).
#include "state_json.h"

#include "app_logic.h"
#include "i18n.h"
#include "loupe/prediction.h"

namespace loupe_web {

namespace {

nlohmann::json images_json(const AppState& app, bool with_list) {
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
                 {"ascending", app.table.ascending},
                 {"cell", app.table.cell ? nlohmann::json{{"trueClass", app.table.cell->true_class},
                                                          {"predictedClass", app.table.cell->predicted_class}}
                                         : nlohmann::json()}}},
      {"view", {{"entry", view.entry}, {"width", view.image.width}, {"height", view.image.height},
                {"channels", view.image.channels}, {"bits", view.image.depth == loupe::PixelDepth::U16 ? 16 : 8},
                {"zoom", view.zoom}, {"pan", {view.pan_x, view.pan_y}},
                {"window", {{"width", view.window.width}, {"level", view.window.level}}},
                {"texture", {{"width", view.texture_width}, {"height", view.texture_height}}}}},
  };
  if (!with_list) return json;
  const std::vector<std::string>& classes = active_classes(app);
  nlohmann::json list = nlohmann::json::array();
  for (const ImageEntry& entry : app.images) {
    nlohmann::json item = {{"name", entry.name}, {"path", entry.path}, {"size", entry.size_bytes},
                           {"status", status_text(entry)}, {"ok", entry.status == EntryStatus::ok},
                           {"width", entry.width}, {"height", entry.height}, {"channels", entry.channels},
                           {"bits", entry.bits}};
    const Prediction& p = entry.prediction;
    if (app.model.id > 0 && p.model_id == app.model.id && p.status != PredictionStatus::none) {
      item["prediction"] = {
          {"status", p.status == PredictionStatus::done ? "done" : p.status == PredictionStatus::error ? "error" : "running"},
          {"predicted", predicted_class(entry, classes, app.model.id)},
          {"confidence", p.confidence}, {"probabilities", p.probabilities}, {"error", p.error}};
      if (p.has_ood) item["prediction"]["ood"] = {{"distance", p.ood_distance}, {"flagged", p.out_of_distribution}};
    }
    item["intendedUseWarning"] = intended_use_warning(app, entry);
    if (entry.frames > 1) item["frame"] = {{"index", entry.frame}, {"count", entry.frames}};
    list.push_back(std::move(item));
  }
  json["list"] = std::move(list);
  json["rows"] = app.views.rows;
  return json;
}

nlohmann::json model_json(const AppState& app) {
  const Model& model = app.model;
  nlohmann::json json = {{"status", to_string(model.status)}, {"id", model.id}, {"file", model.file},
                         {"source", model.source}, {"error", app.model_error},
                         {"loading", app.model_load ? app.model_load->file : ""},
                         {"verifying", app.model_load && app.model_load->self_test_run > 0}};
  if (model.status != ModelStatus::ready) return json;
  const loupe::ModelCard& card = model.info.card;
  json["name"] = card.name;
  json["architecture"] = card.architecture;
  json["precision"] = card.precision.empty() ? loupe::kPrecisionFp32 : card.precision;
  json["classes"] = card.class_names;
  json["input"] = {card.input_channels, card.input_height, card.input_width};
  json["outputs"] = loupe::prediction_outputs(card);
  json["scoresOutput"] = "logits";  // probabilities are computed from them (loupe/prediction.h)
  json["probabilityNote"] = loupe::probability_note(card);
  json["weightsSha256"] = model.weights_sha256;
  json["weightsVerified"] = !card.weights_sha256.empty() && card.weights_sha256 == model.weights_sha256;
  json["selfTest"] = model.has_self_test
                         ? nlohmann::json{{"present", true}, {"passed", model.self_test.passed},
                                          {"maxDifference", model.self_test.max_abs_diff},
                                          {"tolerance", model.self_test.worst_bound}, {"images", model.self_test.images},
                                          {"summary", model.self_test.summary()}}
                         : nlohmann::json{{"present", false}};
  json["disclaimer"] = card.disclaimer;
  json["oodOutput"] = card.ood ? card.ood->output : "";
  json["oodThreshold"] = card.ood ? card.ood->threshold : 0.0;
  // The false-alarm rate the threshold was set for and the test split's, as the sidebar states them.
  nlohmann::json false_alarms;
  if (card.ood) {
    const nlohmann::json& record = card.ood->record;
    for (const char* key : {"false_alarm_rate", "false_alarm_interval", "test_false_alarm_rate", "test_false_alarm_interval",
                            "test_images", "calibration_distances"}) {
      if (record.contains(key)) false_alarms[key] = record.at(key);
    }
  }
  json["oodFalseAlarms"] = false_alarms;
  json["temperature"] = card.calibration ? card.calibration->temperature : 0.0;
  json["calibrationInUse"] = card.calibration_in_use();  // "site", "export" or "none"
  json["temperatureInUse"] = card.temperature_in_use();
  json["probabilityNoteShown"] = probability_note_text(card, app.ui.language);  // as the sidebar and the report say it
  json["decisionNote"] = loupe::decision_note(card);
  return json;
}

}  // namespace

nlohmann::json state_json(const AppState& app, bool with_image_list) {
  const BatchProgress progress = batch_progress(app);
  const CamResult& cam = app.cam;
  nlohmann::json json = {
      {"images", images_json(app, with_image_list)},
      {"model", model_json(app)},
      {"batch", {{"total", progress.total}, {"done", progress.done}, {"running", progress.running},
                 {"paused", app.paused}, {"inFlight", progress.in_flight}}},
      {"profile", {{"decodeMs", app.profile.decode_ms}, {"preprocessMs", app.profile.preprocess_ms},
                   {"interpretMs", app.profile.interpret_ms}, {"frameMs", app.profile.frame_ms},
                   {"publishMs", app.profile.publish_ms}, {"frames", app.profile.frames},
                   {"imagesDecoded", app.profile.images_decoded}, {"runs", app.profile.runs},
                   {"imagesRun", app.profile.images_run}}},
      {"showEvaluation", app.show_evaluation},
      {"siteCalibration", site_calibration_json(app)},
      {"ui", {{"language", language_code(app.ui.language)}, {"fontSize", app.ui.font_size},
              {"showHelp", app.ui.show_help}}},
      {"heatMap", {{"available", app.model.status == ModelStatus::ready && app.model.info.card.has_output("cam")},
                   {"visible", app.heat_map.visible}, {"class", heat_map_class(app)},
                   {"opacity", app.heat_map.opacity}, {"camEntry", cam.entry},
                   {"camShape", {cam.planes.classes, cam.planes.height, cam.planes.width}},
                   {"drawn", app.view.heat_ready && app.view.heat_texture_class >= 0 &&
                                 app.view.heat_texture_class == heat_map_class(app)}}},
      // The wasm heap only grows: its size is the app's peak memory (JS-side File handles aside).
      {"memory", {{"heapBytes", app.heap_bytes}}},
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
    const loupe::Evaluation& evaluation = app.views.evaluation;
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

nlohmann::json frame_ui_json(const UiActions& actions) {
  const auto fits = [](const std::vector<TextFit>& list) {
    nlohmann::json out = nlohmann::json::array();
    for (const TextFit& fit : list) {
      out.push_back({{"window", fit.window}, {"text", fit.text}, {"needed", fit.needed}, {"available", fit.available}});
    }
    return out;
  };
  nlohmann::json tooltip = nullptr;
  if (actions.tooltip) {
    tooltip = {{"text", actions.tooltip->text}, {"item", actions.tooltip->item}, {"tooltip", actions.tooltip->tooltip}};
  }
  return {{"clipped", fits(actions.clipped)}, {"ellipsised", fits(actions.ellipsised)}, {"tooltip", tooltip}};
}

}  // namespace loupe_web
