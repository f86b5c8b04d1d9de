#include "loupe/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
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

namespace {

// `predicted`: the decisions, or null for argmax of each score row.
ClassificationReport report_of(const std::vector<std::string>& class_names, const std::vector<std::vector<double>>& scores,
                               const std::vector<int>& labels, const std::vector<int>* predicted) {
  if (scores.size() != labels.size() || (predicted && predicted->size() != labels.size())) {
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
    cm.add(labels[i], predicted ? (*predicted)[i] : argmax(scores[i]));
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
  if (!scores.empty()) report.ece = expected_calibration_error(scores, labels);
  return report;
}

}  // namespace

ClassificationReport classification_report(const std::vector<std::string>& class_names,
                                           const std::vector<std::vector<double>>& scores,
                                           const std::vector<int>& labels) {
  return report_of(class_names, scores, labels, nullptr);
}

ClassificationReport classification_report(const std::vector<std::string>& class_names,
                                           const std::vector<std::vector<double>>& scores,
                                           const std::vector<int>& labels, const std::vector<int>& predicted) {
  return report_of(class_names, scores, labels, &predicted);
}

// [SECTION] Intervals

namespace {

// Peter Acklam's rational approximation (relative error below 1.2e-9).
double acklam_quantile(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double low = 0.02425;
  if (p < low) {
    const double q = std::sqrt(-2 * std::log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - low) return -acklam_quantile(1 - p);
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

}  // namespace

double normal_quantile(double p) {
  if (!(p > 0 && p < 1)) throw Error(ErrorCode::InvalidArgument, "normal_quantile: p must be in (0, 1)");
  // One Halley step on the exact CDF (erfc) takes Acklam's approximation to double precision.
  const double x = acklam_quantile(p);
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

Interval wilson_interval(int64_t successes, int64_t trials, double level) {
  if (trials <= 0) return {0.0, 1.0};
  if (successes < 0 || successes > trials) {
    throw Error(ErrorCode::InvalidArgument, "wilson_interval: " + std::to_string(successes) + " successes of " +
                                                std::to_string(trials) + " trials");
  }
  const double z = normal_quantile(0.5 + level / 2), n = static_cast<double>(trials);
  const double p = static_cast<double>(successes) / n, z2 = z * z;
  const double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const double half = z * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n);
  // At 0 and n the bound is exactly 0 (or 1); the closed form leaves a rounding error there.
  return {successes == 0 ? 0.0 : std::max(0.0, centre - half), successes == trials ? 1.0 : std::min(1.0, centre + half)};
}

double expected_calibration_error(const std::vector<std::vector<double>>& scores, const std::vector<int>& labels,
                                  int bins) {
  if (scores.size() != labels.size() || bins < 1) {
    throw Error(ErrorCode::InvalidArgument, "expected_calibration_error: " + std::to_string(scores.size()) +
                                                " score rows for " + std::to_string(labels.size()) + " labels");
  }
  if (scores.empty()) return 0.0;
  std::vector<double> confidence(static_cast<size_t>(bins), 0.0), correct(static_cast<size_t>(bins), 0.0);
  std::vector<int64_t> count(static_cast<size_t>(bins), 0);
  for (size_t i = 0; i < scores.size(); ++i) {
    const int top = argmax(scores[i]);
    const double c = scores[i][static_cast<size_t>(top)];
    // (b - 1) / bins < c <= b / bins, as the export's reliability diagram bins them.
    const auto b = static_cast<size_t>(std::clamp(static_cast<int>(std::ceil(c * bins)) - 1, 0, bins - 1));
    ++count[b];
    confidence[b] += c;
    correct[b] += top == labels[i] ? 1.0 : 0.0;
  }
  double ece = 0;
  for (size_t b = 0; b < count.size(); ++b) {
    if (count[b] > 0) ece += std::abs(correct[b] - confidence[b]) / static_cast<double>(scores.size());
  }
  return ece;
}

namespace {

// Percentile interval of bootstrap values (linear interpolation between order statistics, as
// numpy.percentile does by default).
Interval percentile_interval(std::vector<double> values, double level) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }), values.end());
  if (values.empty()) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  std::sort(values.begin(), values.end());
  const auto at = [&](double q) {
    const double pos = q * static_cast<double>(values.size() - 1);
    const auto i = static_cast<size_t>(std::floor(pos));
    const size_t j = std::min(i + 1, values.size() - 1);
    return values[i] + (values[j] - values[i]) * (pos - static_cast<double>(i));
  };
  return {at((1 - level) / 2), at(1 - (1 - level) / 2)};
}

// Uniform in [0, n) by rejection from mt19937_64, whose output the C++ standard fixes: the same
// intervals with every standard library (std::uniform_int_distribution is not specified).
uint64_t draw(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = rng(); while (v >= limit);
  return v % n;
}

}  // namespace

namespace {

ReportIntervals intervals_of(const std::vector<std::string>& class_names, const std::vector<std::vector<double>>& scores,
                             const std::vector<int>& labels, const std::vector<int>* predicted,
                             const BootstrapOptions& options) {
  const ClassificationReport point = report_of(class_names, scores, labels, predicted);
  const auto decision = [&](size_t i) { return predicted ? (*predicted)[i] : argmax(scores[i]); };
  ReportIntervals out;
  out.level = options.level;
  out.resamples = options.resamples;
  out.seed = options.seed;
  ConfusionMatrix cm(class_names);
  for (size_t i = 0; i < labels.size(); ++i) cm.add(labels[i], decision(i));
  int64_t correct = 0;
  for (size_t c = 0; c < class_names.size(); ++c) correct += cm.at(static_cast<int>(c), static_cast<int>(c));
  out.accuracy = wilson_interval(correct, cm.total(), options.level);
  for (size_t c = 0; c < class_names.size(); ++c) {
    const int k = static_cast<int>(c);
    out.precision.push_back(wilson_interval(cm.at(k, k), cm.predicted_count(k), options.level));
    out.recall.push_back(wilson_interval(cm.at(k, k), cm.true_count(k), options.level));
  }

  // Stratified bootstrap: every resample keeps each class's count.
  std::vector<std::vector<size_t>> by_class(class_names.size());
  for (size_t i = 0; i < labels.size(); ++i) by_class[static_cast<size_t>(labels[i])].push_back(i);
  std::mt19937_64 rng(options.seed);
  std::vector<double> balanced, macro_f1, macro_auc, ece;
  std::vector<std::vector<double>> f1(class_names.size());
  std::vector<std::vector<double>> s;
  std::vector<int> l, d;
  for (int r = 0; r < options.resamples; ++r) {
    s.clear();
    l.clear();
    d.clear();
    for (const auto& members : by_class) {
      for (size_t k = 0; k < members.size(); ++k) {
        const size_t i = members[static_cast<size_t>(draw(rng, members.size()))];
        s.push_back(scores[i]);
        l.push_back(labels[i]);
        d.push_back(decision(i));
      }
    }
    const ClassificationReport rep = report_of(class_names, s, l, &d);
    balanced.push_back(rep.balanced_accuracy);
    macro_f1.push_back(rep.macro_avg.f1);
    macro_auc.push_back(rep.macro_roc_auc.value_or(std::numeric_limits<double>::quiet_NaN()));
    ece.push_back(rep.ece.value_or(0.0));
    for (size_t c = 0; c < class_names.size(); ++c) f1[c].push_back(rep.per_class[c].f1);
  }
  out.balanced_accuracy = percentile_interval(balanced, options.level);
  out.macro_f1 = percentile_interval(macro_f1, options.level);
  if (point.macro_roc_auc) out.macro_roc_auc = percentile_interval(macro_auc, options.level);
  out.ece = percentile_interval(ece, options.level);
  for (auto& values : f1) out.f1.push_back(percentile_interval(std::move(values), options.level));
  return out;
}

}  // namespace

ReportIntervals report_intervals(const std::vector<std::string>& class_names,
                                 const std::vector<std::vector<double>>& scores, const std::vector<int>& labels,
                                 const BootstrapOptions& options) {
  return intervals_of(class_names, scores, labels, nullptr, options);
}

ReportIntervals report_intervals(const std::vector<std::string>& class_names,
                                 const std::vector<std::vector<double>>& scores, const std::vector<int>& labels,
                                 const std::vector<int>& predicted, const BootstrapOptions& options) {
  return intervals_of(class_names, scores, labels, &predicted, options);
}

std::optional<Interval> accuracy_interval_of(const nlohmann::json& report) {
  if (!report.is_object()) return std::nullopt;
  const auto intervals = report.find("intervals");
  if (intervals != report.end() && intervals->is_object()) {
    const auto accuracy = intervals->find("accuracy");
    if (accuracy != intervals->end() && accuracy->is_array() && accuracy->size() == 2 && (*accuracy)[0].is_number() &&
        (*accuracy)[1].is_number()) {
      return Interval{(*accuracy)[0].get<double>(), (*accuracy)[1].get<double>()};
    }
  }
  const auto accuracy = report.find("accuracy"), total = report.find("total");
  if (accuracy == report.end() || total == report.end() || !accuracy->is_number() || !total->is_number_integer() ||
      total->get<int64_t>() <= 0) {
    return std::nullopt;
  }
  const int64_t n = total->get<int64_t>();
  const auto correct = static_cast<int64_t>(std::llround(accuracy->get<double>() * static_cast<double>(n)));
  if (correct < 0 || correct > n) return std::nullopt;
  return wilson_interval(correct, n);
}

std::string with_interval(double value, const Interval& interval, int digits) {
  char text[96];
  std::snprintf(text, sizeof text, "%.*f [%.*f, %.*f]", digits, value, digits, interval.low, digits, interval.high);
  return text;
}

nlohmann::json ReportIntervals::to_json() const {
  const auto pair = [](const Interval& i) { return nlohmann::json::array({number_or_null(i.low), number_or_null(i.high)}); };
  nlohmann::json classes = nlohmann::json::array();
  for (size_t c = 0; c < precision.size(); ++c) {
    classes.push_back({{"precision", pair(precision[c])}, {"recall", pair(recall[c])}, {"f1", pair(f1[c])}});
  }
  return {{"level", level},
          {"method", "Wilson score interval for proportions (accuracy, precision, recall); percentile interval of a "
                     "stratified bootstrap for the rest"},
          {"resamples", resamples},
          {"seed", seed},
          {"accuracy", pair(accuracy)},
          {"balanced_accuracy", pair(balanced_accuracy)},
          {"macro_f1", pair(macro_f1)},
          {"macro_roc_auc", macro_roc_auc ? pair(*macro_roc_auc) : nlohmann::json(nullptr)},
          {"ece", pair(ece)},
          {"classes", classes}};
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
  if (ece) {
    std::snprintf(line, sizeof line, "ECE (15 bins): %.*f\n", digits + 2, *ece);
    out += line;
  }
  if (intervals) {
    const ReportIntervals& ci = *intervals;
    const int d = digits + 1;
    std::snprintf(line, sizeof line, "\n%.0f%% confidence intervals (Wilson for proportions; stratified bootstrap, %d "
                  "resamples, seed %llu, otherwise):\n", 100 * ci.level, ci.resamples, static_cast<unsigned long long>(ci.seed));
    out += line;
    out += "  accuracy           " + with_interval(accuracy, ci.accuracy, d) + "  (n = " + std::to_string(total) + ")\n";
    out += "  balanced accuracy  " + with_interval(balanced_accuracy, ci.balanced_accuracy, d) + "\n";
    out += "  macro F1           " + with_interval(macro_avg.f1, ci.macro_f1, d) + "\n";
    if (macro_roc_auc && ci.macro_roc_auc) out += "  macro ROC-AUC      " + with_interval(*macro_roc_auc, *ci.macro_roc_auc, d) + "\n";
    if (ece) out += "  ECE                " + with_interval(*ece, ci.ece, d) + "\n";
    for (size_t c = 0; c < per_class.size() && c < ci.precision.size(); ++c) {
      std::snprintf(line, sizeof line, "  %-*s  precision %s  recall %s  F1 %s\n", w, per_class[c].name.c_str(),
                    with_interval(per_class[c].precision, ci.precision[c], d).c_str(),
                    with_interval(per_class[c].recall, ci.recall[c], d).c_str(),
                    with_interval(per_class[c].f1, ci.f1[c], d).c_str());
      out += line;
    }
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
  if (ece) j["ece"] = *ece;
  if (intervals) j["intervals"] = intervals->to_json();
  return j;
}

}  // namespace loupe
