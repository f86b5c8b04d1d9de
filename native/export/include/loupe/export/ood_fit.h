// The out-of-distribution check of an exported classifier, fitted by `loupe export` on a run's own
// split (run_export.cpp) and carried by the ONNX graph (onnx_export.h: the "ood_distance" output),
// and its threshold, estimated so that the false-alarm rate it states holds (split-conformal).
// Temperature scaling, which export fits beside it, is the shared core's (loupe/calibration.h).
//
//   auto fit = loupe::exporter::fit_mahalanobis(train_embeddings, train_labels, K);   // [N, D] float
//   torch::Tensor d = loupe::exporter::mahalanobis_distance(fit, val_embeddings);      // [N] float64
//   auto estimate = loupe::exporter::estimate_ood_threshold(train_embeddings, train_labels, groups, K,
//                                                           fit.dims, d, {});
//   double threshold = estimate.conformal.threshold;   // flags ~5% of new in-distribution images
//
// [SECTION] Out-of-distribution distance
// [SECTION] The threshold: split-conformal, on distances of images the fit did not see
//
// Everything is computed in float64 on the CPU.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/metrics.h"

namespace loupe::exporter {

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

// [SECTION] The threshold: split-conformal, on distances of images the fit did not see
//
// A percentile of the validation distances flags about the stated share of new images only when
// there are many of them; 97 validation images left the old 95th percentile resting on the 5
// largest. Split-conformal (Vovk et al. 2005; Angelopoulos & Bates 2021): with n distances of
// in-distribution images the fit did not see, exchangeable with a new image's, the threshold
// t = the k-th smallest, k = ceil((n + 1)(1 - alpha)), flags a new in-distribution image with
// probability at most alpha; given the n distances, the false-alarm rate is distributed as
// Beta(n + 1 - k, k), whose central interval the card states. More distances may come from the
// training images by cross-fitting: each fold's distances under a fit on the other folds (whole
// patients per fold, so a patient's other images do not make its distances small). Cross-fitting
// removes the Mahalanobis fit's own optimism, not the network's: the network was trained on those
// images, and a network that fits them closely gives them smaller distances than new images (the
// leukemia model: 7.6% of its validation images, 4.6% of its training images beyond a threshold
// set on both). What matters is the tail: a rank test on the whole distributions did not see it
// (Mann-Whitney p = 0.21 there). So the training distances are used only when, beyond the
// threshold set on all distances, the share of validation distances and the share of training
// distances agree as far as a two-sided two-proportion test can tell (p >= 0.05); otherwise the
// threshold rests on the validation distances alone, and the card says which and why.

// Beta(a, b)'s p-quantile (a, b > 0, p in [0, 1]): bisection on the regularized incomplete beta
// function (a continued fraction, Lentz's method), to 1e-12.
double beta_quantile(double p, double a, double b);

struct ConformalThreshold {
  double threshold = 0;
  double alpha = 0.05;            // the false-alarm rate aimed at
  int64_t distances = 0;          // n
  int64_t rank = 0;               // k: the threshold is the k-th smallest distance
  double false_alarm_rate = 0;    // (n + 1 - k) / (n + 1), its expectation (<= alpha)
  Interval false_alarm_interval;  // central `level` interval of Beta(n + 1 - k, k)
  double level = 0.95;
};
// Throws Error(InvalidArgument) when alpha is outside (0, 1), a distance is not finite, or there
// are too few distances for alpha (k > n: fewer than 1 / alpha - 1).
ConformalThreshold conformal_threshold(std::vector<double> distances, double alpha, double level = 0.95);

// Folds for cross-fitting: whole groups (a patient's images; "" = an image alone) dealt per class
// (a group counts for its most frequent label), in seeded order, to `folds` folds in turn; as
// `loupe cv` deals its folds. labels in [0, K).
std::vector<int> assign_folds(const std::vector<int64_t>& labels, const std::vector<std::string>& groups, int folds,
                              uint64_t seed);

// Each embedding's distance under a fit (fit_mahalanobis, max_dims) on the embeddings of the other
// folds: [N] float64. Throws when a fold leaves fewer than 2 embeddings to fit on.
torch::Tensor cross_fitted_distances(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                     const std::vector<int>& fold_of, int64_t num_classes, int64_t max_dims);

struct OodThresholdOptions {
  double alpha = 0.05;  // stated false-alarm rate
  int folds = 10;       // cross-fitting folds over the training embeddings (0: validation only)
  uint64_t seed = 42;   // fold order
  double level = 0.95;  // of the false-alarm interval
  double exchangeable_p = 0.05;  // training distances join only with a tail test's p at least this
};

// The two-sided p-value of the two-proportion z-test (pooled) of a of n1 against b of n2; 1 when
// the pooled share is 0 or 1 (nothing to tell apart).
double two_proportion_p(int64_t a, int64_t n1, int64_t b, int64_t n2);

// Whether the training distances have the validation distances' tail: the shares of each beyond
// `threshold` (the one set on both) and the two-proportion test's p.
struct ExchangeabilityTest {
  double threshold = 0;
  int64_t validation_beyond = 0, validation = 0, training_beyond = 0, training = 0;
  double p_value = 1;
};
ExchangeabilityTest tail_exchangeability(const std::vector<double>& validation, const std::vector<double>& training,
                                         double threshold);

struct OodThresholdEstimate {
  ConformalThreshold conformal;
  int64_t cross_fitted = 0;   // training distances (out-of-fold) computed
  bool training_used = false; // ... and used for the threshold (exchangeable with validation)
  ExchangeabilityTest exchangeability;  // validation vs cross-fitted training distances
  int64_t validation = 0;     // validation distances (under the full fit)
  int folds = 0;
  bool grouped = false;       // folds kept groups whole
  double val_quantile = 0;    // the validation distances' own (1 - alpha) quantile (the old rule), for comparison
  double requested_alpha = 0; // conformal.alpha is larger when there are too few distances for it
                              // (then 1 / (n + 1): the threshold is the largest distance)
  // The card's "ood" keys for the threshold: threshold, threshold_method, threshold_fitted_on,
  // alpha, calibration_distances, threshold_rank, false_alarm_rate, false_alarm_interval,
  // false_alarm_interval_method, cross_fit_folds, cross_fit_exchangeability.
  nlohmann::json card_fields() const;
  std::string summary() const;  // one line, for `loupe export` and the log
};

// The threshold from the validation distances under the full fit and, where they are exchangeable
// with them (above), the cross-fitted distances of the training embeddings the Mahalanobis fit
// used (folds by `groups`, "" each: none; folds = 0: none).
OodThresholdEstimate estimate_ood_threshold(const torch::Tensor& train_embeddings, const torch::Tensor& train_labels,
                                            const std::vector<std::string>& train_groups, int64_t num_classes,
                                            int64_t max_dims, const torch::Tensor& val_distances,
                                            const OodThresholdOptions& options = {});

}  // namespace loupe::exporter
