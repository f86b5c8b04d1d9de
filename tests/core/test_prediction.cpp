// What a model's outputs mean (loupe/prediction.h): the one function `loupe predict` and the web
// page both call, natively and as wasm.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "loupe/error.h"
#include "loupe/prediction.h"

using namespace loupe;

namespace {

ModelCard card_with(std::vector<std::string> classes) {
  ModelCard card;
  card.class_names = std::move(classes);
  card.outputs = {{"logits", {"batch", static_cast<int>(card.class_names.size())}, ""}};
  return card;
}

OodCheck ood_check(double threshold) {
  return OodCheck::from_json({{"method", "mahalanobis_shared_covariance"}, {"output", "ood_distance"}, {"threshold", threshold}});
}

}  // namespace

TEST_CASE("probabilities: softmax of the logits, stable for large values", "[prediction]") {
  const float logits[] = {1000.0f, 1001.0f, 999.0f};
  const std::vector<float> p = calibrated_probabilities(logits, 3);
  REQUIRE(p.size() == 3);
  CHECK(p[0] + p[1] + p[2] == Approx(1.0f));
  CHECK(p[1] == Approx(std::exp(1.0) / (1.0 + std::exp(1.0) + std::exp(-1.0))));
  CHECK(p[0] > p[2]);
}

TEST_CASE("probabilities: temperature scaling divides the logits by T", "[prediction]") {
  const float logits[] = {2.0f, 0.0f};
  const std::vector<float> plain = calibrated_probabilities(logits, 2, 1.0);
  const std::vector<float> scaled = calibrated_probabilities(logits, 2, 2.0);
  CHECK(plain[0] == Approx(1.0 / (1.0 + std::exp(-2.0))));
  CHECK(scaled[0] == Approx(1.0 / (1.0 + std::exp(-1.0))));  // softmax([1, 0])
  // One logit: its sigmoid, with the temperature too.
  const float single[] = {2.0f};
  CHECK(calibrated_probabilities(single, 1, 2.0)[0] == Approx(1.0 / (1.0 + std::exp(-1.0))));
}

TEST_CASE("interpret_outputs: calibrated probabilities, top class, confidence", "[prediction]") {
  ModelCard card = card_with({"covid", "normal", "pneumonia"});
  const float logits[] = {0.5f, 2.5f, 1.0f};
  ImageOutputs out;
  out.logits = logits;
  out.logits_size = 3;
  const Prediction plain = interpret_outputs(card, out);
  CHECK(plain.top == 1);
  CHECK(plain.confidence == plain.probabilities[1]);
  CHECK_FALSE(plain.has_ood);
  CHECK(plain.cam.empty());

  card.calibration = Calibration::from_json({{"method", "temperature_scaling"}, {"temperature", 2.0}});
  const Prediction calibrated = interpret_outputs(card, out);
  CHECK(calibrated.top == 1);
  CHECK(calibrated.confidence < plain.confidence);  // T > 1 softens
  const std::vector<float> expected = calibrated_probabilities(logits, 3, 2.0);
  for (size_t i = 0; i < 3; ++i) CHECK(calibrated.probabilities[i] == expected[i]);
}

TEST_CASE("interpret_outputs: the out-of-distribution flag, NaN included", "[prediction]") {
  ModelCard card = card_with({"a", "b"});
  card.outputs.push_back({"ood_distance", {"batch"}, ""});
  card.ood = ood_check(10.0);
  const float logits[] = {0.0f, 1.0f};
  ImageOutputs out;
  out.logits = logits;
  out.logits_size = 2;
  CHECK_THROWS_WITH(interpret_outputs(card, out), Catch::Contains("ood_distance"));  // the card promises it
  for (const auto& [distance, flagged] : std::vector<std::pair<float, bool>>{
           {9.5f, false}, {10.0f, false}, {10.5f, true}, {std::numeric_limits<float>::quiet_NaN(), true}}) {
    out.ood_distance = &distance;
    const Prediction p = interpret_outputs(card, out);
    CAPTURE(distance);
    CHECK(p.has_ood);
    CHECK(p.out_of_distribution == flagged);
  }
  CHECK(prediction_outputs(card) == std::vector<std::string>{"logits", "ood_distance"});
}

TEST_CASE("interpret_outputs: the CAM planes of the image", "[prediction]") {
  ModelCard card = card_with({"a", "b"});
  card.outputs.push_back({"cam", {"batch", 2, 2, 3}, ""});
  CHECK(prediction_outputs(card) == std::vector<std::string>{"logits"});
  CHECK(prediction_outputs(card, true) == std::vector<std::string>{"logits", "cam"});
  const float logits[] = {0.0f, 1.0f};
  std::vector<float> cam(12);
  for (size_t i = 0; i < cam.size(); ++i) cam[i] = static_cast<float>(i);
  ImageOutputs out;
  out.logits = logits;
  out.logits_size = 2;
  out.cam = cam.data();
  out.cam_height = 2;
  out.cam_width = 3;
  const Prediction p = interpret_outputs(card, out);
  REQUIRE(p.cam.values.size() == 12);
  CHECK(p.cam.classes == 2);
  CHECK(p.cam.plane(1)[0] == 6.0f);
}

TEST_CASE("interpret_outputs: outputs that do not fit the card are errors", "[prediction][bad-input]") {
  const ModelCard card = card_with({"a", "b", "c"});
  const float logits[] = {0.0f, 1.0f, std::numeric_limits<float>::infinity()};
  ImageOutputs out;
  out.logits = logits;
  out.logits_size = 2;
  CHECK_THROWS_WITH(interpret_outputs(card, out), Catch::Contains("2 values for 3 classes"));
  out.logits_size = 3;
  CHECK_THROWS_WITH(interpret_outputs(card, out), Catch::Contains("not finite"));
}

TEST_CASE("the card's calibration and ood entries are typed and round-trip", "[prediction][model_card]") {
  const Calibration c = Calibration::from_json({{"temperature", 1.5}, {"fitted_on", "validation split (10 images)"}});
  CHECK(c.method == "temperature_scaling");
  CHECK(c.temperature == 1.5);
  CHECK(c.to_json()["fitted_on"] == "validation split (10 images)");
  CHECK_THROWS_WITH(Calibration::from_json({{"method", "isotonic"}, {"temperature", 1.0}}),
                    Catch::Contains("calibration.method: 'isotonic'"));
  CHECK_THROWS_WITH(Calibration::from_json({{"temperature", -1.0}}), Catch::Contains("calibration.temperature"));
  CHECK_THROWS_WITH(OodCheck::from_json({{"output", "ood_distance"}}), Catch::Contains("ood.threshold"));
  const OodCheck o = ood_check(3.0);
  CHECK(o.to_json()["threshold"] == 3.0);

  ModelCard card = card_with({"a", "b"});
  CHECK(probability_note(card) == "not calibrated (softmax of the logits)");
  card.calibration = c;
  CHECK(probability_note(card) == "calibrated by temperature scaling (T = 1.5), fitted on validation split (10 images)");
}
