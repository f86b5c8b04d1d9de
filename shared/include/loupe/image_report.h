// A per-image report a person can keep: the image with its heat map, the model's probabilities,
// the out-of-distribution status, which model (name, file, weights hash), when, and the
// "not a diagnostic device" statement, rendered into one picture (encode_png() it). The browser's
// "Save report" and native tools draw the same report from the same code.
//
//   loupe::ImageReport report;            // fill in what is known
//   loupe::Image page = loupe::render_image_report(image, report);
//   std::vector<uint8_t> png = loupe::encode_png(page);
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "loupe/heatmap.h"
#include "loupe/image.h"
#include "loupe/preprocess.h"

namespace loupe {

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
};

// The report as an 8-bit RGB image (about 1400 x 800). Gray 16-bit images are shown through their
// own min..max. Throws Error on an empty image.
Image render_image_report(const Image& image, const ImageReport& report);

}  // namespace loupe
