// Temperature scaling, reliability bins, operating points and the site calibration (calibration.h).
//
// [SECTION] Labelled logits
// [SECTION] Temperature scaling
// [SECTION] Reliability bins, ECE and NLL with intervals
// [SECTION] Operating points
// [SECTION] Site calibration
#include "loupe/calibration.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include "loupe/error.h"
#include "loupe/onnx_model.h"
#include "loupe/prediction.h"

namespace loupe {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

// Image i's logits as the classes the figures use: [0, z] for a single logit.
void class_logits(const LabelledLogits& data, size_t i, std::vector<double>& z) {
  const float* row = data.row(i);
  if (data.classes == 1) {
    z.assign({0.0, static_cast<double>(row[0])});
  } else {
    z.assign(row, row + data.classes);
  }
}

// softmax(beta * z) into p; returns log of its normaliser (so log p_k = beta z_k - returned).
double softmax_scaled(const std::vector<double>& z, double beta, std::vector<double>& p) {
  double top = -std::numeric_limits<double>::infinity();
  for (double v : z) top = std::max(top, beta * v);
  double sum = 0;
  p.resize(z.size());
  for (size_t k = 0; k < z.size(); ++k) sum += (p[k] = std::exp(beta * z[k] - top));
  for (double& v : p) v /= sum;
  return top + std::log(sum);
}

void check_data(const LabelledLogits& data, const char* what) {
  if (data.classes < 1 || data.logits.size() != data.labels.size() * data.classes) {
    fail(std::string(what) + ": expected N x K logits for N labels");
  }
}

std::string fixed(double v, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, v);
  return text;
}

json interval_json(const Interval& i) { return json::array({i.low, i.high}); }

// Uniform in [0, n) by rejection from mt19937_64 (whose output the standard fixes), as metrics.cpp
// draws its bootstrap: the same intervals with every standard library.
uint64_t draw(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = rng(); while (v >= limit);
  return v % n;
}

// numpy.percentile's default (linear between order statistics).
Interval percentile_interval(std::vector<double> values, double level) {
  if (values.empty()) return {std::nan(""), std::nan("")};
  std::sort(values.begin(), values.end());
  const auto at = [&](double q) {
    const double pos = q * static_cast<double>(values.size() - 1);
    const auto i = static_cast<size_t>(std::floor(pos));
    const size_t j = std::min(i + 1, values.size() - 1);
    return values[i] + (values[j] - values[i]) * (pos - static_cast<double>(i));
  };
  return {at((1 - level) / 2), at(1 - (1 - level) / 2)};
}

std::string folded(const std::string& name) {
  std::string out;
  for (const unsigned char c : name) out += (c == '_' || c == '-') ? ' ' : static_cast<char>(std::tolower(c));
  return out;
}

}  // namespace

// [SECTION] Labelled logits

void LabelledLogits::add(const float* image_logits, int label) {
  const int limit = classes == 1 ? 2 : static_cast<int>(classes);
  if (label < 0 || label >= limit) fail("labelled logits: label " + std::to_string(label) + " outside [0, " + std::to_string(limit) + ")");
  logits.insert(logits.end(), image_logits, image_logits + classes);
  labels.push_back(label);
}

LabelledLogits labelled_logits(const std::vector<ResultRow>& rows, size_t classes) {
  LabelledLogits data;
  data.classes = classes;
  for (const ResultRow& row : rows) {
    if (row.status != ResultStatus::ok || row.label < 0 || static_cast<size_t>(row.label) >= classes ||
        row.prediction.logits.size() != classes) {
      continue;
    }
    data.add(row.prediction.logits.data(), row.label);
  }
  return data;
}

// [SECTION] Temperature scaling

double nll_at_temperature(const LabelledLogits& data, double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature)) fail("calibration: the temperature must be finite and > 0");
  check_data(data, "calibration");
  if (data.size() == 0) return 0.0;
  std::vector<double> z, p;
  double sum = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    class_logits(data, i, z);
    const double log_norm = softmax_scaled(z, 1.0 / temperature, p);
    sum += log_norm - z[static_cast<size_t>(data.labels[i])] / temperature;
  }
  return sum / static_cast<double>(data.size());
}

namespace {

// d/dbeta of the mean NLL of softmax(beta z): mean_i (E_p[z_i] - z_i,y_i); increasing in beta.
double nll_slope(const LabelledLogits& data, double beta) {
  std::vector<double> z, p;
  double sum = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    class_logits(data, i, z);
    softmax_scaled(z, beta, p);
    double expected = 0;
    for (size_t k = 0; k < z.size(); ++k) expected += p[k] * z[k];
    sum += expected - z[static_cast<size_t>(data.labels[i])];
  }
  return sum / static_cast<double>(data.size());
}

}  // namespace

double fit_temperature(const LabelledLogits& data) {
  check_data(data, "calibration");
  if (data.size() == 0) fail("calibration: no images to fit the temperature on");
  double lo = std::log(1.0 / kMaxTemperature), hi = std::log(1.0 / kMinTemperature);  // over log(1 / T)
  const double slope_lo = nll_slope(data, std::exp(lo)), slope_hi = nll_slope(data, std::exp(hi));
  if (std::abs(slope_lo) < 1e-15 && std::abs(slope_hi) < 1e-15) return 1.0;  // constant NLL: no information
  if (slope_lo >= 0) return kMaxTemperature;
  if (slope_hi <= 0) return kMinTemperature;
  for (int i = 0; i < 200 && hi - lo > 1e-12; ++i) {
    const double mid = 0.5 * (lo + hi);
    (nll_slope(data, std::exp(mid)) < 0 ? lo : hi) = mid;
  }
  return 1.0 / std::exp(0.5 * (lo + hi));
}

// [SECTION] Reliability bins, ECE and NLL with intervals

namespace {

// What each image contributes to the figures at one temperature.
struct ImageFigures {
  std::vector<int> bin;
  std::vector<double> confidence, correct, nll;
};

ImageFigures image_figures(const LabelledLogits& data, double temperature, int bins) {
  if (!(temperature > 0) || !std::isfinite(temperature)) fail("calibration: the temperature must be finite and > 0");
  if (bins < 1) fail("calibration: at least one bin");
  check_data(data, "calibration");
  ImageFigures f;
  std::vector<double> z, p;
  for (size_t i = 0; i < data.size(); ++i) {
    class_logits(data, i, z);
    const double log_norm = softmax_scaled(z, 1.0 / temperature, p);
    const auto top = static_cast<size_t>(std::max_element(p.begin(), p.end()) - p.begin());
    const auto label = static_cast<size_t>(data.labels[i]);
    f.bin.push_back(std::clamp(static_cast<int>(std::ceil(p[top] * bins)) - 1, 0, bins - 1));
    f.confidence.push_back(p[top]);
    f.correct.push_back(top == label ? 1.0 : 0.0);
    f.nll.push_back(log_norm - z[label] / temperature);
  }
  return f;
}

// ECE and NLL of the images `pick` (indices, repeats allowed) over `bins` bins.
void ece_and_nll(const ImageFigures& f, const std::vector<size_t>& pick, int bins, double& ece, double& nll) {
  std::vector<double> confidence(static_cast<size_t>(bins), 0.0), correct(static_cast<size_t>(bins), 0.0);
  nll = 0;
  for (size_t i : pick) {
    confidence[static_cast<size_t>(f.bin[i])] += f.confidence[i];
    correct[static_cast<size_t>(f.bin[i])] += f.correct[i];
    nll += f.nll[i];
  }
  ece = 0;
  for (size_t b = 0; b < confidence.size(); ++b) ece += std::abs(correct[b] - confidence[b]);
  const auto n = static_cast<double>(pick.size());
  ece = pick.empty() ? 0.0 : ece / n;
  nll = pick.empty() ? 0.0 : nll / n;
}

}  // namespace

json ReliabilityBins::to_json() const {
  return {{"bins", bins}, {"count", count}, {"confidence", confidence}, {"accuracy", accuracy}, {"images", images}, {"ece", ece}};
}

ReliabilityBins reliability_bins(const LabelledLogits& data, double temperature, int bins) {
  const ImageFigures f = image_figures(data, temperature, bins);
  ReliabilityBins out;
  out.bins = bins;
  out.count.assign(static_cast<size_t>(bins), 0);
  out.confidence.assign(static_cast<size_t>(bins), 0.0);
  out.accuracy.assign(static_cast<size_t>(bins), 0.0);
  out.images = static_cast<int64_t>(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    const auto b = static_cast<size_t>(f.bin[i]);
    ++out.count[b];
    out.confidence[b] += f.confidence[i];
    out.accuracy[b] += f.correct[i];
  }
  for (size_t b = 0; b < out.count.size(); ++b) {
    if (out.count[b] == 0) continue;
    const auto n = static_cast<double>(out.count[b]);
    out.confidence[b] /= n;
    out.accuracy[b] /= n;
    out.ece += n / static_cast<double>(out.images) * std::abs(out.accuracy[b] - out.confidence[b]);
  }
  return out;
}

CalibrationComparison compare_temperatures(const LabelledLogits& data, double before, double after, int bins,
                                           const BootstrapOptions& bootstrap) {
  if (data.size() == 0) fail("calibration: no labelled images to measure");
  if (bootstrap.resamples < 1 || !(bootstrap.level > 0 && bootstrap.level < 1)) fail("calibration: a bootstrap needs resamples >= 1 and a level in (0, 1)");
  CalibrationComparison out;
  out.bootstrap = bootstrap;
  const ImageFigures f_before = image_figures(data, before, bins), f_after = image_figures(data, after, bins);
  std::vector<size_t> all(data.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  for (auto [figures, f, t] : {std::tuple{&out.before, &f_before, before}, std::tuple{&out.after, &f_after, after}}) {
    figures->temperature = t;
    figures->bins = reliability_bins(data, t, bins);
    ece_and_nll(*f, all, bins, figures->ece, figures->nll);
    double correct = 0;
    for (double c : f->correct) correct += c;
    figures->accuracy = correct / static_cast<double>(data.size());
  }
  // Paired, stratified by the true class: both temperatures see the same resamples.
  const size_t labels = data.classes == 1 ? 2 : data.classes;
  std::vector<std::vector<size_t>> by_class(labels);
  for (size_t i = 0; i < data.size(); ++i) by_class[static_cast<size_t>(data.labels[i])].push_back(i);
  std::mt19937_64 rng(bootstrap.seed);
  std::vector<double> ece_b, ece_a, nll_b, nll_a, ece_d, nll_d;
  std::vector<size_t> pick;
  for (int r = 0; r < bootstrap.resamples; ++r) {
    pick.clear();
    for (const auto& members : by_class) {
      for (size_t k = 0; k < members.size(); ++k) pick.push_back(members[static_cast<size_t>(draw(rng, members.size()))]);
    }
    double eb = 0, nb = 0, ea = 0, na = 0;
    ece_and_nll(f_before, pick, bins, eb, nb);
    ece_and_nll(f_after, pick, bins, ea, na);
    ece_b.push_back(eb), nll_b.push_back(nb), ece_a.push_back(ea), nll_a.push_back(na);
    ece_d.push_back(ea - eb), nll_d.push_back(na - nb);
  }
  out.before.ece_interval = percentile_interval(ece_b, bootstrap.level);
  out.before.nll_interval = percentile_interval(nll_b, bootstrap.level);
  out.after.ece_interval = percentile_interval(ece_a, bootstrap.level);
  out.after.nll_interval = percentile_interval(nll_a, bootstrap.level);
  out.ece_change = percentile_interval(ece_d, bootstrap.level);
  out.nll_change = percentile_interval(nll_d, bootstrap.level);
  return out;
}

// [SECTION] Operating points

const char* to_string(TargetKind kind) {
  switch (kind) {
    case TargetKind::sensitivity: return "sensitivity";
    case TargetKind::specificity: return "specificity";
    case TargetKind::threshold: return "threshold";
  }
  return "unknown";
}

OperatingPointTarget parse_operating_point_target(const std::string& text, TargetKind kind,
                                                  const std::vector<std::string>& class_names) {
  const std::string option = std::string("--") + to_string(kind) + " " + text;
  const size_t eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) fail(option + ": expected CLASS=VALUE, e.g. Pneumonia=0.95");
  const std::string name = text.substr(0, eq), value_text = text.substr(eq + 1);
  OperatingPointTarget target;
  target.kind = kind;
  for (size_t c = 0; c < class_names.size(); ++c) {
    if (folded(class_names[c]) == folded(name)) target.class_index = static_cast<int>(c);
  }
  if (target.class_index < 0) {
    std::string names;
    for (const auto& n : class_names) names += (names.empty() ? "" : ", ") + n;
    fail(option + ": '" + name + "' is not one of the model's classes (" + names + ")");
  }
  char* end = nullptr;
  target.value = std::strtod(value_text.c_str(), &end);
  const bool is_number = end && *end == '\0' && std::isfinite(target.value);
  const bool in_range = kind == TargetKind::threshold ? target.value >= 0 && target.value <= 1
                                                      : target.value > 0 && target.value <= 1;
  if (!is_number || !in_range) {
    fail(option + ": '" + value_text + "' is not a number in " + (kind == TargetKind::threshold ? "[0, 1]" : "(0, 1]"));
  }
  return target;
}

json OperatingPoint::to_json() const {
  return {{"class", class_name},
          {"target", {{to_string(kind), target}}},
          {"threshold", threshold},
          {"sensitivity", sensitivity},
          {"sensitivity_interval", interval_json(sensitivity_interval)},
          {"specificity", specificity},
          {"specificity_interval", interval_json(specificity_interval)},
          {"positives", positives},
          {"true_positives", true_positives},
          {"negatives", negatives},
          {"true_negatives", true_negatives},
          {"level", level}};
}

OperatingPoint operating_point(const LabelledLogits& data, double temperature, const OperatingPointTarget& target,
                               double level) {
  check_data(data, "operating point");
  if (data.classes < 2) fail("operating points need a model with named classes (two or more logits)");
  if (target.class_index < 0 || static_cast<size_t>(target.class_index) >= data.classes) {
    fail("operating point: class " + std::to_string(target.class_index) + " is not one of the model's " +
         std::to_string(data.classes));
  }
  const bool ratio_target = target.kind != TargetKind::threshold;
  if (!(std::isfinite(target.value) && target.value <= 1 && (ratio_target ? target.value > 0 : target.value >= 0))) {
    fail(std::string("operating point: the ") + to_string(target.kind) + " target must be in " +
         (ratio_target ? "(0, 1]" : "[0, 1]"));
  }
  // The probabilities exactly as prediction.h computes them (float), so a threshold chosen here
  // calls the same images when `loupe predict` or the page classify them.
  const auto c = static_cast<size_t>(target.class_index);
  std::vector<double> positive, negative;
  for (size_t i = 0; i < data.size(); ++i) {
    const std::vector<float> p = calibrated_probabilities(data.row(i), data.classes, temperature);
    (static_cast<size_t>(data.labels[i]) == c ? positive : negative).push_back(static_cast<double>(p[c]));
  }
  if (positive.empty() || negative.empty()) {
    fail("operating point for class " + std::to_string(target.class_index) + ": needs images of the class and of the "
         "other classes (" + std::to_string(positive.size()) + " and " + std::to_string(negative.size()) + ")");
  }
  OperatingPoint point;
  point.class_index = target.class_index;
  point.kind = target.kind;
  point.target = target.value;
  point.level = level;
  // Counts as ceil(target * n), with a little slack so 0.95 * 20 is 19, not 20.
  const auto needed = [](double share, size_t n) {
    return std::clamp<size_t>(static_cast<size_t>(std::ceil(share * static_cast<double>(n) - 1e-9)), 1, n);
  };
  switch (target.kind) {
    case TargetKind::sensitivity: {
      std::sort(positive.begin(), positive.end(), std::greater<double>());
      point.threshold = positive[needed(target.value, positive.size()) - 1];
      break;
    }
    case TargetKind::specificity: {
      std::sort(negative.begin(), negative.end());
      // The next float above the m-th smallest: exactly those up to it fall below the threshold.
      const float below = static_cast<float>(negative[needed(target.value, negative.size()) - 1]);
      point.threshold = std::min(1.0, static_cast<double>(std::nextafter(below, 2.0f)));
      break;
    }
    case TargetKind::threshold: point.threshold = target.value; break;
  }
  point.positives = static_cast<int64_t>(positive.size());
  point.negatives = static_cast<int64_t>(negative.size());
  for (double p : positive) point.true_positives += p >= point.threshold;
  for (double p : negative) point.true_negatives += p < point.threshold;
  point.sensitivity = static_cast<double>(point.true_positives) / static_cast<double>(point.positives);
  point.specificity = static_cast<double>(point.true_negatives) / static_cast<double>(point.negatives);
  point.sensitivity_interval = wilson_interval(point.true_positives, point.positives, level);
  point.specificity_interval = wilson_interval(point.true_negatives, point.negatives, level);
  return point;
}

// [SECTION] Site calibration

namespace {

json figures_json(const CalibrationFigures& f, const char* calibration) {
  return {{"calibration", calibration},
          {"temperature", f.temperature},
          {"ece", f.ece},
          {"ece_interval", interval_json(f.ece_interval)},
          {"nll", f.nll},
          {"nll_interval", interval_json(f.nll_interval)},
          {"accuracy", f.accuracy}};
}

}  // namespace

SiteCalibrationResult calibrate_for_site(const ModelCard& card, const LabelledLogits& data,
                                         const SiteCalibrationOptions& options) {
  const size_t classes = card.class_names.size();
  if (classes < 2) fail("site calibration needs a model with named classes (this one has a single logit)");
  if (data.classes != classes) {
    fail("site calibration: " + std::to_string(data.classes) + " logits per image for the card's " +
         std::to_string(classes) + " classes");
  }
  check_data(data, "site calibration");
  if (options.min_images_per_class < 1) fail("site calibration: the minimum per class must be at least 1");
  SiteCalibrationResult out;
  out.images = static_cast<int64_t>(data.size());
  out.class_counts.assign(classes, 0);
  for (int label : data.labels) ++out.class_counts[static_cast<size_t>(label)];
  // Refused below the minimum, naming every class's count.
  std::string short_classes, all_counts;
  for (size_t c = 0; c < classes; ++c) {
    const std::string count = card.class_names[c] + " " + std::to_string(out.class_counts[c]);
    all_counts += (all_counts.empty() ? "" : ", ") + count;
    if (out.class_counts[c] < options.min_images_per_class) short_classes += (short_classes.empty() ? "" : ", ") + count;
  }
  if (!short_classes.empty()) {
    fail("site calibration needs at least " + std::to_string(options.min_images_per_class) +
         " labelled images of every class; too few: " + short_classes + " (all classes: " + all_counts + "; " +
         std::to_string(out.images) + " labelled images in all). Add labelled images of those classes (a sub-folder "
         "named like the class)");
  }
  for (size_t i = 0; i < options.targets.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (options.targets[i].class_index == options.targets[j].class_index) {
        const int c = options.targets[i].class_index;
        fail("site calibration: two operating points for class '" +
             (c >= 0 && static_cast<size_t>(c) < classes ? card.class_names[static_cast<size_t>(c)] : std::to_string(c)) +
             "' (one per class)");
      }
    }
  }

  const double before = card.temperature_in_use();
  out.replaced = card.calibration_in_use();
  out.fitted_temperature = fit_temperature(data);
  out.temperature_applied = !temperature_at_search_bound(out.fitted_temperature);
  if (!out.temperature_applied) {
    const bool low = out.fitted_temperature < 1;
    char text[400];
    std::snprintf(text, sizeof text,
                  "temperature not refitted: these %lld images do not bound it (the fit ran to T = %.3g, the end of "
                  "[%.2g, %.3g]: %s); the temperature in use (%.4g) is kept",
                  static_cast<long long>(out.images), out.fitted_temperature, kMinTemperature, kMaxTemperature,
                  low ? "every image right with a wide margin" : "the logits do not point to the labels, the model is no "
                                                                 "better than chance on these images",
                  before);
    out.note = text;
  }
  const double after = out.temperature_applied ? out.fitted_temperature : before;
  out.comparison = compare_temperatures(data, before, after, options.bins, options.bootstrap);
  for (const OperatingPointTarget& target : options.targets) {
    OperatingPoint point = operating_point(data, after, target, options.bootstrap.level);
    point.class_name = card.class_names[static_cast<size_t>(point.class_index)];
    out.operating_points.push_back(point);
  }

  json points = json::array();
  for (const OperatingPoint& p : out.operating_points) points.push_back(p.to_json());
  const CalibrationComparison& cmp = out.comparison;
  json record = {
      {"method", "temperature_scaling"},
      {"temperature", after},
      {"fitted_temperature", out.fitted_temperature},
      {"temperature_refitted", out.temperature_applied},
      {"created_utc", options.created_utc},
      {"images", out.images},
      {"class_counts", out.class_counts},
      {"min_images_per_class", options.min_images_per_class},
      {"ece_bins", options.bins},
      {"before", figures_json(cmp.before, out.replaced)},
      {"after", figures_json(cmp.after, "site")},
      {"ece_change_interval", interval_json(cmp.ece_change)},
      {"nll_change_interval", interval_json(cmp.nll_change)},
      {"intervals",
       {{"level", options.bootstrap.level},
        {"method", "percentile intervals of a paired stratified bootstrap over the images (temperatures fixed); "
                   "Wilson intervals for sensitivity and specificity"},
        {"resamples", options.bootstrap.resamples},
        {"seed", options.bootstrap.seed}}},
      {"reliability", {{"before", cmp.before.bins.to_json()}, {"after", cmp.after.bins.to_json()}}},
      {"operating_points", points},
      {"in_sample", "The temperature and the operating points were chosen on these images and the figures measured on "
                    "the same images: on new images of the site expect somewhat worse."},
      {"graph_probabilities",
       "The graph's 'probabilities' output keeps the export's calibration; Loupe computes the probabilities it shows "
       "from the logits with this temperature. The self-test checks the graph, which this calibration does not change."}};
  if (!out.note.empty()) record["note"] = out.note;
  if (!options.site.empty()) record["site"] = options.site;
  if (card.site_calibration) {
    const SiteCalibration& old = *card.site_calibration;
    record["replaces"] = {{"created_utc", old.created_utc}, {"temperature", old.temperature}, {"images", old.images},
                          {"operating_points", old.operating_points.size()}};
  }
  out.record = record;
  out.card = card;
  out.card.site_calibration = SiteCalibration::from_json(record, card.class_names);
  return out;
}

std::string SiteCalibrationResult::to_text() const {
  const CalibrationComparison& cmp = comparison;
  const ModelCard& c = card;
  std::string counts;
  for (size_t k = 0; k < class_counts.size() && k < c.class_names.size(); ++k) {
    counts += (counts.empty() ? "" : ", ") + c.class_names[k] + " " + std::to_string(class_counts[k]);
  }
  const int pct = static_cast<int>(std::lround(100 * cmp.bootstrap.level));
  std::string text = "site calibration on " + std::to_string(images) + " labelled images (" + counts + ")\n";
  text += std::string("temperature: ") + fixed(cmp.before.temperature, 4) + " (" + replaced + ") -> " +
          fixed(cmp.after.temperature, 4) + (temperature_applied ? " (refitted here)" : " (kept)") + "\n";
  if (!note.empty()) text += "  " + note + "\n";
  const auto line = [&](const char* name, double b, const Interval& bi, double a, const Interval& ai, const Interval& d) {
    return std::string("  ") + name + with_interval(b, bi, 4) + " -> " + with_interval(a, ai, 4) + "   change " +
           with_interval(a - b, d, 4) + "\n";
  };
  text += line("ECE  ", cmp.before.ece, cmp.before.ece_interval, cmp.after.ece, cmp.after.ece_interval, cmp.ece_change);
  text += line("NLL  ", cmp.before.nll, cmp.before.nll_interval, cmp.after.nll, cmp.after.nll_interval, cmp.nll_change);
  text += "  (" + std::to_string(pct) + "% intervals: paired stratified bootstrap, " +
          std::to_string(cmp.bootstrap.resamples) + " resamples, seed " + std::to_string(cmp.bootstrap.seed) + "; " +
          std::to_string(cmp.before.bins.bins) + " equal-width confidence bins)\n";
  text += "reliability (top-class confidence bin: images, mean confidence, accuracy; before -> after):\n";
  const ReliabilityBins &rb = cmp.before.bins, &ra = cmp.after.bins;
  for (size_t b = 0; b < rb.count.size(); ++b) {
    if (rb.count[b] == 0 && ra.count[b] == 0) continue;
    char row[200];
    const auto cell = [](int64_t n, double conf, double acc) {
      char s[64];
      if (n == 0) std::snprintf(s, sizeof s, "%4d", 0);
      else std::snprintf(s, sizeof s, "%4lld %.3f %.3f", static_cast<long long>(n), conf, acc);
      return std::string(s);
    };
    std::snprintf(row, sizeof row, "  (%.2f, %.2f]  %-20s -> %s\n", static_cast<double>(b) / rb.bins,
                  static_cast<double>(b + 1) / rb.bins, cell(rb.count[b], rb.confidence[b], rb.accuracy[b]).c_str(),
                  cell(ra.count[b], ra.confidence[b], ra.accuracy[b]).c_str());
    text += row;
  }
  if (!operating_points.empty()) {
    text += "operating points (chosen on these images; " + std::to_string(pct) + "% Wilson intervals):\n";
    for (const OperatingPoint& p : operating_points) {
      char row[400];
      std::snprintf(row, sizeof row, "  %s, %s %.3g: called when p >= %.4g; sensitivity %s (%lld/%lld), specificity %s (%lld/%lld)\n",
                    p.class_name.c_str(), to_string(p.kind), p.target, p.threshold,
                    with_interval(p.sensitivity, p.sensitivity_interval).c_str(), static_cast<long long>(p.true_positives),
                    static_cast<long long>(p.positives), with_interval(p.specificity, p.specificity_interval).c_str(),
                    static_cast<long long>(p.true_negatives), static_cast<long long>(p.negatives));
      text += row;
    }
    text += "predicted class: " + decision_note(card) + "\n";
  }
  text += "in-sample: the temperature and operating points were chosen on these images and measured on them; new images "
          "of the site will do somewhat worse\n";
  return text;
}

std::vector<uint8_t> with_site_calibration(const uint8_t* onnx, size_t size, const SiteCalibrationResult& result,
                                           const std::string& what) {
  const OnnxModelInfo info = read_onnx_model(onnx, size, what);
  if (info.card.class_names != result.card.class_names || info.card.weights_sha256 != result.card.weights_sha256) {
    throw Error(ErrorCode::InvalidArgument, what + ": the site calibration was computed for another model (" +
                                                result.card.name + ", weights " + result.card.weights_sha256.substr(0, 12) +
                                                "...)");
  }
  json card = info.card_json;
  card["site_calibration"] = result.record;
  return with_model_card(onnx, size, card, what);
}

}  // namespace loupe
