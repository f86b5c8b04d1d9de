// "Calibrate for this site" (site_calibration.h): the state, when it is computed, and the download.
//
// Index:
//   [SECTION] The inputs: targets, fingerprint
//   [SECTION] The fit and the operating points
//   [SECTION] Actions: open, targets, download
//   [SECTION] The test hook's view of it

#include "site_calibration.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <string>
#include <vector>

#include "app.h"
#include "app_logic.h"
#include "i18n.h"
#include "loupe/error.h"

namespace loupe_web {

//-----------------------------------------------------------------------------------------------
// [SECTION] The inputs: targets, fingerprint
//-----------------------------------------------------------------------------------------------

// The core's targets: one per class at most, by construction (one SiteTarget per class).
static std::vector<loupe::OperatingPointTarget> core_targets(const SiteCalibrationView& view) {
  std::vector<loupe::OperatingPointTarget> targets;
  for (size_t c = 0; c < view.targets.size(); ++c) {
    const SiteTarget& target = view.targets[c];
    if (target.enabled) targets.push_back({static_cast<int>(c), target.kind, target.value});
  }
  return targets;
}

// What the fit depends on: the model, whether a batch runs, and every labelled prediction (label
// and logits), FNV-1a. A new table order or filter leaves it as it is: no refit.
static uint64_t fit_fingerprint(const AppState& app, bool running) {
  uint64_t hash = 1469598103934665603ull;
  const auto mix = [&](const void* data, size_t size) {
    for (size_t i = 0; i < size; ++i) hash = (hash ^ static_cast<const uint8_t*>(data)[i]) * 1099511628211ull;
  };
  mix(&app.model.id, sizeof app.model.id);
  mix(&running, sizeof running);
  for (const loupe::ResultRow& row : app.views.results) {
    if (row.status != loupe::ResultStatus::ok || row.label < 0) continue;
    mix(&row.label, sizeof row.label);
    mix(row.prediction.logits.data(), row.prediction.logits.size() * sizeof(float));
  }
  return hash | 1;  // never 0: 0 means "not computed"
}

// A new active model: its own classes, no targets, nothing computed.
static void reset_for_model(SiteCalibrationView& view, const AppState& app) {
  const bool open = view.open;
  const int fits = view.fits;
  view = SiteCalibrationView{};
  view.open = open;
  view.fits = fits;
  view.model_id = app.model.id;
  view.targets.assign(active_classes(app).size(), SiteTarget{});
}

//-----------------------------------------------------------------------------------------------
// [SECTION] The fit and the operating points
//-----------------------------------------------------------------------------------------------

// Chooses the operating points on the stored images with the result's temperature (a sort per
// target, no bootstrap: cheap enough for every frame a slider moves), and writes them into the
// result's record and card as calibrate_for_site does.
static void choose_operating_points(SiteCalibrationView& view, const loupe::ModelCard& card) {
  loupe::SiteCalibrationResult& result = *view.result;
  view.operating_point_error.clear();
  result.operating_points.clear();
  for (const loupe::OperatingPointTarget& target : core_targets(view)) {
    try {
      loupe::OperatingPoint point =
          loupe::operating_point(view.data, result.comparison.after.temperature, target, result.comparison.bootstrap.level);
      point.class_name = card.class_names[static_cast<size_t>(point.class_index)];
      result.operating_points.push_back(point);
    } catch (const std::exception& error) {  // a target out of range: the others stand
      view.operating_point_error = error.what();
    }
  }
  nlohmann::json points = nlohmann::json::array();
  for (const loupe::OperatingPoint& point : result.operating_points) points.push_back(point.to_json());
  result.record["operating_points"] = points;
  result.card = card;
  result.card.site_calibration = loupe::SiteCalibration::from_json(result.record, card.class_names);
}

void refresh_site_calibration(AppState& app) {
  SiteCalibrationView& view = app.site;
  if (app.model.status != ModelStatus::ready) return;  // the last model's result stays until another is up
  if (view.model_id != app.model.id) reset_for_model(view, app);
  if (!view.open || view.seen_revision == app.images_revision) return;
  view.seen_revision = app.images_revision;
  const bool running = batch_progress(app).running;
  const uint64_t fingerprint = fit_fingerprint(app, running);
  if (fingerprint == view.fitted_of) return;
  view.fitted_of = fingerprint;
  view.result.reset();
  view.data = loupe::LabelledLogits{};
  view.refusal_key.clear();
  view.refusal.clear();
  const loupe::ModelCard& card = app.model.info.card;
  if (running) {
    view.refusal_key = "calib.refused_running";
    return;
  }
  loupe::LabelledLogits data = loupe::labelled_logits(app.views.results, card.class_names.size());
  if (data.size() == 0) {
    view.refusal_key = "calib.refused_no_labels";
    return;
  }
  loupe::SiteCalibrationOptions options;
  options.created_utc = app.host->now_iso8601();  // the page's clock
  try {
    // Without targets: the operating points are chosen below, the same way at every change.
    view.result = loupe::calibrate_for_site(card, data, options);
    ++view.fits;
  } catch (const std::exception& error) {  // too few images of a class (the counts named), a one-logit model
    view.refusal_key = "calib.refused";
    view.refusal = error.what();
    return;
  }
  view.data = std::move(data);
  choose_operating_points(view, card);
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Actions: open, targets, download
//-----------------------------------------------------------------------------------------------

std::string site_calibrated_file_name(const std::string& model_file) {
  std::string stem = model_file.substr(model_file.find_last_of("/\\") == std::string::npos ? 0 : model_file.find_last_of("/\\") + 1);
  std::string lower = stem;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.size() > 5 && lower.compare(lower.size() - 5, 5, ".onnx") == 0) stem.resize(stem.size() - 5);
  if (stem.empty()) stem = "model";
  return stem + ".site.onnx";  // "x.onnx" never ends in ".site.onnx" with the same stem: never the original's name
}

// The model file with the result in its card: the rest byte for byte (the graph, the weights and
// so their hash, the self-test), downloaded beside the original.
static void download_calibrated_model(AppState& app) {
  SiteCalibrationView& view = app.site;
  view.download_error.clear();
  if (!view.result || app.model.status != ModelStatus::ready) return;  // the button is not drawn then
  if (app.model.bytes.empty()) {
    view.download_error = app.model.file + ": the model file's bytes are not kept; open the model again";
    return;
  }
  const std::string file = site_calibrated_file_name(app.model.file);
  try {
    const std::vector<uint8_t> bytes = loupe::with_site_calibration(app.model.bytes.data(), app.model.bytes.size(), *view.result, file);
    app.host->download_bytes(file, "application/octet-stream", bytes);
    view.downloaded = file;
  } catch (const std::exception& error) {
    view.download_error = error.what();
  }
}

void apply_site_calibration(AppState& app, const SiteCalibrationActions& actions) {
  SiteCalibrationView& view = app.site;
  if (actions.show) {
    view.open = *actions.show;
    view.seen_revision = -1;  // look at the images again now
  }
  if (actions.target_class >= 0 && static_cast<size_t>(actions.target_class) < view.targets.size()) {
    SiteTarget target = actions.target;
    // Sensitivity and specificity in (0, 1], a threshold in [0, 1] (calibration.h).
    target.value = std::clamp(target.value, target.kind == loupe::TargetKind::threshold ? 0.0 : 0.01, 1.0);
    view.targets[static_cast<size_t>(actions.target_class)] = target;
    if (view.result) choose_operating_points(view, app.model.info.card);
  }
  if (actions.download) download_calibrated_model(app);
}

//-----------------------------------------------------------------------------------------------
// [SECTION] The test hook's view of it
//-----------------------------------------------------------------------------------------------

SiteFigureTexts site_figure_texts(const loupe::SiteCalibrationResult& result) {
  const loupe::CalibrationComparison& cmp = result.comparison;
  const auto text = [](double value, const loupe::Interval& interval) { return loupe::with_interval(value, interval, 4); };
  return {text(cmp.before.ece, cmp.before.ece_interval), text(cmp.after.ece, cmp.after.ece_interval),
          text(cmp.after.ece - cmp.before.ece, cmp.ece_change), text(cmp.before.nll, cmp.before.nll_interval),
          text(cmp.after.nll, cmp.after.nll_interval), text(cmp.after.nll - cmp.before.nll, cmp.nll_change)};
}

static nlohmann::json interval_json(const loupe::Interval& interval) { return {interval.low, interval.high}; }

nlohmann::json site_calibration_json(const AppState& app) {
  const SiteCalibrationView& view = app.site;
  nlohmann::json targets = nlohmann::json::array();
  for (const SiteTarget& target : view.targets) {
    targets.push_back({{"enabled", target.enabled}, {"kind", loupe::to_string(target.kind)}, {"value", target.value}});
  }
  const std::string refusal = !view.refusal.empty() ? view.refusal
                              : view.refusal_key.empty() ? std::string()
                                                         : Catalogue::of(app.ui.language).text(view.refusal_key);
  nlohmann::json json = {{"open", view.open}, {"modelId", view.model_id}, {"available", view.result.has_value()},
                         {"refusal", refusal}, {"refusalKey", view.refusal_key}, {"fits", view.fits},
                         {"targets", targets}, {"operatingPointError", view.operating_point_error},
                         {"downloaded", view.downloaded}, {"downloadError", view.download_error}};
  if (!view.result) return json;
  const loupe::SiteCalibrationResult& result = *view.result;
  const loupe::CalibrationComparison& cmp = result.comparison;
  const auto figures = [](const loupe::CalibrationFigures& f) {
    return nlohmann::json{{"temperature", f.temperature}, {"ece", f.ece}, {"eceInterval", interval_json(f.ece_interval)},
                          {"nll", f.nll}, {"nllInterval", interval_json(f.nll_interval)}, {"accuracy", f.accuracy},
                          {"bins", f.bins.to_json()}};
  };
  nlohmann::json points = nlohmann::json::array();
  for (const loupe::OperatingPoint& point : result.operating_points) points.push_back(point.to_json());
  json["images"] = result.images;
  json["classCounts"] = result.class_counts;
  json["fittedTemperature"] = result.fitted_temperature;
  json["temperatureApplied"] = result.temperature_applied;
  json["note"] = result.note;
  json["replaced"] = result.replaced;
  json["createdUtc"] = result.record.value("created_utc", "");
  json["before"] = figures(cmp.before);
  json["after"] = figures(cmp.after);
  json["eceChange"] = interval_json(cmp.ece_change);
  json["nllChange"] = interval_json(cmp.nll_change);
  json["resamples"] = cmp.bootstrap.resamples;
  json["operatingPoints"] = points;
  const SiteFigureTexts shown = site_figure_texts(result);
  json["shown"] = {{"eceBefore", shown.ece_before}, {"eceAfter", shown.ece_after}, {"eceChange", shown.ece_change},
                   {"nllBefore", shown.nll_before}, {"nllAfter", shown.nll_after}, {"nllChange", shown.nll_change}};
  json["downloadName"] = site_calibrated_file_name(app.model.file);
  return json;
}

}  // namespace loupe_web
