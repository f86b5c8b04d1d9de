// A per-image report a person can keep: the image with its heat map, the model's probabilities,
// the out-of-distribution status, which model (name, file, weights hash), when, and the
// "not a diagnostic device" statement, rendered into one picture (encode_png() it). The browser's
// "Save report" and native tools draw the same report from the same code.
//
//   loupe::ImageReport report;            // fill in what is known
//   loupe::Image page = loupe::render_image_report(image, report);
//   std::vector<uint8_t> png = loupe::encode_png(page);
//
// The report's own words come from ImageReportLabels: English by default (native tools), the
// page passes its catalogue's (web/i18n.h) so a report is in the language the user reads.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "loupe/heatmap.h"
#include "loupe/image.h"
#include "loupe/preprocess.h"

namespace loupe {

// Every word the report draws besides the data. Drawn with OpenCV's Hershey font: ASCII only.
// Templates name their values in braces: {class}, {distance}, {threshold}, {t}, {on}.
struct ImageReportLabels {
  std::string title = "Loupe image report";
  std::string image = "Image";
  std::string date = "Date";
  std::string model = "Model";
  std::string file = "file";
  std::string weights = "Weights SHA-256";
  std::string model_output = "Model output";
  std::string probabilities = "Probabilities";
  std::string no_prediction = "No prediction.";
  std::string warning = "WARNING";
  std::string training_data_check = "Training-data check";
  std::string ood_within = "within the range of the training data (distance {distance}, threshold {threshold})";
  std::string ood_outside =
      "this image does not look like the model's training data; its output is not reliable (distance {distance}, "
      "threshold {threshold})";
  std::string heat_map = "Heat map: {class} (class activation map)";
  std::string predicted_class = "predicted class";
  std::string decision = "Predicted class";  // how the class was chosen (operating points)
  // Drawn when the model card has no statement of its own; in another language than English, drawn
  // before the card's statement (which is quoted as the card's author wrote it).
  std::string not_diagnostic = "Loupe is not a diagnostic device. Not for clinical decisions.";
  std::string calibrated = "calibrated by temperature scaling (T = {t}), fitted on {on}";
  std::string not_calibrated = "not calibrated (softmax of the logits)";
  std::string validation_split = "the validation split";  // {on} when the card does not say
};

// The out-of-distribution line of a report: labels.ood_within or ood_outside with the figures.
std::string report_ood_status(const ImageReportLabels& labels, bool out_of_distribution, double distance,
                              double threshold);
// How the probabilities were obtained (labels.calibrated or not_calibrated): `temperature` <= 0
// means none was fitted; `fitted_on` as the card records it.
std::string report_probability_note(const ImageReportLabels& labels, double temperature, const std::string& fitted_on);

struct ImageReport {
  std::string file_name;        // the image's name or relative path
  std::string created_utc;      // when the report was made, ISO 8601
  std::string model_name, model_file, architecture;
  std::string weights_sha256;   // hex
  std::vector<std::string> class_names;
  std::vector<float> probabilities;  // in class order; empty: no prediction
  std::string probability_note;      // e.g. "calibrated (temperature scaling, T = 1.42)": which calibration is in use
  // The predicted class (Prediction::top: operating points applied, prediction.h); -1: the
  // largest probability. decision_note says how it was chosen (prediction.h decision_note), when
  // the model sets operating points.
  int predicted = -1;
  std::string decision_note;
  // Out-of-distribution check: empty when the model has none.
  std::string ood_status;            // e.g. "within the training data (distance 31.2, threshold 48.0)"
  bool out_of_distribution = false;  // drawn as a warning when true
  // Heat map over the image (optional): the class's normalised map and the preprocessing that
  // gives its geometry (heatmap.h).
  std::optional<HeatMap> heat_map;
  std::string heat_map_class;
  PreprocessSpec preprocess;
  float heat_map_opacity = 0.45f;
  std::string disclaimer;            // the model card's statement (a default is drawn when empty)
  ImageReportLabels labels;          // the report's own words (English unless given)
};

// The report as an 8-bit RGB image (about 1400 x 800). Gray 16-bit images are shown through their
// own min..max. Throws Error on an empty image.
Image render_image_report(const Image& image, const ImageReport& report);

}  // namespace loupe
