// Temperature scaling, reliability bins / ECE and the Mahalanobis out-of-distribution distance
// (calibration.h), in float64 on the CPU.
#include "loupe/export/calibration.h"

#include <torch/linalg.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "loupe/error.h"

namespace loupe::exporter {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

// logits [N, K] as float64 on the CPU; a single logit column z becomes [0, z].
torch::Tensor class_logits(const torch::Tensor& logits) {
  if (logits.dim() != 2 || logits.size(1) < 1) fail("calibration: expected logits [N, K]");
  torch::Tensor z = logits.detach().to(torch::kCPU, torch::kFloat64);
  if (z.size(1) == 1) z = torch::cat({torch::zeros_like(z), z}, 1);
  return z.contiguous();
}

torch::Tensor label_tensor(const torch::Tensor& labels, int64_t n, int64_t k) {
  if (labels.dim() != 1 || labels.size(0) != n) fail("calibration: expected one label per row");
  torch::Tensor y = labels.detach().to(torch::kCPU, torch::kInt64).contiguous();
  if (n > 0 && (y.min().item<int64_t>() < 0 || y.max().item<int64_t>() >= k)) {
    fail("calibration: a label is outside [0, " + std::to_string(k) + ")");
  }
  return y;
}

// d/dbeta of the mean NLL of softmax(beta z): mean_i (E_p[z_i] - z_i,y_i).
double nll_slope(const torch::Tensor& z, const torch::Tensor& z_true, double beta) {
  const torch::Tensor p = torch::softmax(z * beta, 1);
  return ((p * z).sum(1) - z_true).mean().item<double>();
}

}  // namespace

torch::Tensor calibrated_probabilities(const torch::Tensor& logits, double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature)) fail("calibration: the temperature must be finite and > 0");
  const torch::Tensor z = logits.detach().to(torch::kCPU, torch::kFloat64);
  if (z.dim() != 2) fail("calibration: expected logits [N, K]");
  return z.size(1) == 1 ? torch::sigmoid(z / temperature) : torch::softmax(z / temperature, 1);
}

double nll_at_temperature(const torch::Tensor& logits, const torch::Tensor& labels, double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature)) fail("calibration: the temperature must be finite and > 0");
  const torch::Tensor z = class_logits(logits);
  const torch::Tensor y = label_tensor(labels, z.size(0), z.size(1));
  if (z.size(0) == 0) return 0.0;
  const torch::Tensor log_p = torch::log_softmax(z / temperature, 1);
  return -log_p.gather(1, y.unsqueeze(1)).mean().item<double>();
}

double fit_temperature(const torch::Tensor& logits, const torch::Tensor& labels) {
  const torch::Tensor z = class_logits(logits);
  const torch::Tensor y = label_tensor(labels, z.size(0), z.size(1));
  if (z.size(0) == 0) fail("calibration: no images to fit the temperature on");
  const torch::Tensor z_true = z.gather(1, y.unsqueeze(1)).squeeze(1);
  // beta = 1 / T; the slope is increasing in beta (the NLL is convex in beta).
  double lo = std::log(1.0 / kMaxTemperature), hi = std::log(1.0 / kMinTemperature);
  const double slope_lo = nll_slope(z, z_true, std::exp(lo)), slope_hi = nll_slope(z, z_true, std::exp(hi));
  if (std::abs(slope_lo) < 1e-15 && std::abs(slope_hi) < 1e-15) return 1.0;  // constant NLL: no information
  if (slope_lo >= 0) return kMaxTemperature;
  if (slope_hi <= 0) return kMinTemperature;
  for (int i = 0; i < 200 && hi - lo > 1e-12; ++i) {
    const double mid = 0.5 * (lo + hi);
    (nll_slope(z, z_true, std::exp(mid)) < 0 ? lo : hi) = mid;
  }
  return 1.0 / std::exp(0.5 * (lo + hi));
}

ReliabilityBins reliability_bins(const torch::Tensor& probabilities, const torch::Tensor& labels, int bins) {
  if (bins < 1) fail("calibration: at least one bin");
  if (probabilities.dim() != 2 || probabilities.size(1) < 1) fail("calibration: expected probabilities [N, K]");
  torch::Tensor p = probabilities.detach().to(torch::kCPU, torch::kFloat64);
  if (p.size(1) == 1) p = torch::cat({1.0 - p, p}, 1);
  const torch::Tensor y = label_tensor(labels, p.size(0), p.size(1));
  const auto [confidence, predicted] = p.max(1);
  ReliabilityBins out;
  out.bins = bins;
  out.count.assign(static_cast<size_t>(bins), 0);
  out.confidence.assign(static_cast<size_t>(bins), 0.0);
  out.accuracy.assign(static_cast<size_t>(bins), 0.0);
  out.images = p.size(0);
  const auto conf = confidence.contiguous();
  const auto pred = predicted.contiguous();
  const double* c = conf.data_ptr<double>();
  const int64_t* k = pred.data_ptr<int64_t>();
  const int64_t* t = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < out.images; ++i) {
    const int b = std::clamp(static_cast<int>(std::ceil(c[i] * bins)) - 1, 0, bins - 1);
    const auto ub = static_cast<size_t>(b);
    ++out.count[ub];
    out.confidence[ub] += c[i];
    out.accuracy[ub] += k[i] == t[i] ? 1.0 : 0.0;
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

double expected_calibration_error(const torch::Tensor& probabilities, const torch::Tensor& labels, int bins) {
  return reliability_bins(probabilities, labels, bins).ece;
}

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

}  // namespace loupe::exporter
