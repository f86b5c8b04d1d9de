// Calibrated confidence and an out-of-distribution check for an exported classifier, fitted by
// `loupe export` on a run's own split (run_export.cpp) and carried by the ONNX graph
// (onnx_export.h: the "probabilities" output divides the logits by T; the "ood_distance" output).
//
//   torch::Tensor val_logits = ..., val_labels = ...;                 // [N, K] float, [N] int64
//   double t = loupe::exporter::fit_temperature(val_logits, val_labels);
//   double ece = loupe::exporter::expected_calibration_error(
//       loupe::exporter::calibrated_probabilities(val_logits, t), val_labels);
//   auto fit = loupe::exporter::fit_mahalanobis(train_embeddings, train_labels, K);   // [N, D] float
//   torch::Tensor d = loupe::exporter::mahalanobis_distance(fit, val_embeddings);      // [N] float64
//   double threshold = loupe::exporter::tensor_quantile(d, 0.95);
//
// Everything is computed in float64 on the CPU. A single-logit model (K == 1, sigmoid) is treated
// as the two-class logits [0, z] throughout (softmax([0, z] / T)[1] == sigmoid(z / T)).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loupe::exporter {

// [SECTION] Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks")

// The range fit_temperature searches; a fit at either end means the data did not bound it (e.g.
// validation images all classified correctly with large margins push T towards 0).
inline constexpr double kMinTemperature = 0.01;
inline constexpr double kMaxTemperature = 100.0;

// softmax(logits / T) over the classes [N, K] (K == 1: sigmoid(logits / T), [N, 1]), float64.
torch::Tensor calibrated_probabilities(const torch::Tensor& logits, double temperature);

// Mean negative log-likelihood (log loss, natural log) of softmax(logits / T) at the labels.
// logits [N, K], labels [N] (integers in [0, K); 0 or 1 when K == 1).
double nll_at_temperature(const torch::Tensor& logits, const torch::Tensor& labels, double temperature);

// The T > 0 minimising nll_at_temperature. The NLL is convex in 1/T, so its derivative in 1/T
// is monotone: bisection on the sign of the derivative over log(1/T), to 1e-12 relative, within
// [kMinTemperature, kMaxTemperature]. Returns 1 when the logits carry no information (all equal).
double fit_temperature(const torch::Tensor& logits, const torch::Tensor& labels);

// True when fit_temperature's result is at an end of the searched range: the data did not bound
// the temperature, and `loupe export` leaves the model uncalibrated (saying so) instead.
inline bool temperature_at_search_bound(double t) { return t <= kMinTemperature * 1.0001 || t >= kMaxTemperature * 0.9999; }

// Equal-width bins over the top-class confidence: bin b (0-based) holds confidences in
// (b / bins, (b + 1) / bins] (0 in bin 0).
struct ReliabilityBins {
  int bins = 15;
  std::vector<int64_t> count;
  std::vector<double> confidence;  // mean top-class probability per bin (0 for an empty bin)
  std::vector<double> accuracy;    // share of the bin's images whose top class is the label
  int64_t images = 0;
  double ece = 0;                  // sum_b count_b / images * |accuracy_b - confidence_b|
};

// probabilities [N, K] rows summing to 1 (K == 1: the sigmoid probability of class 1), labels [N].
ReliabilityBins reliability_bins(const torch::Tensor& probabilities, const torch::Tensor& labels, int bins = 15);
// Expected calibration error (Naeini et al. 2015; Guo et al. 2017): reliability_bins(...).ece.
double expected_calibration_error(const torch::Tensor& probabilities, const torch::Tensor& labels, int bins = 15);

// [SECTION] Out-of-distribution distance (Lee et al. 2018, "A simple unified framework for
// detecting out-of-distribution samples and adversarial attacks"): class-conditional Gaussians with
// one shared covariance on the penultimate features.
//
// The embedding e (D values) is projected onto the top `dims` principal components of the training
// embeddings, y = P (e - mean); the within-class covariance of y (pooled over classes) is shrunk
// towards a multiple of the identity (Ledoit-Wolf), Sigma; the distance is
//   min_k (y - m_k)^T Sigma^-1 (y - m_k),   m_k = the mean of class k's y.
// With Sigma = L L^T (Cholesky) and W = L^-1 it is a squared Euclidean distance, what the graph
// computes: z = (e - mean) @ projection, projection = (W P)^T, centers c_k = W m_k,
//   distance = min_k ||z - c_k||^2 = min_k (||z||^2 - 2 z.c_k + ||c_k||^2).

struct MahalanobisFit {
  int64_t embedding_dims = 0;       // D
  int64_t dims = 0;                 // d = min(max_dims, images - 1, D)
  int64_t images = 0;               // training embeddings fitted on
  std::vector<int64_t> classes;     // the class index of each row of class_means / centers
  double explained_variance = 0;    // share of the training embeddings' variance the d components keep
  double shrinkage = 0;             // Ledoit-Wolf shrinkage intensity in [0, 1]
  torch::Tensor mean;               // [D] float64
  torch::Tensor components;         // [d, D] float64, P (orthonormal rows)
  torch::Tensor class_means;        // [K', d] float64, m_k
  torch::Tensor covariance;         // [d, d] float64, Sigma (shrunk)
  torch::Tensor projection;         // [D, d] float64, (W P)^T
  torch::Tensor centers;            // [K', d] float64, c_k = W m_k
};

// embeddings [N, D], labels [N] in [0, num_classes). Classes without any training embedding are
// left out (K' <= num_classes). Throws Error(InvalidArgument) for fewer than 2 embeddings.
MahalanobisFit fit_mahalanobis(const torch::Tensor& embeddings, const torch::Tensor& labels, int64_t num_classes,
                               int64_t max_dims = 64);

// The distance of each embedding [N, D] -> [N] float64, computed directly from the definition
// (linear solves with Sigma, not through the whitened matrices the graph uses).
torch::Tensor mahalanobis_distance(const MahalanobisFit& fit, const torch::Tensor& embeddings);

// The q-quantile of `values` with linear interpolation between order statistics (numpy's default).
// Throws Error(InvalidArgument) when values is empty or q is outside [0, 1].
double quantile(std::vector<double> values, double q);
// The same for a tensor's values (named apart from at::quantile, which argument-dependent lookup finds).
double tensor_quantile(const torch::Tensor& values, double q);

}  // namespace loupe::exporter
