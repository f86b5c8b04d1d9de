// Metrics against hand-computed values and a published confusion matrix.
#include <catch2/catch.hpp>
#include <cmath>

#include "loupe/metrics.h"

using namespace loupe;

namespace {

int percent(double v) { return static_cast<int>(std::lround(v * 100.0)); }

}  // namespace

TEST_CASE("seed 002, Model A: the paper's per-class recall, precision, F1 and accuracy", "[metrics]") {
  // Table X of seed 002 (rows: actual Covid, Lung Opacity, Normal, Viral Pneumonia).
  const auto cm = ConfusionMatrix::from_counts({"Covid", "Lung Opacity", "Normal", "Viral Pneumonia"},
                                               {{689, 0, 3, 2}, {5, 1152, 68, 0}, {1, 92, 1941, 7}, {0, 0, 9, 264}});
  const ClassificationReport r = classification_report(cm);
  const int expected_recall[] = {99, 94, 95, 97};  // Table XIII
  const int expected_precision[] = {99, 93, 96, 97};  // Table XIV
  const int expected_f1[] = {99, 93, 96, 97};  // Table XV
  for (int c = 0; c < 4; ++c) {
    CAPTURE(c);
    CHECK(percent(r.per_class[c].recall) == expected_recall[c]);
    CHECK(percent(r.per_class[c].precision) == expected_precision[c]);
    CHECK(percent(r.per_class[c].f1) == expected_f1[c]);
  }
  CHECK(r.accuracy == Approx(4046.0 / 4233.0));  // the abstract's 95.58%
  CHECK(std::lround(r.accuracy * 10000) == 9558);
  CHECK(r.total == 4233);
  CHECK(r.per_class[2].support == 2041);
}

TEST_CASE("hand-computed three-class report", "[metrics]") {
  // y_true = [0,0,1,1,2,2,2], y_pred = [0,1,1,1,2,0,2]
  ConfusionMatrix cm({"a", "b", "c"});
  const int truth[] = {0, 0, 1, 1, 2, 2, 2};
  const int pred[] = {0, 1, 1, 1, 2, 0, 2};
  for (int i = 0; i < 7; ++i) cm.add(truth[i], pred[i]);
  const ClassificationReport r = classification_report(cm);
  // a: tp 1, predicted 2, support 2 -> p 0.5, r 0.5
  // b: tp 2, predicted 3, support 2 -> p 2/3, r 1, f1 0.8
  // c: tp 2, predicted 2, support 3 -> p 1, r 2/3, f1 0.8
  CHECK(r.per_class[0].precision == Approx(0.5));
  CHECK(r.per_class[1].precision == Approx(2.0 / 3.0));
  CHECK(r.per_class[1].f1 == Approx(0.8));
  CHECK(r.per_class[2].recall == Approx(2.0 / 3.0));
  CHECK(r.accuracy == Approx(5.0 / 7.0));
  CHECK(r.balanced_accuracy == Approx((0.5 + 1.0 + 2.0 / 3.0) / 3.0));
  CHECK(r.macro_avg.f1 == Approx((0.5 + 0.8 + 0.8) / 3.0));
  CHECK(r.weighted_avg.recall == Approx(r.accuracy));  // always true: support-weighted recall
  CHECK(r.weighted_avg.precision == Approx((0.5 * 2 + 2.0 / 3.0 * 2 + 1.0 * 3) / 7.0));

  // scikit-learn's classification_report(y_true, y_pred, target_names=["a","b","c"]) prints:
  const std::string expected =
      "              precision    recall  f1-score   support\n"
      "\n"
      "           a       0.50      0.50      0.50         2\n"
      "           b       0.67      1.00      0.80         2\n"
      "           c       1.00      0.67      0.80         3\n"
      "\n"
      "    accuracy                           0.71         7\n"
      "   macro avg       0.72      0.72      0.70         7\n"
      "weighted avg       0.76      0.71      0.71         7\n";
  CHECK(r.to_text().substr(0, expected.size()) == expected);
}

TEST_CASE("classes never predicted get precision 0 (zero_division=0)", "[metrics]") {
  const auto cm = ConfusionMatrix::from_counts({"x", "y"}, {{3, 0}, {2, 0}});
  const auto r = classification_report(cm);
  CHECK(r.per_class[1].precision == 0.0);
  CHECK(r.per_class[1].f1 == 0.0);
  CHECK(r.per_class[0].precision == Approx(0.6));
}

TEST_CASE("ROC-AUC: scikit-learn's documented example, ties, undefined", "[metrics]") {
  CHECK(roc_auc({0.1, 0.4, 0.35, 0.8}, {false, false, true, true}) == Approx(0.75));
  CHECK(roc_auc({0.5, 0.5}, {false, true}) == Approx(0.5));
  CHECK(roc_auc({0.1, 0.9}, {false, true}) == Approx(1.0));
  CHECK(roc_auc({0.9, 0.1}, {false, true}) == Approx(0.0));
  CHECK(std::isnan(roc_auc({0.2, 0.3}, {true, true})));
  CHECK_THROWS_AS(roc_auc({0.2}, {true, false}), Error);
}

TEST_CASE("one-vs-rest ROC-AUC from probabilities", "[metrics]") {
  const std::vector<std::vector<double>> probs = {{0.8, 0.1, 0.1}, {0.3, 0.6, 0.1}, {0.2, 0.2, 0.6},
                                                  {0.5, 0.4, 0.1}, {0.1, 0.3, 0.6}, {0.1, 0.7, 0.2}};
  const std::vector<int> labels = {0, 1, 2, 1, 2, 0};
  const auto r = classification_report({"a", "b", "c"}, probs, labels);
  REQUIRE(r.roc_auc);
  // class a: positives {0.8, 0.1}, negatives {0.3, 0.2, 0.5, 0.1}: pairs won 4 + 0.5 (tie) of 8
  CHECK((*r.roc_auc)[0] == Approx(4.5 / 8.0));
  // class c: positives {0.6, 0.6} beat all negatives {0.1, 0.1, 0.1, 0.2}
  CHECK((*r.roc_auc)[2] == Approx(1.0));
  REQUIRE(r.macro_roc_auc);
  CHECK(r.accuracy == Approx(4.0 / 6.0));  // argmax: a, b, c, a(wrong), c, b(wrong)
  const auto json = r.to_json();
  CHECK(json["roc_auc"].size() == 3);
  CHECK(json["classes"][1]["name"] == "b");
}

TEST_CASE("metrics reject bad input", "[metrics][bad-input]") {
  ConfusionMatrix cm({"a", "b"});
  CHECK_THROWS_AS(cm.add(2, 0), Error);
  CHECK_THROWS_AS(cm.add(0, -1), Error);
  CHECK_THROWS_AS(ConfusionMatrix({}), Error);
  CHECK_THROWS_AS(ConfusionMatrix::from_counts({"a", "b"}, {{1, 2}}), Error);
  CHECK_THROWS_AS(classification_report({"a", "b"}, {{0.5}}, {0}), Error);
}

// [SECTION] Intervals

TEST_CASE("normal quantiles and Wilson intervals match their known values", "[metrics][intervals]") {
  CHECK(normal_quantile(0.975) == Approx(1.959963984540054).epsilon(1e-9));
  CHECK(normal_quantile(0.995) == Approx(2.5758293035489).epsilon(1e-9));
  CHECK(normal_quantile(0.5) == Approx(0.0).margin(1e-12));
  CHECK(normal_quantile(0.01) == Approx(-2.3263478740408).epsilon(1e-9));
  // Brown, Cai & DasGupta (2001): 0 of 10 gives [0, 0.2775]; the rest by the closed form
  // (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), computed once in Python.
  const Interval none = wilson_interval(0, 10);
  CHECK(none.low == 0.0);
  CHECK(none.high == Approx(0.2775327998628892).epsilon(1e-9));
  const Interval all = wilson_interval(10, 10);
  CHECK(all.low == Approx(0.7224672001371107).epsilon(1e-9));
  CHECK(all.high == 1.0);
  const Interval chest = wilson_interval(84, 97);  // the shipped chest model's test accuracy, 0.866
  CHECK(chest.low == Approx(0.7841000614500552).epsilon(1e-9));
  CHECK(chest.high == Approx(0.9199754331959006).epsilon(1e-9));
  const Interval zero_trials = wilson_interval(0, 0);
  CHECK((zero_trials.low == 0.0 && zero_trials.high == 1.0));
  CHECK_THROWS_AS(wilson_interval(11, 10), Error);
}

TEST_CASE("expected calibration error of the top class, by hand", "[metrics][intervals]") {
  // Two bins: (0, 0.5] and (0.5, 1]. Confidences 0.9, 0.8 (one right), 0.6 (right), 0.55 (wrong).
  const std::vector<std::vector<double>> scores = {{0.9, 0.1}, {0.2, 0.8}, {0.6, 0.4}, {0.45, 0.55}};
  const std::vector<int> labels = {0, 0, 0, 0};
  // All in the upper bin: accuracy 2/4, mean confidence (0.9 + 0.8 + 0.6 + 0.55) / 4 = 0.7125.
  CHECK(expected_calibration_error(scores, labels, 2) == Approx(0.2125));
  CHECK(expected_calibration_error({{1.0, 0.0}}, {0}) == Approx(0.0));
}

namespace {
// n samples of 3 classes whose scores point at the right class with probability `right`.
void synthetic(size_t n, double right, uint32_t seed, std::vector<std::vector<double>>& scores, std::vector<int>& labels) {
  uint32_t state = seed;
  const auto next = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0; };
  for (size_t i = 0; i < n; ++i) {
    const int label = static_cast<int>(i % 3);
    const int predicted = next() < right ? label : (label + 1 + static_cast<int>(next() * 2)) % 3;
    std::vector<double> s(3, 0.1);
    s[static_cast<size_t>(predicted)] = 0.5 + 0.3 * next();
    double sum = s[0] + s[1] + s[2];
    for (double& v : s) v /= sum;
    scores.push_back(s);
    labels.push_back(label);
  }
}
}  // namespace

TEST_CASE("bootstrap intervals: seeded, around the figure, narrowing with more data", "[metrics][intervals]") {
  const std::vector<std::string> names = {"a", "b", "c"};
  std::vector<std::vector<double>> scores;
  std::vector<int> labels;
  synthetic(300, 0.8, 7, scores, labels);
  BootstrapOptions options;
  options.resamples = 500;
  const ClassificationReport report = classification_report(names, scores, labels);
  const ReportIntervals ci = report_intervals(names, scores, labels, options);
  const ReportIntervals again = report_intervals(names, scores, labels, options);
  CHECK(ci.balanced_accuracy.low == again.balanced_accuracy.low);  // seeded
  CHECK(ci.macro_f1.high == again.macro_f1.high);
  for (const auto& [value, interval] : std::vector<std::pair<double, Interval>>{
           {report.accuracy, ci.accuracy}, {report.balanced_accuracy, ci.balanced_accuracy},
           {report.macro_avg.f1, ci.macro_f1}, {*report.macro_roc_auc, *ci.macro_roc_auc}, {*report.ece, ci.ece}}) {
    CHECK(interval.low <= value);
    CHECK(value <= interval.high);
    CHECK(interval.high - interval.low > 0.005);
  }
  // The bootstrap of balanced accuracy (equal class sizes here: the same as accuracy) agrees with
  // Wilson's interval for accuracy to a point or two.
  CHECK(ci.balanced_accuracy.low == Approx(ci.accuracy.low).margin(0.02));
  CHECK(ci.balanced_accuracy.high == Approx(ci.accuracy.high).margin(0.02));
  // Four times the data: about half the width.
  std::vector<std::vector<double>> more_scores;
  std::vector<int> more_labels;
  synthetic(1200, 0.8, 7, more_scores, more_labels);
  const ReportIntervals narrow = report_intervals(names, more_scores, more_labels, options);
  const double ratio = (narrow.macro_f1.high - narrow.macro_f1.low) / (ci.macro_f1.high - ci.macro_f1.low);
  CHECK(ratio > 0.35);
  CHECK(ratio < 0.7);
  // A perfect classifier: no doubt left in the resamples.
  std::vector<std::vector<double>> perfect;
  std::vector<int> truth;
  synthetic(60, 1.0, 3, perfect, truth);
  const ReportIntervals sure = report_intervals(names, perfect, truth, options);
  CHECK(sure.macro_f1.low == 1.0);
  CHECK(sure.balanced_accuracy.low == 1.0);
}

TEST_CASE("a report with intervals prints and writes them", "[metrics][intervals]") {
  const std::vector<std::string> names = {"a", "b", "c"};
  std::vector<std::vector<double>> scores;
  std::vector<int> labels;
  synthetic(90, 0.9, 11, scores, labels);
  ClassificationReport report = classification_report(names, scores, labels);
  BootstrapOptions options;
  options.resamples = 200;
  report.intervals = report_intervals(names, scores, labels, options);
  const std::string text = report.to_text(3);
  CHECK_THAT(text, Catch::Contains("95% confidence intervals (Wilson for proportions; stratified bootstrap, 200 resamples"));
  CHECK_THAT(text, Catch::Contains("accuracy           " + with_interval(report.accuracy, report.intervals->accuracy, 4)));
  const nlohmann::json j = report.to_json();
  REQUIRE(j.contains("intervals"));
  CHECK(j["intervals"]["accuracy"][0].get<double>() == report.intervals->accuracy.low);
  CHECK(j["intervals"]["classes"].size() == 3);
  CHECK(j["ece"].get<double>() == *report.ece);
  CHECK(with_interval(0.8660, {0.7841, 0.92}, 2) == "0.87 [0.78, 0.92]");
}

TEST_CASE("the accuracy interval of a written report: its own, else Wilson's from accuracy and total", "[metrics][intervals]") {
  const auto ci = accuracy_interval_of({{"accuracy", 84.0 / 97.0}, {"total", 97}});
  REQUIRE(ci);
  CHECK(ci->low == Approx(0.7841000614500552).epsilon(1e-9));  // a card written before intervals existed
  const auto own = accuracy_interval_of({{"accuracy", 0.5}, {"total", 10}, {"intervals", {{"accuracy", {0.1, 0.9}}}}});
  REQUIRE(own);
  CHECK(own->low == 0.1);
  CHECK_FALSE(accuracy_interval_of({{"accuracy", 0.5}}));
  CHECK_FALSE(accuracy_interval_of(nlohmann::json()));
  CHECK_FALSE(accuracy_interval_of({{"accuracy", 2.0}, {"total", 10}}));
}
