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

int predicted_class(const std::vector<float>& probabilities, const std::vector<OperatingPointRule>& operating_points,
                    std::vector<uint8_t>* reached) {
  if (probabilities.empty()) throw Error(ErrorCode::InvalidArgument, "predicted_class: no probabilities");
  const auto largest_of = [&](const std::vector<uint8_t>& allowed) {
    int best = -1;
    for (size_t c = 0; c < probabilities.size(); ++c) {
      if (allowed[c] && (best < 0 || probabilities[c] > probabilities[static_cast<size_t>(best)])) best = static_cast<int>(c);
    }
    return best;
  };
  std::vector<uint8_t> at_point(probabilities.size(), 0), without_point(probabilities.size(), 1);
  bool any_reached = false;
  for (const OperatingPointRule& rule : operating_points) {
    if (rule.class_index < 0 || static_cast<size_t>(rule.class_index) >= probabilities.size()) {
      throw Error(ErrorCode::InvalidArgument, "predicted_class: an operating point names class " +
                                                  std::to_string(rule.class_index) + " of " +
                                                  std::to_string(probabilities.size()));
    }
    const auto c = static_cast<size_t>(rule.class_index);
    without_point[c] = 0;
    at_point[c] = static_cast<double>(probabilities[c]) >= rule.threshold;
    any_reached = any_reached || at_point[c];
  }
  if (reached) *reached = operating_points.empty() ? std::vector<uint8_t>() : at_point;
  int top = any_reached ? largest_of(at_point) : largest_of(without_point);
  if (top < 0) top = largest_of(std::vector<uint8_t>(probabilities.size(), 1));
  return top;
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
  p.logits.assign(outputs.logits, outputs.logits + classes);
  p.probabilities = calibrated_probabilities(outputs.logits, classes, card.temperature_in_use());
  static const std::vector<OperatingPointRule> kNone;
  p.top = predicted_class(p.probabilities, card.site_calibration ? card.site_calibration->operating_points : kNone,
                          &p.at_operating_point);
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
  if (card.site_calibration) {
    const SiteCalibration& site = *card.site_calibration;
    char note[400];
    std::snprintf(note, sizeof note, "calibrated for this site by temperature scaling (T = %.3g), fitted on %lld labelled images%s%s",
                  site.temperature, static_cast<long long>(site.images), site.created_utc.empty() ? "" : " on ",
                  site.created_utc.c_str());
    std::string text = note;
    if (card.calibration) {
      std::snprintf(note, sizeof note, "; the export's calibration (T = %.3g) is kept in the card, not used",
                    card.calibration->temperature);
      text += note;
    }
    return text;
  }
  if (!card.calibration) return "not calibrated (softmax of the logits)";
  const nlohmann::json& record = card.calibration->record;
  const auto fitted = record.find("fitted_on");
  std::string on = fitted != record.end() && fitted->is_string() ? fitted->get<std::string>() : std::string("the validation split");
  char note[256];
  std::snprintf(note, sizeof note, "calibrated by temperature scaling (T = %.3g), fitted on %s",
                card.calibration->temperature, on.c_str());
  return note;
}

std::string decision_note(const ModelCard& card) {
  if (!card.site_calibration || card.site_calibration->operating_points.empty()) return "the largest probability";
  const SiteCalibration& site = *card.site_calibration;
  std::string text = "operating points (site calibration" + (site.created_utc.empty() ? "" : " of " + site.created_utc) + "): ";
  for (size_t i = 0; i < site.operating_points.size(); ++i) {
    char point[160];
    std::snprintf(point, sizeof point, "%s%s when p >= %.3g", i ? ", " : "", site.operating_points[i].class_name.c_str(),
                  site.operating_points[i].threshold);
    text += point;
  }
  const bool every_class = site.operating_points.size() >= card.class_names.size();
  text += every_class ? "; the most probable of the classes called, or the largest probability when none is"
                      : "; the most probable of the classes called, else the largest probability of the classes "
                        "without an operating point";
  return text;
}

}  // namespace loupe
