#include "loupe/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <utility>

namespace loupe {

// [SECTION] ConfusionMatrix

ConfusionMatrix::ConfusionMatrix(std::vector<std::string> class_names)
    : names_(std::move(class_names)), counts_(names_.size() * names_.size(), 0) {
  if (names_.empty()) throw Error(ErrorCode::InvalidArgument, "confusion matrix: no classes");
}

ConfusionMatrix ConfusionMatrix::from_counts(std::vector<std::string> class_names,
                                             const std::vector<std::vector<int64_t>>& counts) {
  ConfusionMatrix cm(std::move(class_names));
  if (counts.size() != cm.num_classes()) {
    throw Error(ErrorCode::InvalidArgument, "confusion matrix: " + std::to_string(counts.size()) + " rows for " +
                                                std::to_string(cm.num_classes()) + " classes");
  }
  for (size_t t = 0; t < counts.size(); ++t) {
    if (counts[t].size() != cm.num_classes()) {
      throw Error(ErrorCode::InvalidArgument, "confusion matrix: row " + std::to_string(t) + " has " +
                                                  std::to_string(counts[t].size()) + " columns");
    }
    for (size_t p = 0; p < counts[t].size(); ++p) cm.add(static_cast<int>(t), static_cast<int>(p), counts[t][p]);
  }
  return cm;
}

size_t ConfusionMatrix::index(int cls, const char* what) const {
  if (cls < 0 || static_cast<size_t>(cls) >= names_.size()) {
    throw Error(ErrorCode::InvalidArgument, std::string("confusion matrix: ") + what + " class " + std::to_string(cls) +
                                                " out of range [0, " + std::to_string(names_.size()) + ")");
  }
  return static_cast<size_t>(cls);
}

void ConfusionMatrix::add(int true_class, int predicted_class, int64_t count) {
  if (count < 0) throw Error(ErrorCode::InvalidArgument, "confusion matrix: negative count");
  counts_[index(true_class, "true") * names_.size() + index(predicted_class, "predicted")] += count;
}

int64_t ConfusionMatrix::at(int true_class, int predicted_class) const {
  return counts_[index(true_class, "true") * names_.size() + index(predicted_class, "predicted")];
}

int64_t ConfusionMatrix::total() const { return std::accumulate(counts_.begin(), counts_.end(), int64_t{0}); }

int64_t ConfusionMatrix::true_count(int cls) const {
  int64_t sum = 0;
  for (size_t p = 0; p < names_.size(); ++p) sum += at(cls, static_cast<int>(p));
  return sum;
}

int64_t ConfusionMatrix::predicted_count(int cls) const {
  int64_t sum = 0;
  for (size_t t = 0; t < names_.size(); ++t) sum += at(static_cast<int>(t), cls);
  return sum;
}

nlohmann::json ConfusionMatrix::to_json() const {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t t = 0; t < names_.size(); ++t) {
    rows.push_back(std::vector<int64_t>(counts_.begin() + static_cast<std::ptrdiff_t>(t * names_.size()),
                                        counts_.begin() + static_cast<std::ptrdiff_t>((t + 1) * names_.size())));
  }
  return {{"classes", names_}, {"matrix", rows}};
}

// [SECTION] Report

namespace {

double ratio(int64_t num, int64_t den) { return den == 0 ? 0.0 : double(num) / double(den); }
double f1_of(double p, double r) { return p + r == 0.0 ? 0.0 : 2.0 * p * r / (p + r); }

nlohmann::json metrics_json(const ClassMetrics& m) {
  return {{"precision", m.precision}, {"recall", m.recall}, {"f1", m.f1}, {"support", m.support}};
}

// JSON has no NaN: an undefined AUC is written as null.
nlohmann::json number_or_null(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

}  // namespace

ClassificationReport classification_report(const ConfusionMatrix& cm) {
  ClassificationReport report;
  report.total = cm.total();
  int64_t correct = 0;
  double recall_sum = 0;
  const int n = static_cast<int>(cm.num_classes());
  report.macro_avg.name = "macro avg";
  report.weighted_avg.name = "weighted avg";
  for (int c = 0; c < n; ++c) {
    ClassMetrics m;
    m.name = cm.class_names()[c];
    m.support = cm.true_count(c);
    m.precision = ratio(cm.at(c, c), cm.predicted_count(c));
    m.recall = ratio(cm.at(c, c), m.support);
    m.f1 = f1_of(m.precision, m.recall);
    correct += cm.at(c, c);
    recall_sum += m.recall;
    report.macro_avg.precision += m.precision / n;
    report.macro_avg.recall += m.recall / n;
    report.macro_avg.f1 += m.f1 / n;
    const double weight = ratio(m.support, report.total);
    report.weighted_avg.precision += m.precision * weight;
    report.weighted_avg.recall += m.recall * weight;
    report.weighted_avg.f1 += m.f1 * weight;
    report.per_class.push_back(m);
  }
  report.macro_avg.support = report.weighted_avg.support = report.total;
  report.accuracy = ratio(correct, report.total);
  report.balanced_accuracy = recall_sum / n;
  return report;
}

int argmax(const std::vector<double>& scores) {
  if (scores.empty()) throw Error(ErrorCode::InvalidArgument, "argmax of an empty score vector");
  return static_cast<int>(std::max_element(scores.begin(), scores.end()) - scores.begin());
}

double roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive) {
  if (scores.size() != positive.size()) {
    throw Error(ErrorCode::InvalidArgument, "roc_auc: " + std::to_string(scores.size()) + " scores for " +
                                                std::to_string(positive.size()) + " labels");
  }
  // Rank-sum formulation: sort by score, give tied scores their average rank.
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double positive_rank_sum = 0;
  size_t n_pos = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double average_rank = (double(i) + double(j - 1)) / 2.0 + 1.0;
    for (size_t k = i; k < j; ++k) {
      if (positive[order[k]]) {
        positive_rank_sum += average_rank;
        ++n_pos;
      }
    }
    i = j;
  }
  const size_t n_neg = scores.size() - n_pos;
  if (n_pos == 0 || n_neg == 0) return std::numeric_limits<double>::quiet_NaN();
  const double u = positive_rank_sum - double(n_pos) * double(n_pos + 1) / 2.0;
  return u / (double(n_pos) * double(n_neg));
}

ClassificationReport classification_report(const std::vector<std::string>& class_names,
                                           const std::vector<std::vector<double>>& scores,
                                           const std::vector<int>& labels) {
  if (scores.size() != labels.size()) {
    throw Error(ErrorCode::InvalidArgument, "classification_report: " + std::to_string(scores.size()) +
                                                " score rows for " + std::to_string(labels.size()) + " labels");
  }
  ConfusionMatrix cm(class_names);
  for (size_t i = 0; i < scores.size(); ++i) {
    if (scores[i].size() != class_names.size()) {
      throw Error(ErrorCode::InvalidArgument, "classification_report: sample " + std::to_string(i) + " has " +
                                                  std::to_string(scores[i].size()) + " scores for " +
                                                  std::to_string(class_names.size()) + " classes");
    }
    cm.add(labels[i], argmax(scores[i]));
  }
  ClassificationReport report = classification_report(cm);
  std::vector<double> aucs;
  double auc_sum = 0;
  int defined = 0;
  for (size_t c = 0; c < class_names.size(); ++c) {
    std::vector<double> column(scores.size());
    std::vector<bool> is_class(scores.size());
    for (size_t i = 0; i < scores.size(); ++i) {
      column[i] = scores[i][c];
      is_class[i] = labels[i] == static_cast<int>(c);
    }
    const double auc = roc_auc(column, is_class);
    aucs.push_back(auc);
    if (!std::isnan(auc)) {
      auc_sum += auc;
      ++defined;
    }
  }
  report.roc_auc = aucs;
  if (defined > 0) report.macro_roc_auc = auc_sum / defined;
  return report;
}

std::string ClassificationReport::to_text(int digits) const {
  size_t width = std::string("weighted avg").size();
  for (const auto& m : per_class) width = std::max(width, m.name.size());
  const int w = static_cast<int>(width);
  char line[512];
  std::string out;
  std::snprintf(line, sizeof line, "%*s  %9s %9s %9s %9s\n\n", w, "", "precision", "recall", "f1-score", "support");
  out += line;
  const auto row = [&](const ClassMetrics& m) {
    std::snprintf(line, sizeof line, "%*s  %9.*f %9.*f %9.*f %9lld\n", w, m.name.c_str(), digits, m.precision, digits,
                  m.recall, digits, m.f1, static_cast<long long>(m.support));
    out += line;
  };
  for (const auto& m : per_class) row(m);
  out += "\n";
  std::snprintf(line, sizeof line, "%*s  %9s %9s %9.*f %9lld\n", w, "accuracy", "", "", digits, accuracy,
                static_cast<long long>(total));
  out += line;
  row(macro_avg);
  row(weighted_avg);
  std::snprintf(line, sizeof line, "\nbalanced accuracy: %.*f\n", digits + 2, balanced_accuracy);
  out += line;
  if (roc_auc) {
    out += "ROC-AUC (one-vs-rest):";
    for (size_t c = 0; c < per_class.size() && c < roc_auc->size(); ++c) {
      std::snprintf(line, sizeof line, " %s %.*f", per_class[c].name.c_str(), digits + 2, (*roc_auc)[c]);
      out += line;
      out += c + 1 < per_class.size() ? "," : "";
    }
    if (macro_roc_auc) {
      std::snprintf(line, sizeof line, "; macro %.*f", digits + 2, *macro_roc_auc);
      out += line;
    }
    out += "\n";
  }
  return out;
}

nlohmann::json ClassificationReport::to_json() const {
  // An array, not an object: class order is meaningful (it is the model's output order).
  nlohmann::json classes = nlohmann::json::array();
  for (const auto& m : per_class) {
    nlohmann::json entry = metrics_json(m);
    entry["name"] = m.name;
    classes.push_back(entry);
  }
  nlohmann::json j = {{"classes", classes},
                      {"accuracy", accuracy},
                      {"balanced_accuracy", balanced_accuracy},
                      {"macro_avg", metrics_json(macro_avg)},
                      {"weighted_avg", metrics_json(weighted_avg)},
                      {"total", total}};
  if (roc_auc) {
    nlohmann::json per = nlohmann::json::array();
    for (size_t c = 0; c < roc_auc->size(); ++c) per.push_back(number_or_null((*roc_auc)[c]));
    j["roc_auc"] = per;
    j["macro_roc_auc"] = macro_roc_auc ? nlohmann::json(*macro_roc_auc) : nlohmann::json(nullptr);
  }
  return j;
}

}  // namespace loupe
