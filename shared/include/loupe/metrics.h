// Classification metrics: the one implementation behind `loupe eval`, `loupe predict` and the
// browser's evaluation view.
//
//   loupe::ConfusionMatrix cm({"covid", "normal"});
//   for (each sample) cm.add(true_class, predicted_class);
//   loupe::ClassificationReport report = loupe::classification_report(cm);
//   std::cout << report.to_text();            // scikit-learn's classification_report layout
//
// Conventions follow scikit-learn: a precision or recall whose denominator is zero is 0
// ("zero_division=0"); macro averages weigh classes equally, weighted averages by support.
//
// How sure a figure is: report_intervals() gives 95% confidence intervals, Wilson's for the
// proportions (accuracy, per-class precision and recall) and a stratified bootstrap for the rest
// (balanced accuracy, F1, ROC-AUC, ECE); a report that carries them prints "0.866 [0.784, 0.920]".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loupe/error.h"

namespace loupe {

// Rows are true classes, columns predicted classes.
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(std::vector<std::string> class_names);
  // From a table of counts (rows = truth); throws if it is not square or names do not match.
  static ConfusionMatrix from_counts(std::vector<std::string> class_names,
                                     const std::vector<std::vector<int64_t>>& counts);

  void add(int true_class, int predicted_class, int64_t count = 1);

  size_t num_classes() const { return names_.size(); }
  const std::vector<std::string>& class_names() const { return names_; }
  int64_t at(int true_class, int predicted_class) const;
  int64_t total() const;
  int64_t true_count(int cls) const;       // row sum: support
  int64_t predicted_count(int cls) const;  // column sum

  nlohmann::json to_json() const;  // {"classes": [...], "matrix": [[...], ...]}

 private:
  size_t index(int cls, const char* what) const;
  std::vector<std::string> names_;
  std::vector<int64_t> counts_;  // row-major num_classes x num_classes
};

// A confidence interval [low, high].
struct Interval {
  double low = 0, high = 0;
};

// The normal distribution's quantile: normal_quantile(0.975) = 1.95996... (Acklam's algorithm and
// one Halley step: double precision). p in (0, 1).
double normal_quantile(double p);

// Wilson's score interval of a proportion, `successes` of `trials`, at `level` (closed form; the
// standard interval for a proportion, sensible at 0 and 1, unlike the normal approximation).
// 0 trials: [0, 1].
Interval wilson_interval(int64_t successes, int64_t trials, double level = 0.95);

// Expected calibration error of the top class (Naeini et al. 2015; Guo et al. 2017): `bins`
// equal-width confidence bins, sum over bins of |accuracy - mean confidence| weighted by count.
double expected_calibration_error(const std::vector<std::vector<double>>& scores, const std::vector<int>& labels,
                                  int bins = 15);

struct BootstrapOptions {
  int resamples = 2000;
  uint64_t seed = 1;
  double level = 0.95;
};

// The intervals of a report's figures (ClassificationReport::intervals).
struct ReportIntervals {
  double level = 0.95;
  int resamples = 0;  // of the stratified bootstrap
  uint64_t seed = 0;
  Interval accuracy;                       // Wilson
  Interval balanced_accuracy, macro_f1;    // bootstrap
  std::optional<Interval> macro_roc_auc;   // bootstrap; absent when no class has a defined AUC
  Interval ece;                            // bootstrap
  std::vector<Interval> precision, recall; // Wilson, per class
  std::vector<Interval> f1;                // bootstrap, per class
  nlohmann::json to_json() const;
};

struct ClassMetrics {
  std::string name;
  double precision = 0;
  double recall = 0;
  double f1 = 0;
  int64_t support = 0;
};

struct ClassificationReport {
  std::vector<ClassMetrics> per_class;
  ClassMetrics macro_avg;     // name "macro avg"
  ClassMetrics weighted_avg;  // name "weighted avg"
  double accuracy = 0;
  double balanced_accuracy = 0;  // mean per-class recall
  int64_t total = 0;
  // One-vs-rest ROC-AUC per class, present when scores were given. A class with no positive or no
  // negative samples has an undefined AUC, reported as NaN and left out of the macro average.
  std::optional<std::vector<double>> roc_auc;
  std::optional<double> macro_roc_auc;
  std::optional<double> ece;  // top-class ECE (15 bins), present when scores were given
  std::optional<ReportIntervals> intervals;  // report_intervals(), when the caller asked for them

  // scikit-learn's text layout (digits decimals), followed by balanced accuracy, ROC-AUC, ECE
  // and, when present, the confidence intervals.
  std::string to_text(int digits = 2) const;
  nlohmann::json to_json() const;
};

ClassificationReport classification_report(const ConfusionMatrix& matrix);

// Adds one-vs-rest ROC-AUC from per-sample class scores (probabilities, n_samples x n_classes)
// and true labels; the confusion matrix is built from argmax of the scores.
ClassificationReport classification_report(const std::vector<std::string>& class_names,
                                           const std::vector<std::vector<double>>& scores,
                                           const std::vector<int>& labels);

// The same with the predicted classes given instead of the largest score (a model whose operating
// points choose its class, prediction.h): the matrix and every figure that counts decisions use
// `predicted`; ROC-AUC and ECE still come from the scores.
ClassificationReport classification_report(const std::vector<std::string>& class_names,
                                           const std::vector<std::vector<double>>& scores,
                                           const std::vector<int>& labels, const std::vector<int>& predicted);

// Confidence intervals of the report classification_report(class_names, scores, labels) gives:
// Wilson's for accuracy and per-class precision and recall; for balanced accuracy, per-class and
// macro F1, macro ROC-AUC and ECE, the percentile interval of a stratified bootstrap (each
// resample draws, within every true class, as many samples as the class has, with replacement;
// seeded, so the same inputs give the same intervals).
ReportIntervals report_intervals(const std::vector<std::string>& class_names,
                                 const std::vector<std::vector<double>>& scores, const std::vector<int>& labels,
                                 const BootstrapOptions& options = {});
// The same for classification_report(class_names, scores, labels, predicted).
ReportIntervals report_intervals(const std::vector<std::string>& class_names,
                                 const std::vector<std::vector<double>>& scores, const std::vector<int>& labels,
                                 const std::vector<int>& predicted, const BootstrapOptions& options = {});

// The accuracy interval of a report written as JSON (ClassificationReport::to_json(), e.g. a
// model card's test_metrics): its own "intervals" when it has them, else Wilson's from its
// accuracy and total (reports written before intervals existed). None without accuracy and total.
std::optional<Interval> accuracy_interval_of(const nlohmann::json& report);

// A figure and its interval, "0.866 [0.784, 0.920]" (digits decimals).
std::string with_interval(double value, const Interval& interval, int digits = 3);

// Area under the ROC curve of `scores` for the binary labels (true = positive), with ties
// counted as one half (the Mann-Whitney U statistic, equal to scikit-learn's roc_auc_score).
// NaN when either class is absent.
double roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive);

// Index of the largest score (first one on ties).
int argmax(const std::vector<double>& scores);

}  // namespace loupe
