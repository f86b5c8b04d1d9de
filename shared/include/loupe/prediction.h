// What a model's outputs mean: the one place that turns the raw outputs of an exported model for
// one image into a prediction. `loupe predict`, `loupe eval` and the web page all call it, so they
// agree on every probability, class and flag.
//
//   const loupe::ModelCard& card = info.card;                 // onnx_model.h
//   std::vector<std::string> names = loupe::prediction_outputs(card);   // {"logits", "ood_distance"}
//   ... run the model on one preprocessed image, asking for `names` ...
//   loupe::ImageOutputs out;
//   out.logits = logits.data(); out.logits_size = logits.size();
//   out.ood_distance = &distance;                             // when the card has an ood check
//   loupe::Prediction p = loupe::interpret_outputs(card, out);
//   std::cout << card.class_names[p.top] << " " << p.confidence;
//
// Probabilities are computed here from the logits, with the calibration in use (temperature
// scaling: softmax(logits / T), T = ModelCard::temperature_in_use(): a site calibration's, else the
// export's); a one-class model has a single logit and gets its sigmoid. The graph's own
// "probabilities" output holds the same numbers for the export's calibration (tested), but the
// logits are what every Loupe model has, and a calibration refitted for a site (calibration.h)
// applies to them without changing the graph.
//
// The predicted class (Prediction::top). Without operating points it is the class with the largest
// probability (the first on ties). A site calibration may set an operating point for some classes
// (class c is called when p_c >= its threshold t_c); then:
//   1. if some classes reach their operating point, the one of them with the largest probability;
//   2. else the class with the largest probability among those without an operating point;
//   3. else (every class has one and none is reached) the class with the largest probability.
// So "Pneumonia at sensitivity 0.95" calls Pneumonia whenever its probability reaches the
// threshold chosen for that sensitivity, even when another class is more probable, and never
// calls it below the threshold while another class can be called.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "loupe/model_card.h"

namespace loupe {

// One image's slice of each output it was run with. Pointers stay the caller's.
struct ImageOutputs {
  const float* logits = nullptr;       // class_names.size() values
  size_t logits_size = 0;
  const float* ood_distance = nullptr; // one value; required when the card has an ood check
  const float* cam = nullptr;          // optional: classes x cam_height x cam_width values
  int cam_height = 0, cam_width = 0;
};

// The class activation maps of one image, [classes, height, width] (the "cam" output).
struct CamPlanes {
  int classes = 0, height = 0, width = 0;
  std::vector<float> values;
  bool empty() const { return values.empty(); }
  const float* plane(int cls) const { return values.data() + static_cast<size_t>(cls) * height * width; }
};

struct Prediction {
  std::vector<float> logits;         // the model's raw logits for the image (what a recalibration refits)
  std::vector<float> probabilities;  // one per class, in class_names order; calibrated when the card says so
  int top = -1;                      // the predicted class: the largest probability, or the operating
                                     // points' rule when the calibration in use sets some (above)
  float confidence = 0;              // probabilities[top]
  // With operating points: 1 for each class whose probability reaches its operating point, 0 for
  // the others (classes without one included); empty when the card sets none.
  std::vector<uint8_t> at_operating_point;
  // The card's out-of-distribution check, when it has one: the image's distance and whether it is
  // flagged (above the threshold, or not a number: an image without a distance is not trusted).
  bool has_ood = false;
  float ood_distance = 0;
  bool out_of_distribution = false;
  CamPlanes cam;                     // filled when ImageOutputs::cam was given
};

// The outputs to ask the model for: "logits", the card's ood output when it has one, and "cam"
// when `with_cam` and the model has it.
std::vector<std::string> prediction_outputs(const ModelCard& card, bool with_cam = false);

// The prediction for one image. Throws Error(InvalidArgument) naming what is missing: fewer or
// more logits than classes, no distance although the card has an ood check, a CAM of another
// class count.
Prediction interpret_outputs(const ModelCard& card, const ImageOutputs& outputs);

// softmax(logits / temperature), in double, stable for large logits; for one logit its sigmoid.
std::vector<float> calibrated_probabilities(const float* logits, size_t count, double temperature = 1);

// The predicted class of `probabilities` under `operating_points` (the rule above; none: the
// largest probability). Fills `reached` (when given) with 1 per class at its operating point.
int predicted_class(const std::vector<float>& probabilities, const std::vector<OperatingPointRule>& operating_points,
                    std::vector<uint8_t>* reached = nullptr);

// How the probabilities are obtained, for people: "calibrated by temperature scaling (T = 1.42),
// fitted on validation split (58 images)", "calibrated for this site by temperature scaling
// (T = 1.31), fitted on 48 labelled images on 2026-12-04T10:00:00Z; the export's calibration
// (T = 1.16) is kept in the card, not used", or "not calibrated (softmax of the logits)".
std::string probability_note(const ModelCard& card);

// How the predicted class is chosen, for people: "the largest probability", or the operating
// points: "operating points (site calibration of 2026-12-04T10:00:00Z): Pneumonia when p >= 0.213;
// otherwise the largest probability of the other classes".
std::string decision_note(const ModelCard& card);

}  // namespace loupe
