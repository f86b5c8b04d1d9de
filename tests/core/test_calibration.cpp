// Calibration in the shared core (loupe/calibration.h), natively and as wasm: the temperature fit
// `loupe export` and the site calibration share, the reliability bins and ECE against hand-computed
// values and metrics.h, the paired bootstrap, operating points and the predicted-class rule, the
// site calibration's refusals and card record, and a model file rewritten with it (the shipped
// chest X-ray model: weights and self-test byte for byte).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "loupe/calibration.h"
#include "loupe/error.h"
#include "loupe/image.h"
#include "loupe/onnx_model.h"
#include "loupe/prediction.h"
#include "loupe/results.h"

using namespace loupe;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// Deterministic numbers on every platform: mt19937_64's output is fixed by the standard, the
// distributions below are ours (std::normal_distribution differs between libc++ and libstdc++).
struct Random {
  std::mt19937_64 rng;
  explicit Random(uint64_t seed) : rng(seed) {}
  double uniform() { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
  double normal() {
    const double u = uniform() + 0x1.0p-54, v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  }
  // A class drawn from softmax(z / t).
  int draw(const std::vector<double>& z, double t) {
    std::vector<double> p(z.size());
    double sum = 0;
    for (size_t k = 0; k < z.size(); ++k) sum += (p[k] = std::exp(z[k] / t));
    double u = uniform() * sum;
    for (size_t k = 0; k < z.size(); ++k) {
      if ((u -= p[k]) < 0) return static_cast<int>(k);
    }
    return static_cast<int>(z.size()) - 1;
  }
};

// N images whose labels are drawn from softmax(logits / truth): the maximum-likelihood
// temperature is truth. K == 1: one logit z, the label drawn from sigmoid(z / truth).
LabelledLogits drawn(Random& random, size_t n, size_t k, double truth, double scale = 3.0) {
  LabelledLogits data;
  data.classes = k;
  std::vector<float> row(k);
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> z;
    for (size_t c = 0; c < k; ++c) row[c] = static_cast<float>(scale * random.normal());
    if (k == 1) z = {0.0, static_cast<double>(row[0])};
    else z.assign(row.begin(), row.end());
    data.add(row.data(), random.draw(z, truth));
  }
  return data;
}

// Logits whose softmax at T = 1 is `p` (log p), one row per image.
LabelledLogits from_probabilities(const std::vector<std::vector<double>>& p, const std::vector<int>& labels) {
  LabelledLogits data;
  data.classes = p.at(0).size();
  for (size_t i = 0; i < p.size(); ++i) {
    std::vector<float> row;
    for (double v : p[i]) row.push_back(static_cast<float>(std::log(v)));
    data.add(row.data(), labels[i]);
  }
  return data;
}

const std::vector<std::string> kClasses = {"Covid-19", "No_findings", "Pneumonia"};

ModelCard three_class_card(double export_temperature) {
  ModelCard card;
  card.name = "test";
  card.architecture = "mobilenet_v2";
  card.model = {{"architecture", "mobilenet_v2"}, {"num_classes", 3}};
  card.class_names = kClasses;
  card.outputs = {{"logits", {"batch", 3}, ""}};
  if (export_temperature > 0) {
    card.calibration = Calibration::from_json({{"method", "temperature_scaling"}, {"temperature", export_temperature}});
  }
  return card;
}

// `per_class` images of each of 3 classes, the label's logit raised.
LabelledLogits site_images(int per_class, uint64_t seed) {
  Random random(seed);
  LabelledLogits data;
  data.classes = 3;
  for (int label = 0; label < 3; ++label) {
    for (int i = 0; i < per_class; ++i) {
      float row[3];
      for (float& v : row) v = static_cast<float>(1.5 * random.normal());
      row[label] += 2.0f;
      data.add(row, label);
    }
  }
  return data;
}

}  // namespace

TEST_CASE("temperature scaling recovers a known temperature", "[calibration]") {
  Random random(1);
  for (const double truth : {0.5, 2.5}) {
    for (const size_t k : {size_t{1}, size_t{5}}) {
      CAPTURE(truth, k);
      const LabelledLogits data = drawn(random, 8000, k, truth);
      const double t = fit_temperature(data);
      CHECK(std::abs(t - truth) / truth < 0.07);
      const double best = nll_at_temperature(data, t);
      for (const double other : {truth, 1.0, 0.9 * t, 1.1 * t}) CHECK(best <= nll_at_temperature(data, other) + 1e-12);
      // The fitted temperature is better calibrated on fresh data drawn the same way.
      const LabelledLogits fresh = drawn(random, 8000, k, truth);
      CHECK(reliability_bins(fresh, t).ece < reliability_bins(fresh, 1.0).ece);
    }
  }
  // Logits that carry no information: T = 1. Perfectly separated data: the searched range's end,
  // which neither `loupe export` nor a site calibration applies.
  LabelledLogits flat;
  flat.classes = 3;
  const float zeros[3] = {0, 0, 0};
  for (int i = 0; i < 10; ++i) flat.add(zeros, 0);
  CHECK(fit_temperature(flat) == 1.0);
  const LabelledLogits separated = from_probabilities({{0.99, 0.01}, {0.01, 0.99}, {0.98, 0.02}}, {0, 1, 0});
  CHECK(fit_temperature(separated) == Approx(kMinTemperature));
  CHECK(temperature_at_search_bound(fit_temperature(separated)));
  CHECK(temperature_at_search_bound(kMaxTemperature));
  CHECK_FALSE(temperature_at_search_bound(1.16));
  // Errors name the problem.
  LabelledLogits empty;
  empty.classes = 3;
  CHECK_THAT(error_of([&] { fit_temperature(empty); }), Contains("no images"));
  CHECK_THAT(error_of([&] { flat.add(zeros, 3); }), Contains("outside [0, 3)"));
  CHECK_THAT(error_of([&] { nll_at_temperature(flat, 0.0); }), Contains("> 0"));
}

TEST_CASE("reliability bins and ECE on a hand-computed example, and as metrics.h computes them", "[calibration]") {
  // Top-class confidences 0.95 (right), 0.81 (wrong), 0.72 (right), 0.84 (right); 15 bins of width 1/15:
  // 0.95 -> bin 14, 0.81 and 0.84 -> bin 12 (12/15 = 0.8 < c <= 13/15), 0.72 -> bin 10.
  // ECE = 1/4 |1 - 0.95| + 2/4 |0.5 - 0.825| + 1/4 |1 - 0.72| = 0.0125 + 0.1625 + 0.07 = 0.245.
  const std::vector<std::vector<double>> p = {{0.95, 0.05}, {0.81, 0.19}, {0.28, 0.72}, {0.16, 0.84}};
  const std::vector<int> labels = {0, 1, 1, 1};
  const ReliabilityBins bins = reliability_bins(from_probabilities(p, labels), 1.0);
  CHECK(bins.ece == Approx(0.245).margin(1e-6));
  CHECK(bins.images == 4);
  CHECK(bins.count[14] == 1);
  CHECK(bins.count[12] == 2);
  CHECK(bins.count[10] == 1);
  CHECK(bins.accuracy[12] == Approx(0.5));
  CHECK(bins.confidence[12] == Approx(0.825).margin(1e-6));
  CHECK(bins.to_json()["count"][12] == 2);
  // One logit per image (sigmoid): the same example as P(class 1) = sigmoid(log(p1 / p0)).
  LabelledLogits single;
  single.classes = 1;
  for (size_t i = 0; i < p.size(); ++i) {
    const float z = static_cast<float>(std::log(p[i][1] / p[i][0]));
    single.add(&z, labels[i]);
  }
  CHECK(reliability_bins(single, 1.0).ece == Approx(0.245).margin(1e-6));
  // The report's ECE (metrics.h) on the same probabilities, on random data.
  Random random(5);
  const LabelledLogits data = drawn(random, 500, 4, 1.7);
  std::vector<std::vector<double>> scores;
  for (size_t i = 0; i < data.size(); ++i) {
    const std::vector<float> q = calibrated_probabilities(data.row(i), 4, 1.3);
    scores.emplace_back(q.begin(), q.end());
  }
  CHECK(reliability_bins(data, 1.3).ece == Approx(expected_calibration_error(scores, data.labels)).margin(1e-6));
}

TEST_CASE("ECE and NLL before and after, with paired bootstrap intervals", "[calibration]") {
  Random random(2);
  const LabelledLogits data = drawn(random, 300, 3, 2.0);  // over-confident by 2
  BootstrapOptions bootstrap;
  bootstrap.resamples = 400;
  const CalibrationComparison cmp = compare_temperatures(data, 1.0, 2.0, 15, bootstrap);
  CHECK(cmp.before.temperature == 1.0);
  CHECK(cmp.after.temperature == 2.0);
  CHECK(cmp.before.nll == Approx(nll_at_temperature(data, 1.0)));
  CHECK(cmp.after.nll == Approx(nll_at_temperature(data, 2.0)));
  CHECK(cmp.before.ece == Approx(reliability_bins(data, 1.0).ece));
  CHECK(cmp.after.ece < cmp.before.ece);
  CHECK(cmp.after.nll < cmp.before.nll);
  for (const CalibrationFigures* f : {&cmp.before, &cmp.after}) {
    CHECK(f->ece_interval.low <= f->ece);
    CHECK(f->ece <= f->ece_interval.high + 0.02);  // the bootstrap ECE is biased upwards on small bins
    CHECK(f->nll_interval.low <= f->nll);
    CHECK(f->nll <= f->nll_interval.high);
    CHECK(f->accuracy == cmp.before.accuracy);     // the temperature never changes the top class
  }
  // The paired change: clearly negative for a model that is over-confident by 2.
  CHECK(cmp.ece_change.high < 0);
  CHECK(cmp.nll_change.high < 0);
  // Seeded: the same intervals again.
  const CalibrationComparison again = compare_temperatures(data, 1.0, 2.0, 15, bootstrap);
  CHECK(again.ece_change.low == cmp.ece_change.low);
  CHECK(again.after.nll_interval.high == cmp.after.nll_interval.high);
}

TEST_CASE("operating points: thresholds for a sensitivity, a specificity or given", "[calibration]") {
  // Class 1's probabilities (T = 1): positives 0.9, 0.7, 0.6, 0.2; negatives 0.65, 0.3, 0.1, 0.05, 0.01.
  const LabelledLogits data = from_probabilities(
      {{0.1, 0.9}, {0.3, 0.7}, {0.4, 0.6}, {0.8, 0.2}, {0.35, 0.65}, {0.7, 0.3}, {0.9, 0.1}, {0.95, 0.05}, {0.99, 0.01}},
      {1, 1, 1, 1, 0, 0, 0, 0, 0});
  OperatingPointTarget target;
  target.class_index = 1;
  target.kind = TargetKind::sensitivity;
  target.value = 0.75;  // 3 of 4 positives: the threshold is the third largest, 0.6
  OperatingPoint point = operating_point(data, 1.0, target);
  CHECK(point.threshold == Approx(0.6).margin(1e-6));
  CHECK(point.true_positives == 3);
  CHECK(point.positives == 4);
  CHECK(point.true_negatives == 4);  // 0.65 is called
  CHECK(point.negatives == 5);
  CHECK(point.sensitivity == 0.75);
  CHECK(point.specificity == 0.8);
  CHECK(point.sensitivity_interval.low == wilson_interval(3, 4).low);
  CHECK(point.specificity_interval.high == wilson_interval(4, 5).high);
  target.value = 0.95;  // ceil(0.95 * 4) = 4: every positive, down to 0.2
  CHECK(operating_point(data, 1.0, target).threshold == Approx(0.2).margin(1e-6));
  CHECK(operating_point(data, 1.0, target).sensitivity == 1.0);
  target.value = 0.5;   // 0.5 * 4 = 2 exactly (no rounding up to 3)
  CHECK(operating_point(data, 1.0, target).true_positives == 2);

  target.kind = TargetKind::specificity;
  target.value = 0.8;  // 4 of 5 negatives below: just above 0.3
  point = operating_point(data, 1.0, target);
  CHECK(point.threshold > 0.3);
  CHECK(point.threshold < 0.3001);
  CHECK(point.true_negatives == 4);
  CHECK(point.true_positives == 3);  // 0.9, 0.7, 0.6
  target.value = 1.0;  // every negative below: just above 0.65
  CHECK(operating_point(data, 1.0, target).true_positives == 2);

  target.kind = TargetKind::threshold;
  target.value = 0.5;
  point = operating_point(data, 1.0, target);
  CHECK(point.threshold == 0.5);
  CHECK(point.true_positives == 3);
  CHECK(point.true_negatives == 4);
  CHECK(point.to_json()["target"]["threshold"] == 0.5);
  // The temperature changes the probabilities the threshold applies to.
  target.kind = TargetKind::sensitivity;
  target.value = 0.75;
  CHECK(operating_point(data, 2.0, target).threshold != Approx(point.threshold));

  // What cannot be chosen.
  const LabelledLogits only_positives = from_probabilities({{0.1, 0.9}, {0.3, 0.7}}, {1, 1});
  CHECK_THAT(error_of([&] { operating_point(only_positives, 1.0, target); }), Contains("needs images of the class and of the other"));
  target.value = 1.5;
  CHECK_THAT(error_of([&] { operating_point(data, 1.0, target); }), Contains("(0, 1]"));
}

TEST_CASE("operating point targets from the command line", "[calibration]") {
  const OperatingPointTarget t = parse_operating_point_target("pneumonia=0.95", TargetKind::sensitivity, kClasses);
  CHECK(t.class_index == 2);
  CHECK(t.value == 0.95);
  CHECK(parse_operating_point_target("no findings=0.9", TargetKind::specificity, kClasses).class_index == 1);
  CHECK(parse_operating_point_target("Covid-19=0", TargetKind::threshold, kClasses).value == 0.0);
  CHECK_THAT(error_of([] { parse_operating_point_target("Pneumonia", TargetKind::sensitivity, kClasses); }),
             Contains("--sensitivity Pneumonia: expected CLASS=VALUE"));
  CHECK_THAT(error_of([] { parse_operating_point_target("Flu=0.9", TargetKind::sensitivity, kClasses); }),
             Contains("'Flu' is not one of the model's classes (Covid-19, No_findings, Pneumonia)"));
  CHECK_THAT(error_of([] { parse_operating_point_target("Pneumonia=0", TargetKind::sensitivity, kClasses); }),
             Contains("not a number in (0, 1]"));
  CHECK_THAT(error_of([] { parse_operating_point_target("Pneumonia=95%", TargetKind::sensitivity, kClasses); }),
             Contains("'95%' is not a number"));
}

TEST_CASE("the predicted class with operating points", "[calibration][prediction]") {
  const std::vector<OperatingPointRule> pneumonia = {{"Pneumonia", 2, 0.2}};
  std::vector<uint8_t> reached;
  // 1. A class at its operating point wins even when another is more probable.
  CHECK(predicted_class({0.1f, 0.65f, 0.25f}, pneumonia, &reached) == 2);
  CHECK(reached == std::vector<uint8_t>{0, 0, 1});
  // 2. Below it: the largest probability of the classes without an operating point...
  CHECK(predicted_class({0.1f, 0.75f, 0.15f}, pneumonia, &reached) == 1);
  CHECK(reached == std::vector<uint8_t>{0, 0, 0});
  // ... even when the class with the operating point is the most probable (but below its threshold).
  const std::vector<OperatingPointRule> strict = {{"Pneumonia", 2, 0.9}};
  CHECK(predicted_class({0.1f, 0.3f, 0.6f}, strict) == 1);
  // Two classes at their points: the more probable of them.
  const std::vector<OperatingPointRule> two = {{"Covid-19", 0, 0.05}, {"Pneumonia", 2, 0.2}};
  CHECK(predicted_class({0.06f, 0.64f, 0.3f}, two, &reached) == 2);
  CHECK(reached == std::vector<uint8_t>{1, 0, 1});
  // 3. Every class has one and none is reached: the largest probability.
  const std::vector<OperatingPointRule> all = {{"Covid-19", 0, 0.9}, {"No_findings", 1, 0.9}, {"Pneumonia", 2, 0.9}};
  CHECK(predicted_class({0.2f, 0.5f, 0.3f}, all) == 1);
  // None: the largest probability, the first on ties; no reached list.
  CHECK(predicted_class({0.4f, 0.4f, 0.2f}, {}, &reached) == 0);
  CHECK(reached.empty());
  CHECK_THAT(error_of([] { predicted_class({0.5f, 0.5f}, {{"x", 4, 0.5}}); }), Contains("names class 4 of 2"));
}

TEST_CASE("site calibration: refused below the minimum, with the numbers", "[calibration]") {
  const ModelCard card = three_class_card(1.16);
  const LabelledLogits data = site_images(12, 3);
  // Drop Covid-19 to 4 images.
  LabelledLogits few;
  few.classes = 3;
  int covid = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    if (data.labels[i] == 0 && ++covid > 4) continue;
    few.add(data.row(i), data.labels[i]);
  }
  const std::string message = error_of([&] { calibrate_for_site(card, few, {}); });
  CHECK_THAT(message, Contains("at least 10 labelled images of every class") && Contains("too few: Covid-19 4") &&
                          Contains("No_findings 12, Pneumonia 12") && Contains("28 labelled images in all"));
  SiteCalibrationOptions lower;
  lower.min_images_per_class = 4;
  lower.bootstrap.resamples = 200;
  CHECK_NOTHROW(calibrate_for_site(card, few, lower));
  // A model with one logit, and logits of another width.
  ModelCard one = card;
  one.class_names = {"finding"};
  CHECK_THAT(error_of([&] { calibrate_for_site(one, few, lower); }), Contains("single logit"));
  LabelledLogits wide;
  wide.classes = 4;
  CHECK_THAT(error_of([&] { calibrate_for_site(card, wide, lower); }), Contains("4 logits per image for the card's 3 classes"));
  // Two operating points for one class.
  lower.targets = {{2, TargetKind::sensitivity, 0.9}, {2, TargetKind::specificity, 0.9}};
  CHECK_THAT(error_of([&] { calibrate_for_site(card, few, lower); }), Contains("two operating points for class 'Pneumonia'"));
}

TEST_CASE("site calibration: the refit, the record, the updated card and what predictions use", "[calibration]") {
  const ModelCard card = three_class_card(1.16);
  Random random(11);
  const LabelledLogits data = drawn(random, 240, 3, 2.5);  // this site's images: over-confident by 2.5
  SiteCalibrationOptions options;
  options.created_utc = "2026-12-04T10:00:00Z";
  options.bootstrap.resamples = 300;
  options.site = "ward 3";
  options.targets = {parse_operating_point_target("Pneumonia=0.9", TargetKind::sensitivity, kClasses)};
  const SiteCalibrationResult site = calibrate_for_site(card, data, options);
  CHECK(site.images == 240);
  CHECK(site.class_counts[0] + site.class_counts[1] + site.class_counts[2] == 240);
  CHECK(site.temperature_applied);
  CHECK(site.fitted_temperature == Approx(fit_temperature(data)));
  CHECK(std::abs(site.fitted_temperature - 2.5) < 0.6);
  CHECK(std::string(site.replaced) == "export");
  CHECK(site.comparison.before.temperature == 1.16);
  CHECK(site.comparison.after.nll < site.comparison.before.nll);
  REQUIRE(site.operating_points.size() == 1);
  CHECK(site.operating_points[0].class_name == "Pneumonia");
  CHECK(site.operating_points[0].sensitivity >= 0.9);

  // The record: everything the page and `loupe inspect` show.
  const json& r = site.record;
  CHECK(r["method"] == "temperature_scaling");
  CHECK(r["temperature"] == site.fitted_temperature);
  CHECK(r["created_utc"] == "2026-12-04T10:00:00Z");
  CHECK(r["site"] == "ward 3");
  CHECK(r["images"] == 240);
  CHECK(r["class_counts"].size() == 3);
  CHECK(r["min_images_per_class"] == kMinSiteImagesPerClass);
  CHECK(r["before"]["calibration"] == "export");
  CHECK(r["before"]["temperature"] == 1.16);
  CHECK(r["after"]["ece_interval"].size() == 2);
  CHECK(r["reliability"]["after"]["count"].size() == 15);
  CHECK(r["operating_points"][0]["class"] == "Pneumonia");
  CHECK(r["operating_points"][0]["target"]["sensitivity"] == 0.9);
  CHECK(r["intervals"]["resamples"] == 300);
  CHECK_THAT(r["graph_probabilities"].get<std::string>(), Contains("export's calibration"));
  CHECK_FALSE(r.contains("replaces"));

  // The card: the site calibration in use, the export's kept.
  const ModelCard& updated = site.card;
  REQUIRE(updated.site_calibration);
  REQUIRE(updated.calibration);
  CHECK(updated.calibration->temperature == 1.16);
  CHECK(updated.temperature_in_use() == site.fitted_temperature);
  CHECK(std::string(updated.calibration_in_use()) == "site");
  CHECK(std::string(card.calibration_in_use()) == "export");
  CHECK(ModelCard::from_json(updated.to_json()).to_json() == updated.to_json());
  CHECK_THAT(probability_note(updated), Contains("calibrated for this site") && Contains("240 labelled images") &&
                                            Contains("2026-12-04T10:00:00Z") && Contains("T = 1.16) is kept in the card, not used"));
  CHECK_THAT(decision_note(updated), Contains("Pneumonia when p >= "));
  CHECK(decision_note(card) == "the largest probability");
  const std::string text = site.to_text();
  CHECK_THAT(text, Contains("site calibration on 240 labelled images") && Contains("(export) -> ") &&
                       Contains("ECE  ") && Contains("NLL  ") && Contains("Pneumonia, sensitivity 0.9: called when p >= ") &&
                       Contains("in-sample"));

  // Predictions with the updated card: its temperature and the operating point. Re-run over the
  // site's own images, the operating point gives the sensitivity it was chosen for.
  int64_t called = 0, positives = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    ImageOutputs out;
    out.logits = data.row(i);
    out.logits_size = 3;
    const Prediction p = interpret_outputs(updated, out);
    const std::vector<float> expected = calibrated_probabilities(data.row(i), 3, site.fitted_temperature);
    CHECK(p.probabilities == expected);
    CHECK(p.logits == std::vector<float>(data.row(i), data.row(i) + 3));
    REQUIRE(p.at_operating_point.size() == 3);
    CHECK(p.at_operating_point[2] == (p.probabilities[2] >= site.operating_points[0].threshold));
    if (p.at_operating_point[2]) CHECK(p.top == 2);
    if (data.labels[i] == 2) {
      ++positives;
      called += p.top == 2;
    }
  }
  CHECK(positives == site.operating_points[0].positives);
  CHECK(called == site.operating_points[0].true_positives);

  // Calibrating again replaces the site calibration (and says what it replaced); the export's stays.
  options.targets.clear();
  const SiteCalibrationResult again = calibrate_for_site(updated, data, options);
  CHECK(std::string(again.replaced) == "site");
  CHECK(again.comparison.before.temperature == site.fitted_temperature);
  CHECK(again.record["replaces"]["temperature"] == site.fitted_temperature);
  CHECK(again.record["replaces"]["operating_points"] == 1);
  CHECK(again.card.site_calibration->operating_points.empty());
  CHECK(again.card.calibration->temperature == 1.16);
}

TEST_CASE("site calibration: a temperature the images do not bound is not applied", "[calibration]") {
  // Every image right with a wide margin: the NLL falls all the way to T -> 0.
  LabelledLogits data;
  data.classes = 2;
  for (int i = 0; i < 20; ++i) {
    const float a[2] = {6.0f + 0.1f * static_cast<float>(i), 0.0f}, b[2] = {0.0f, 5.0f + 0.1f * static_cast<float>(i)};
    data.add(a, 0);
    data.add(b, 1);
  }
  ModelCard card = three_class_card(0);
  card.class_names = {"normal", "pneumonia"};
  card.outputs = {{"logits", {"batch", 2}, ""}};
  SiteCalibrationOptions options;
  options.bootstrap.resamples = 100;
  options.targets = {{1, TargetKind::sensitivity, 1.0}};
  const SiteCalibrationResult site = calibrate_for_site(card, data, options);
  CHECK_FALSE(site.temperature_applied);
  CHECK(site.fitted_temperature == Approx(kMinTemperature));
  CHECK_THAT(site.note, Contains("do not bound it") && Contains("the temperature in use (1) is kept"));
  CHECK(site.card.site_calibration->temperature == 1.0);
  CHECK(site.record["temperature_refitted"] == false);
  CHECK(std::string(site.replaced) == "none");
  CHECK(site.operating_points.at(0).sensitivity == 1.0);  // operating points are still set
}

TEST_CASE("the card's site_calibration entry is checked", "[calibration][model_card]") {
  const ModelCard card = three_class_card(1.16);
  json good = card.to_json();
  good["site_calibration"] = {{"method", "temperature_scaling"}, {"temperature", 1.3}, {"images", 40},
                              {"operating_points", {{{"class", "Pneumonia"}, {"threshold", 0.25}}}}};
  const ModelCard read = ModelCard::from_json(good);
  REQUIRE(read.site_calibration);
  CHECK(read.site_calibration->operating_points.at(0).class_index == 2);
  CHECK(read.temperature_in_use() == 1.3);
  const auto check_error = [&](const std::function<void(json&)>& edit, const std::string& expected) {
    json j = good;
    edit(j);
    CHECK_THAT(error_of([&] { ModelCard::from_json(j); }), Contains(expected));
  };
  check_error([](json& j) { j["site_calibration"]["temperature"] = 0; }, "site_calibration.temperature");
  check_error([](json& j) { j["site_calibration"]["method"] = "platt"; }, "site_calibration.method: 'platt'");
  check_error([](json& j) { j["site_calibration"]["operating_points"][0]["class"] = "Flu"; },
              "'Flu' is not one of the card's classes");
  check_error([](json& j) { j["site_calibration"]["operating_points"][0]["threshold"] = 1.5; }, "threshold in [0, 1]");
  check_error([](json& j) { j["site_calibration"]["operating_points"].push_back({{"class", "Pneumonia"}, {"threshold", 0.3}}); },
              "'Pneumonia' has two operating points");
  check_error([](json& j) { j["site_calibration"] = "yes"; }, "site_calibration: expected an object or null");
  good["site_calibration"] = nullptr;
  CHECK_FALSE(ModelCard::from_json(good).site_calibration);
}

TEST_CASE("results and evaluation with operating points", "[calibration][results]") {
  ModelCard card = three_class_card(1.0);
  json record = {{"temperature", 1.0}, {"images", 30}, {"operating_points", {{{"class", "Pneumonia"}, {"threshold", 0.2}}}}};
  card.site_calibration = SiteCalibration::from_json(record, kClasses);
  std::vector<ResultRow> rows;
  for (const auto& [path, p] : std::vector<std::pair<std::string, std::vector<float>>>{
           {"site/Pneumonia/a.png", {0.1f, 0.65f, 0.25f}},   // the operating point calls it: right
           {"site/No_findings/b.png", {0.1f, 0.75f, 0.15f}}, // below: No_findings, right
           {"site/No_findings/c.png", {0.05f, 0.7f, 0.25f}}}) { // called Pneumonia: wrong
    std::vector<float> logits;
    for (float v : p) logits.push_back(std::log(v));
    ImageOutputs out;
    out.logits = logits.data();
    out.logits_size = 3;
    ResultRow row;
    row.path = path;
    row.label = folder_label(path, kClasses);
    row.prediction = interpret_outputs(card, out);
    row.status = ResultStatus::ok;
    rows.push_back(row);
  }
  const std::string csv = results_csv(rows, card);
  CHECK_THAT(csv, Contains("p_Pneumonia,op_Pneumonia,status,error\n"));
  CHECK_THAT(csv, Contains("site/Pneumonia/a.png,Pneumonia,Pneumonia,") && Contains(",true,ok,\n"));
  CHECK_THAT(csv, Contains("site/No_findings/b.png,No_findings,No_findings,") && Contains(",false,ok,\n"));
  const json j = results_json(rows, card);
  CHECK(j[0]["at_operating_point"]["Pneumonia"] == true);
  CHECK(j[1]["at_operating_point"]["Pneumonia"] == false);
  // The evaluation counts the decisions, not the largest probability: 2 of 3 right (argmax: 2 of 3
  // as well, but other ones), one No_findings image called Pneumonia.
  const Evaluation e = evaluate(rows, kClasses, BootstrapOptions{100, 1, 0.95});
  REQUIRE(e.matrix);
  CHECK(e.matrix->at(2, 2) == 1);
  CHECK(e.matrix->at(1, 2) == 1);
  CHECK(e.matrix->at(1, 1) == 1);
  CHECK(e.report->per_class[2].precision == 0.5);
  CHECK(e.report->intervals->precision[2].high == wilson_interval(1, 2).high);
  // Without operating points: no op columns.
  card.site_calibration.reset();
  CHECK_THAT(results_csv(rows, card), !Contains("op_"));
}

TEST_CASE("a model file with its site calibration: the rest byte for byte", "[calibration][onnx][shipped]") {
  const std::string here = __FILE__;
  const std::string path = here.substr(0, here.rfind("/tests/core/")) + "/models/shipped/chest-xray-mobilenet_v2.onnx";
  const std::vector<uint8_t> bytes = read_file(path);  // shipped with the repository: never a skip
  const OnnxModelInfo info = read_onnx_model(bytes.data(), bytes.size(), path);
  Random random(21);
  const LabelledLogits data = drawn(random, 60, 3, 1.5);
  SiteCalibrationOptions options;
  options.created_utc = "2026-12-04T10:00:00Z";
  options.bootstrap.resamples = 100;
  options.targets = {parse_operating_point_target("Covid-19=0.9", TargetKind::sensitivity, info.card.class_names)};
  const SiteCalibrationResult site = calibrate_for_site(info.card, data, options);
  const std::vector<uint8_t> rewritten = with_site_calibration(bytes.data(), bytes.size(), site, "site.onnx");
  const OnnxModelInfo after = read_onnx_model(rewritten.data(), rewritten.size(), "site.onnx");
  REQUIRE(after.card.site_calibration);
  CHECK(after.card.site_calibration->temperature == site.card.site_calibration->temperature);
  CHECK(after.card.site_calibration->operating_points.at(0).class_name == "Covid-19");
  // The rest of the card as it was, the record of the self-test included (its hash still holds).
  json without = after.card_json;
  without.erase("site_calibration");
  CHECK(without == info.card_json);
  REQUIRE(after.card.self_test);
  CHECK(self_test_digest_text(*after.card.self_test) == self_test_digest_text(*info.card.self_test));
  CHECK(after.card.weights_sha256 == info.card.weights_sha256);
  // The weights, byte for byte (so the card's SHA-256 of them still holds).
  REQUIRE(after.weight_ranges.size() == info.weight_ranges.size());
  for (size_t i = 0; i < info.weight_ranges.size(); ++i) {
    const ByteRange a = info.weight_ranges[i], b = after.weight_ranges[i];
    REQUIRE(a.size == b.size);
    CHECK(std::equal(bytes.begin() + static_cast<std::ptrdiff_t>(a.offset),
                     bytes.begin() + static_cast<std::ptrdiff_t>(a.offset + a.size),
                     rewritten.begin() + static_cast<std::ptrdiff_t>(b.offset)));
  }
  CHECK(after.outputs.size() == info.outputs.size());
  CHECK_THAT(describe(after), Contains("site calibration (in use): temperature scaling, T = ") &&
                                  Contains("operating point: Covid-19 when p >= ") &&
                                  Contains("the export's calibration (T = 1.1607) is kept in the card, not used"));
  // Calibrating the calibrated file again: one card entry, the new record.
  const SiteCalibrationResult second = calibrate_for_site(after.card, data, options);
  const std::vector<uint8_t> twice = with_site_calibration(rewritten.data(), rewritten.size(), second, "twice.onnx");
  CHECK(twice.size() > bytes.size());
  CHECK(read_onnx_model(twice.data(), twice.size(), "twice.onnx").card_json["site_calibration"]["replaces"].is_object());
  // Another model's calibration, or a card that does not hold, is refused; nothing is written.
  SiteCalibrationResult other = site;
  other.card.weights_sha256 = std::string(64, '0');
  CHECK_THAT(error_of([&] { with_site_calibration(bytes.data(), bytes.size(), other, "x.onnx"); }),
             Contains("computed for another model"));
  json broken = info.card_json;
  broken["class_names"] = json::array();
  CHECK_THAT(error_of([&] { with_model_card(bytes.data(), bytes.size(), broken, "x.onnx"); }),
             Contains("x.onnx: the new card: ") && Contains("class_names"));
  const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + 5000);
  CHECK_THAT(error_of([&] { with_model_card(cut.data(), cut.size(), info.card_json, "cut.onnx"); }), Contains("cut.onnx"));
}
