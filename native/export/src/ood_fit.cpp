// The Mahalanobis out-of-distribution distance and its split-conformal threshold (ood_fit.h), in
// float64 on the CPU.
#include "loupe/export/ood_fit.h"

#include <torch/linalg.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "loupe/error.h"

namespace loupe::exporter {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

torch::Tensor label_tensor(const torch::Tensor& labels, int64_t n, int64_t k) {
  if (labels.dim() != 1 || labels.size(0) != n) fail("out-of-distribution fit: expected one label per row");
  torch::Tensor y = labels.detach().to(torch::kCPU, torch::kInt64).contiguous();
  if (n > 0 && (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() >= k)) {
    fail("out-of-distribution fit: a label is outside [0, " + std::to_string(k) + ")");
  }
  return y;
}

}  // namespace

MahalanobisFit fit_mahalanobis(const torch::Tensor& embeddings, const torch::Tensor& labels, int64_t num_classes,
                               int64_t max_dims) {
  if (embeddings.dim() != 2) fail("out-of-distribution fit: expected embeddings [N, D]");
  const torch::Tensor e = embeddings.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const int64_t n = e.size(0), width = e.size(1);
  if (n < 2 || width < 1) fail("out-of-distribution fit: needs at least 2 training embeddings");
  const torch::Tensor y_all = label_tensor(labels, n, std::max<int64_t>(num_classes, 1));
  if (max_dims < 1) fail("out-of-distribution fit: max_dims must be >= 1");

  MahalanobisFit fit;
  fit.embedding_dims = width;
  fit.images = n;
  fit.dims = std::min({max_dims, n - 1, width});
  fit.mean = e.mean(0);
  const torch::Tensor x = e - fit.mean;
  // PCA: the top-d eigenvectors of the sample covariance (eigh: ascending eigenvalues).
  const torch::Tensor cov = x.t().matmul(x) / static_cast<double>(n - 1);
  const auto [values, vectors] = torch::linalg::eigh(cov, "L");
  const torch::Tensor top = torch::arange(width - 1, width - 1 - fit.dims, -1, torch::kInt64);
  fit.components = vectors.index_select(1, top).t().contiguous();  // [d, D]
  const double total = values.clamp_min(0).sum().item<double>();
  fit.explained_variance = total > 0 ? values.index_select(0, top).clamp_min(0).sum().item<double>() / total : 1.0;

  const torch::Tensor projected = x.matmul(fit.components.t());  // [N, d]
  std::vector<torch::Tensor> means;
  torch::Tensor residual = torch::empty_like(projected);
  for (int64_t k = 0; k < num_classes; ++k) {
    const torch::Tensor rows = (y_all == k).nonzero().squeeze(1);
    if (rows.numel() == 0) continue;
    const torch::Tensor class_rows = projected.index_select(0, rows);
    const torch::Tensor m = class_rows.mean(0);
    residual.index_copy_(0, rows, class_rows - m);
    means.push_back(m);
    fit.classes.push_back(k);
  }
  if (means.empty()) fail("out-of-distribution fit: no labelled training embeddings");
  fit.class_means = torch::stack(means);

  // Ledoit-Wolf shrinkage of the pooled within-class covariance towards mu * I (as scikit-learn's
  // ledoit_wolf_shrinkage, on the class-centred residuals).
  const auto d = static_cast<double>(fit.dims), count = static_cast<double>(n);
  const torch::Tensor emp = residual.t().matmul(residual) / count;
  const double mu = emp.trace().item<double>() / d;
  const torch::Tensor r2 = residual * residual;
  const double beta_sum = r2.t().matmul(r2).sum().item<double>();
  const double delta_sum = emp.pow(2).sum().item<double>();
  double beta = (beta_sum / count - delta_sum) / (d * count);
  const double delta = (delta_sum - 2.0 * mu * emp.trace().item<double>() + d * mu * mu) / d;
  beta = std::min(beta, delta);
  fit.shrinkage = beta <= 0 || delta <= 0 ? 0.0 : beta / delta;
  const torch::Tensor eye = torch::eye(fit.dims, torch::kFloat64);
  const double floor = mu > 0 ? 1e-9 * mu : 1e-12;  // keeps Sigma positive definite if the shrinkage is 0
  fit.covariance = (1.0 - fit.shrinkage) * emp + (fit.shrinkage * mu + floor) * eye;

  // Whitening: W = L^-1, Sigma = L L^T.
  const torch::Tensor lower = torch::linalg::cholesky(fit.covariance);
  const torch::Tensor whiten = torch::linalg::solve_triangular(lower, eye, /*upper=*/false, /*left=*/true,
                                                                   /*unitriangular=*/false);  // L^-1
  fit.projection = whiten.matmul(fit.components).t().contiguous();                             // [D, d]
  fit.centers = fit.class_means.matmul(whiten.t()).contiguous();                              // [K', d]
  return fit;
}

torch::Tensor mahalanobis_distance(const MahalanobisFit& fit, const torch::Tensor& embeddings) {
  if (embeddings.dim() != 2 || embeddings.size(1) != fit.embedding_dims) {
    fail("out-of-distribution distance: expected embeddings [N, " + std::to_string(fit.embedding_dims) + "]");
  }
  const torch::Tensor e = embeddings.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor y = (e - fit.mean).matmul(fit.components.t());  // [N, d]
  torch::Tensor best;
  for (int64_t k = 0; k < fit.class_means.size(0); ++k) {
    const torch::Tensor r = y - fit.class_means[k];                           // [N, d]
    const torch::Tensor solved = torch::linalg::solve(fit.covariance, r.t(), /*left=*/true);  // Sigma^-1 r^T
    const torch::Tensor distance = (r * solved.t()).sum(1);
    best = k == 0 ? distance : torch::minimum(best, distance);
  }
  return best;
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) fail("quantile of no values");
  if (!(q >= 0 && q <= 1)) fail("quantile: q must be in [0, 1]");
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(values.size() - 1, below + 1);
  return values[below] + (position - static_cast<double>(below)) * (values[above] - values[below]);
}

double tensor_quantile(const torch::Tensor& values, double q) {
  const torch::Tensor v = values.detach().to(torch::kCPU, torch::kFloat64).contiguous().view({-1});
  return quantile(std::vector<double>(v.data_ptr<double>(), v.data_ptr<double>() + v.numel()), q);
}

// [SECTION] The threshold: split-conformal

namespace {

// The regularized incomplete beta function I_x(a, b): the continued fraction (modified Lentz) on
// the side where it converges fast (Numerical Recipes, betai / betacf).
double beta_continued_fraction(double a, double b, double x) {
  const double tiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  d = std::abs(d) < tiny ? tiny : d;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((a - 1 + m2) * (a + m2));
    d = 1 + aa * d, c = 1 + aa / c;
    d = std::abs(d) < tiny ? tiny : d, c = std::abs(c) < tiny ? tiny : c;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2));
    d = 1 + aa * d, c = 1 + aa / c;
    d = std::abs(d) < tiny ? tiny : d, c = std::abs(c) < tiny ? tiny : c;
    d = 1 / d;
    const double step = d * c;
    h *= step;
    if (std::abs(step - 1) < 1e-15) break;
  }
  return h;
}

double regularized_incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

// 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, ...
std::string ordinal(int64_t n) {
  const int64_t tens = n % 100, ones = n % 10;
  const char* suffix = tens >= 11 && tens <= 13 ? "th" : ones == 1 ? "st" : ones == 2 ? "nd" : ones == 3 ? "rd" : "th";
  return std::to_string(n) + suffix;
}

std::string percent(double v, int digits = 1) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f%%", digits, 100 * v);
  return text;
}

}  // namespace

double beta_quantile(double p, double a, double b) {
  if (!(a > 0 && b > 0 && p >= 0 && p <= 1)) fail("beta_quantile: needs a, b > 0 and p in [0, 1]");
  double lo = 0, hi = 1;
  for (int i = 0; i < 200 && hi - lo > 1e-12; ++i) {
    const double mid = 0.5 * (lo + hi);
    (regularized_incomplete_beta(a, b, mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

ConformalThreshold conformal_threshold(std::vector<double> distances, double alpha, double level) {
  if (!(alpha > 0 && alpha < 1)) fail("conformal threshold: alpha must be in (0, 1)");
  for (double d : distances) {
    if (!std::isfinite(d)) fail("conformal threshold: a distance is not a finite number");
  }
  ConformalThreshold out;
  out.alpha = alpha;
  out.level = level;
  out.distances = static_cast<int64_t>(distances.size());
  const auto n = static_cast<double>(distances.size());
  // ceil((n + 1)(1 - alpha)), with slack for rounding ((99 + 1) * 0.95 is 95, not 96).
  out.rank = static_cast<int64_t>(std::ceil((n + 1) * (1 - alpha) - 1e-9));
  if (out.rank > out.distances) {
    fail("conformal threshold: " + std::to_string(distances.size()) + " distances are too few for a false-alarm rate of " +
         percent(alpha) + " (at least " + std::to_string(static_cast<int64_t>(std::ceil(1 / alpha - 1 - 1e-9))) + ")");
  }
  std::sort(distances.begin(), distances.end());
  out.threshold = distances[static_cast<size_t>(out.rank - 1)];
  const double a = static_cast<double>(out.distances + 1 - out.rank), b = static_cast<double>(out.rank);
  out.false_alarm_rate = a / (a + b);
  out.false_alarm_interval = {beta_quantile((1 - level) / 2, a, b), beta_quantile(1 - (1 - level) / 2, a, b)};
  return out;
}

std::vector<int> assign_folds(const std::vector<int64_t>& labels, const std::vector<std::string>& groups, int folds,
                              uint64_t seed) {
  if (folds < 2) fail("cross-fitting: at least 2 folds");
  if (!groups.empty() && groups.size() != labels.size()) fail("cross-fitting: one group per label");
  // Units: a group's images, or an image alone; each counts for its most frequent label.
  std::map<std::string, std::vector<size_t>> members;
  for (size_t i = 0; i < labels.size(); ++i) {
    const bool alone = groups.empty() || groups[i].empty();
    members[alone ? "\x01" + std::to_string(i) : groups[i]].push_back(i);
  }
  std::map<int64_t, std::vector<std::vector<size_t>>> by_label;
  for (auto& [id, indices] : members) {
    std::map<int64_t, int> counts;
    for (size_t i : indices) ++counts[labels[i]];
    int64_t label = counts.begin()->first;
    for (const auto& [l, c] : counts) label = c > counts[label] ? l : label;
    by_label[label].push_back(std::move(indices));
  }
  std::vector<int> fold_of(labels.size(), 0);
  std::mt19937_64 rng(seed);
  for (auto& [label, units] : by_label) {
    std::sort(units.begin(), units.end());  // sample order, not the ids', feeds the shuffle
    for (size_t i = units.size(); i > 1; --i) {  // Fisher-Yates on the standard-fixed mt19937_64
      const uint64_t limit = UINT64_MAX - UINT64_MAX % i;
      uint64_t v;
      do v = rng(); while (v >= limit);
      std::swap(units[i - 1], units[static_cast<size_t>(v % i)]);
    }
    for (size_t j = 0; j < units.size(); ++j) {
      for (size_t i : units[j]) fold_of[i] = static_cast<int>(j % static_cast<size_t>(folds));
    }
  }
  return fold_of;
}

torch::Tensor cross_fitted_distances(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                     const std::vector<int>& fold_of, int64_t num_classes, int64_t max_dims) {
  if (embeddings.dim() != 2 || static_cast<size_t>(embeddings.size(0)) != fold_of.size()) {
    fail("cross-fitting: expected embeddings [N, D] and one fold per embedding");
  }
  const int folds = fold_of.empty() ? 0 : *std::max_element(fold_of.begin(), fold_of.end()) + 1;
  torch::Tensor out = torch::empty({embeddings.size(0)}, torch::kFloat64);
  const torch::Tensor fold = torch::tensor(std::vector<int64_t>(fold_of.begin(), fold_of.end()), torch::kInt64);
  for (int f = 0; f < folds; ++f) {
    const torch::Tensor held = (fold == f).nonzero().squeeze(1), rest = (fold != f).nonzero().squeeze(1);
    if (held.numel() == 0) continue;
    if (rest.numel() < 2) fail("cross-fitting: fold " + std::to_string(f) + " leaves fewer than 2 embeddings to fit on");
    const MahalanobisFit fit = fit_mahalanobis(embeddings.index_select(0, rest), labels.index_select(0, rest), num_classes, max_dims);
    out.index_copy_(0, held, mahalanobis_distance(fit, embeddings.index_select(0, held)));
  }
  return out;
}

double two_proportion_p(int64_t a, int64_t n1, int64_t b, int64_t n2) {
  if (n1 <= 0 || n2 <= 0) return 1;
  const double pooled = static_cast<double>(a + b) / static_cast<double>(n1 + n2);
  if (pooled <= 0 || pooled >= 1) return 1;
  const double se = std::sqrt(pooled * (1 - pooled) * (1.0 / static_cast<double>(n1) + 1.0 / static_cast<double>(n2)));
  const double z = (static_cast<double>(a) / static_cast<double>(n1) - static_cast<double>(b) / static_cast<double>(n2)) / se;
  return std::erfc(std::abs(z) / std::sqrt(2.0));
}

ExchangeabilityTest tail_exchangeability(const std::vector<double>& validation, const std::vector<double>& training,
                                         double threshold) {
  ExchangeabilityTest t;
  t.threshold = threshold;
  t.validation = static_cast<int64_t>(validation.size());
  t.training = static_cast<int64_t>(training.size());
  for (double d : validation) t.validation_beyond += d > threshold;
  for (double d : training) t.training_beyond += d > threshold;
  t.p_value = two_proportion_p(t.validation_beyond, t.validation, t.training_beyond, t.training);
  return t;
}

nlohmann::json OodThresholdEstimate::card_fields() const {
  const ConformalThreshold& c = conformal;
  std::string on = std::to_string(validation) + " validation images";
  if (training_used) {
    on = std::to_string(cross_fitted) + " training images, cross-fitted (" + std::to_string(folds) + " folds" +
         (grouped ? " of whole patient groups" : "") + "; each fold's distances from a fit on the other " +
         std::to_string(folds - 1) + "), and " + on + " (under the fit in the graph)";
  }
  return {{"threshold", c.threshold},
          {"threshold_method", "split-conformal: the " + ordinal(c.rank) + " smallest of " +
                                   std::to_string(c.distances) + " distances of in-distribution images the fit did not "
                                   "see, k = ceil((n + 1)(1 - alpha))"},
          {"threshold_fitted_on", on},
          {"alpha", c.alpha},
          {"alpha_requested", requested_alpha},
          {"calibration_distances", c.distances},
          {"threshold_rank", c.rank},
          {"cross_fit_folds", folds},
          {"false_alarm_rate", c.false_alarm_rate},
          {"false_alarm_interval", {c.false_alarm_interval.low, c.false_alarm_interval.high}},
          {"false_alarm_interval_method",
           std::to_string(static_cast<int>(std::lround(100 * c.level))) + "% central interval of Beta(n + 1 - k, k), the "
           "false-alarm rate on new in-distribution images given these distances"},
          {"cross_fit_exchangeability",
           {{"test", "two-sided two-proportion z-test: the shares of validation and of cross-fitted training distances "
                     "beyond the threshold set on both"},
            {"threshold_tested", exchangeability.threshold},
            {"validation_beyond", {exchangeability.validation_beyond, exchangeability.validation}},
            {"training_beyond", {exchangeability.training_beyond, exchangeability.training}},
            {"p_value", exchangeability.p_value},
            {"training_distances", cross_fitted},
            {"used", training_used},
            {"why", cross_fitted == 0 ? "no cross-fitting"
                    : training_used ? "their tails agree as far as the test can tell"
                                    : std::string("their tails differ: fewer training than validation distances lie "
                                                  "beyond it (the network was trained on those images)") +
                                          "; the threshold rests on the validation distances alone"}}}};
}

std::string OodThresholdEstimate::summary() const {
  const ConformalThreshold& c = conformal;
  char text[600];
  std::snprintf(text, sizeof text,
                "threshold %.3f: split-conformal, the %s smallest of %lld distances (%lld validation%s); false alarms "
                "on new in-distribution images %s [%s, %s] (stated %s; the old rule, the validation distances' %.0fth "
                "percentile, gives %.3f)",
                c.threshold, ordinal(c.rank).c_str(), static_cast<long long>(c.distances),
                static_cast<long long>(validation),
                training_used ? (", " + std::to_string(cross_fitted) + " training images cross-fitted in " +
                                 std::to_string(folds) + " folds" + (grouped ? " by patient group" : "")).c_str()
                              : "",
                percent(c.false_alarm_rate).c_str(), percent(c.false_alarm_interval.low).c_str(),
                percent(c.false_alarm_interval.high).c_str(), percent(c.alpha, 0).c_str(), 100 * (1 - c.alpha), val_quantile);
  std::string out = text;
  if (cross_fitted > 0) {
    const ExchangeabilityTest& e = exchangeability;
    const auto share = [](int64_t k, int64_t n) { return n > 0 ? 100.0 * static_cast<double>(k) / static_cast<double>(n) : 0.0; };
    char test[400];
    std::snprintf(test, sizeof test,
                  "\n  cross-fitted training distances (%lld, %d folds%s) vs validation, beyond %.3f: training %lld of "
                  "%lld (%.1f%%), validation %lld of %lld (%.1f%%), two-proportion p = %.3g: %s",
                  static_cast<long long>(cross_fitted), folds, grouped ? " by patient group" : "", e.threshold,
                  static_cast<long long>(e.training_beyond), static_cast<long long>(e.training),
                  share(e.training_beyond, e.training), static_cast<long long>(e.validation_beyond),
                  static_cast<long long>(e.validation), share(e.validation_beyond, e.validation), e.p_value,
                  training_used ? "used" : "not used (their tails differ: the network was trained on those images)");
    out += test;
  }
  return out;
}

OodThresholdEstimate estimate_ood_threshold(const torch::Tensor& train_embeddings, const torch::Tensor& train_labels,
                                            const std::vector<std::string>& train_groups, int64_t num_classes,
                                            int64_t max_dims, const torch::Tensor& val_distances,
                                            const OodThresholdOptions& options) {
  OodThresholdEstimate out;
  const torch::Tensor val = val_distances.detach().to(torch::kCPU, torch::kFloat64).contiguous().view({-1});
  std::vector<double> distances(val.data_ptr<double>(), val.data_ptr<double>() + val.numel());
  out.validation = val.numel();
  if (out.validation > 0) out.val_quantile = quantile(distances, 1 - options.alpha);
  if (options.folds >= 2) {
    const torch::Tensor labels = train_labels.detach().to(torch::kCPU, torch::kInt64).contiguous();
    const std::vector<int64_t> label_list(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
    out.grouped = std::any_of(train_groups.begin(), train_groups.end(), [](const std::string& g) { return !g.empty(); });
    const std::vector<int> fold_of = assign_folds(label_list, train_groups, options.folds, options.seed);
    const torch::Tensor crossed = cross_fitted_distances(train_embeddings, labels, fold_of, num_classes, max_dims).contiguous();
    const std::vector<double> training(crossed.data_ptr<double>(), crossed.data_ptr<double>() + crossed.numel());
    out.cross_fitted = crossed.numel();
    out.folds = options.folds;
    std::vector<double> both(distances);
    both.insert(both.end(), training.begin(), training.end());
    const double n_both = static_cast<double>(both.size());
    const double tested = std::ceil((n_both + 1) * (1 - options.alpha) - 1e-9) <= n_both
                              ? conformal_threshold(both, options.alpha, options.level).threshold
                              : *std::max_element(both.begin(), both.end());
    out.exchangeability = tail_exchangeability(distances, training, tested);
    out.training_used = out.exchangeability.p_value >= options.exchangeable_p;
    if (out.training_used) distances = std::move(both);
  }
  // Too few distances to state alpha (fewer than 1 / alpha - 1): the largest of them, with the rate
  // that allows, 1 / (n + 1), stated instead.
  const double n = static_cast<double>(distances.size());
  const bool too_few = !distances.empty() && std::ceil((n + 1) * (1 - options.alpha) - 1e-9) > n;
  out.conformal = conformal_threshold(std::move(distances), too_few ? 1.0 / (n + 1) : options.alpha, options.level);
  out.requested_alpha = options.alpha;
  return out;
}

}  // namespace loupe::exporter
