// From a model's raw outputs to a prediction (prediction.h).
#include "loupe/prediction.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "loupe/error.h"

namespace loupe {

std::vector<std::string> prediction_outputs(const ModelCard& card, bool with_cam) {
  std::vector<std::string> names{"logits"};
  if (card.ood) names.push_back(card.ood->output);
  if (with_cam && card.has_output("cam")) names.push_back("cam");
  return names;
}

std::vector<float> calibrated_probabilities(const float* logits, size_t count, double temperature) {
  std::vector<float> out(count);
  if (count == 0) return out;
  if (count == 1) {  // a single logit: the probability of the one class
    out[0] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logits[0]) / temperature)));
    return out;
  }
  std::vector<double> scaled(count);
  for (size_t i = 0; i < count; ++i) scaled[i] = static_cast<double>(logits[i]) / temperature;
  const double top = *std::max_element(scaled.begin(), scaled.end());
  double sum = 0;
  for (double& v : scaled) sum += (v = std::exp(v - top));
  for (size_t i = 0; i < count; ++i) out[i] = static_cast<float>(scaled[i] / sum);
  return out;
}

Prediction interpret_outputs(const ModelCard& card, const ImageOutputs& outputs) {
  const size_t classes = card.class_names.size();
  if (!outputs.logits || outputs.logits_size != classes) {
    throw Error(ErrorCode::InvalidArgument, "the model's 'logits' output has " + std::to_string(outputs.logits_size) +
                                                " values for " + std::to_string(classes) + " classes");
  }
  for (size_t i = 0; i < classes; ++i) {
    if (!std::isfinite(outputs.logits[i])) {
      throw Error(ErrorCode::InvalidArgument, "the model's logits are not finite numbers for this image");
    }
  }
  Prediction p;
  p.probabilities = calibrated_probabilities(outputs.logits, classes, card.calibration ? card.calibration->temperature : 1);
  p.top = static_cast<int>(std::max_element(p.probabilities.begin(), p.probabilities.end()) - p.probabilities.begin());
  p.confidence = p.probabilities[static_cast<size_t>(p.top)];
  if (card.ood) {
    if (!outputs.ood_distance) {
      throw Error(ErrorCode::InvalidArgument, "no '" + card.ood->output + "' value although the model card has an out-of-distribution check");
    }
    p.has_ood = true;
    p.ood_distance = *outputs.ood_distance;
    p.out_of_distribution = card.ood->flags(p.ood_distance);
  }
  if (outputs.cam) {
    const size_t plane = static_cast<size_t>(std::max(outputs.cam_height, 0)) * static_cast<size_t>(std::max(outputs.cam_width, 0));
    if (plane == 0) throw Error(ErrorCode::InvalidArgument, "the model's 'cam' output is empty");
    p.cam.classes = static_cast<int>(classes);
    p.cam.height = outputs.cam_height;
    p.cam.width = outputs.cam_width;
    p.cam.values.assign(outputs.cam, outputs.cam + plane * classes);
  }
  return p;
}

std::string probability_note(const ModelCard& card) {
  if (!card.calibration) return "not calibrated (softmax of the logits)";
  const nlohmann::json& record = card.calibration->record;
  const auto fitted = record.find("fitted_on");
  std::string on = fitted != record.end() && fitted->is_string() ? fitted->get<std::string>() : std::string("the validation split");
  char note[256];
  std::snprintf(note, sizeof note, "calibrated by temperature scaling (T = %.3g), fitted on %s",
                card.calibration->temperature, on.c_str());
  return note;
}

}  // namespace loupe
