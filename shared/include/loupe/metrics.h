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

  // scikit-learn's text layout (digits decimals), followed by balanced accuracy and ROC-AUC.
  std::string to_text(int digits = 2) const;
  nlohmann::json to_json() const;
};

ClassificationReport classification_report(const ConfusionMatrix& matrix);

// Adds one-vs-rest ROC-AUC from per-sample class scores (probabilities, n_samples x n_classes)
// and true labels; the confusion matrix is built from argmax of the scores.
ClassificationReport classification_report(const std::vector<std::string>& class_names,
                                           const std::vector<std::vector<double>>& scores,
                                           const std::vector<int>& labels);

// Area under the ROC curve of `scores` for the binary labels (true = positive), with ties
// counted as one half (the Mann-Whitney U statistic, equal to scikit-learn's roc_auc_score).
// NaN when either class is absent.
double roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive);

// Index of the largest score (first one on ties).
int argmax(const std::vector<double>& scores);

}  // namespace loupe
