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
