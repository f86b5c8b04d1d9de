// "Calibrate for this site" in the page: the labelled, predicted images of the active model refit
// its temperature with the shared core (loupe/calibration.h: the same code as `loupe calibrate`),
// the user sets operating points per class, and the page downloads the model with a card that
// records it (never over the original).
//
//   UiActions actions;  actions.site_calibration.show = true;   // draw_calibration.cpp does this
//   apply(app, actions);                                        // app_logic.h: opens the view
//   refresh_views(app);                                         // computes it (when its inputs changed)
//   app.site.result->comparison.after.ece;                      // or app.site.refusal
//
// When it is computed (the fit's bootstrap is what costs: 2,000 paired resamples):
//   - the fit, its figures and their intervals: when the view opens, and again only when the
//     labelled predictions change (a fingerprint of their labels and logits) or another model
//     becomes active; never per frame;
//   - an operating point: at every change of its target, live while a slider is dragged: the
//     threshold is chosen on the stored logits (a sort; no bootstrap), the figures stay.
// Refused, with the reason shown instead: no model, a batch still running, no labelled image, and
// what the core refuses (fewer than kMinSiteImagesPerClass labelled images of a class, with every
// class's count).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loupe/calibration.h"

namespace loupe_web {

struct AppState;

// One class's operating point as the user set it: none, or a target of a kind and value.
struct SiteTarget {
  bool enabled = false;
  loupe::TargetKind kind = loupe::TargetKind::sensitivity;
  double value = 0.95;
  bool operator==(const SiteTarget& other) const {
    return enabled == other.enabled && kind == other.kind && value == other.value;
  }
};

// What the user did in the calibration view this frame (UiActions::site_calibration).
struct SiteCalibrationActions {
  std::optional<bool> show;              // open / close the view
  int target_class = -1;                 // >= 0: that class's target is now `target`
  SiteTarget target;
  bool download = false;                 // "Download calibrated model"
};

// The view's state (AppState::site).
struct SiteCalibrationView {
  bool open = false;
  std::vector<SiteTarget> targets;       // one per class of the model below
  int model_id = 0;                      // the model the targets and the result are of
  // Why there is no result: a catalogue key (the page's own reasons) and/or the core's message
  // (shown as it is: it names the classes and their counts).
  std::string refusal_key, refusal;
  std::optional<loupe::SiteCalibrationResult> result;
  loupe::LabelledLogits data;            // the images the result is of (operating points re-chosen on them)
  std::string operating_point_error;     // a target the core refused (the others stand)
  uint64_t fitted_of = 0;                // fingerprint of the inputs of the fit
  long seen_revision = -1;               // AppState::images_revision last looked at
  int fits = 0;                          // fits run (the bootstrap): the tests check it is not per frame
  std::string downloaded, download_error;  // the last download's file name, or why it failed
};

// Applies the view's actions (app_logic.cpp apply() calls it).
void apply_site_calibration(AppState& app, const SiteCalibrationActions& actions);
// Brings the result up to date with the images, the model and the targets (refresh_views()
// calls it; cheap when nothing changed).
void refresh_site_calibration(AppState& app);
// The model's file name for the calibrated copy: "chest.onnx" -> "chest.site.onnx" (a name that is
// never the original's).
std::string site_calibrated_file_name(const std::string& model_file);
// The figures as the view draws them (value [low, high], 4 decimals): the test hook publishes the
// same texts, so the browser tests check what is on screen against the numbers.
struct SiteFigureTexts {
  std::string ece_before, ece_after, ece_change, nll_before, nll_after, nll_change;
};
SiteFigureTexts site_figure_texts(const loupe::SiteCalibrationResult& result);
// The record's figures for the test hook: state.siteCalibration (state_json.h).
nlohmann::json site_calibration_json(const AppState& app);

}  // namespace loupe_web
