// Calibrated confidence, fitted where the images are: temperature scaling (the fit `loupe export`
// runs on a run's validation split), the reliability diagram and ECE/NLL before and after with
// their intervals, operating points per class with sensitivity and specificity, and the site
// calibration that `loupe calibrate` (and the page) write into a model's card. Plain C++ on
// vectors, no LibTorch: the same code natively and in the browser.
//
//   std::vector<loupe::ResultRow> rows = ...;        // a labelled folder, predicted (results.h)
//   loupe::LabelledLogits data = loupe::labelled_logits(rows, card.class_names.size());
//   loupe::SiteCalibrationOptions options;
//   options.created_utc = "2026-12-04T10:00:00Z";
//   options.targets = {loupe::parse_operating_point_target("Pneumonia=0.95", loupe::TargetKind::sensitivity,
//                                                          card.class_names)};
//   loupe::SiteCalibrationResult site = loupe::calibrate_for_site(card, data, options);
//   std::cout << site.to_text();                      // bins, ECE/NLL before/after, operating points
//   std::vector<uint8_t> onnx = loupe::with_site_calibration(bytes.data(), bytes.size(), site, "model.onnx");
//
// [SECTION] Labelled logits
// [SECTION] Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks")
// [SECTION] Reliability bins, ECE and NLL with intervals
// [SECTION] Operating points
// [SECTION] Site calibration: the refit, the figures, the card record and the new model file
//
// Everything is computed in double from the float logits. A single-logit model (K == 1, sigmoid)
// is treated as the two-class logits [0, z] by the fit and the figures (softmax([0, z] / T)[1] ==
// sigmoid(z / T)); site calibration and operating points need named classes (K >= 2).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/metrics.h"
#include "loupe/model_card.h"
#include "loupe/results.h"

namespace loupe {

// [SECTION] Labelled logits

// The logits of N labelled images, row-major, as the model gave them.
struct LabelledLogits {
  size_t classes = 0;          // logits per image (K)
  std::vector<float> logits;   // N x K
  std::vector<int> labels;     // N, in [0, K) (0 or 1 when K == 1)
  size_t size() const { return labels.size(); }
  const float* row(size_t i) const { return logits.data() + i * classes; }
  // Appends one image; throws Error(InvalidArgument) for a label outside the classes.
  void add(const float* image_logits, int label);
};

// The predicted rows of `rows` that have a label and their logits (Prediction::logits).
LabelledLogits labelled_logits(const std::vector<ResultRow>& rows, size_t classes);

// [SECTION] Temperature scaling

// The range fit_temperature searches; a fit at either end means the data did not bound it (e.g.
// images all classified correctly with large margins push T towards 0).
inline constexpr double kMinTemperature = 0.01;
inline constexpr double kMaxTemperature = 100.0;

// Mean negative log-likelihood (natural log) of softmax(logits / T) at the labels; 0 for no images.
double nll_at_temperature(const LabelledLogits& data, double temperature);

// The T > 0 minimising nll_at_temperature. The NLL is convex in 1/T, so its derivative in 1/T is
// monotone: bisection on the sign of the derivative over log(1/T), to 1e-12 relative, within
// [kMinTemperature, kMaxTemperature]. Returns 1 when the logits carry no information (all equal).
// Throws Error(InvalidArgument) for no images.
double fit_temperature(const LabelledLogits& data);

// True when fit_temperature's result is at an end of the searched range: the data did not bound
// the temperature, and it is not applied (`loupe export` and the site calibration say so).
inline bool temperature_at_search_bound(double t) { return t <= kMinTemperature * 1.0001 || t >= kMaxTemperature * 0.9999; }

// [SECTION] Reliability bins, ECE and NLL with intervals

// Equal-width bins over the top-class confidence of softmax(logits / T): bin b (0-based) holds
// confidences in (b / bins, (b + 1) / bins] (0 in bin 0), as metrics.h's expected_calibration_error.
struct ReliabilityBins {
  int bins = 15;
  std::vector<int64_t> count;
  std::vector<double> confidence;  // mean top-class probability per bin (0 for an empty bin)
  std::vector<double> accuracy;    // share of the bin's images whose top class is the label
  int64_t images = 0;
  double ece = 0;                  // sum_b count_b / images * |accuracy_b - confidence_b|
  nlohmann::json to_json() const;  // {"bins", "count", "confidence", "accuracy", "images", "ece"}
};
ReliabilityBins reliability_bins(const LabelledLogits& data, double temperature, int bins = 15);

// One temperature's figures on a set of images.
struct CalibrationFigures {
  double temperature = 1;
  double ece = 0, nll = 0, accuracy = 0;  // accuracy of the largest probability
  Interval ece_interval, nll_interval;    // percentile intervals of the bootstrap
  ReliabilityBins bins;
};

// Two temperatures on the same images (the calibration in use and the refit), with paired
// stratified-bootstrap intervals (each resample draws, within every true class, as many images as
// the class has, with replacement; the same resamples for both temperatures, which are kept
// fixed: the intervals say how the figures vary with the images, not with the refit).
struct CalibrationComparison {
  CalibrationFigures before, after;
  Interval ece_change, nll_change;  // after - before
  BootstrapOptions bootstrap;
};
CalibrationComparison compare_temperatures(const LabelledLogits& data, double before, double after, int bins = 15,
                                           const BootstrapOptions& bootstrap = {});

// [SECTION] Operating points
// An operating point calls class c when its calibrated probability p_c (prediction.h's float
// probabilities) is at least a threshold. The threshold is chosen on labelled images from a
// target:
//   sensitivity s: the largest threshold that calls at least s of class c's images (so the
//                  sensitivity on these images is >= s, the specificity as high as it allows);
//   specificity q: the smallest threshold that leaves at least q of the other images below it;
//   threshold t:   t as given.
// Sensitivity and specificity on those images come with Wilson intervals. They are measured on the
// images the threshold was chosen on: optimistic for new images, more so the fewer they are.

enum class TargetKind { sensitivity, specificity, threshold };
const char* to_string(TargetKind kind);  // "sensitivity", "specificity", "threshold"

struct OperatingPointTarget {
  int class_index = -1;
  TargetKind kind = TargetKind::sensitivity;
  double value = 0.95;  // in (0, 1] for sensitivity/specificity, [0, 1] for a threshold
};

// "CLASS=VALUE" (the class named as in class_names, matched like folder names: case, '_', '-' and
// ' ' alike). Throws Error(InvalidArgument) naming the problem (no '=', an unknown class with the
// classes listed, a value that is not a number in range).
OperatingPointTarget parse_operating_point_target(const std::string& text, TargetKind kind,
                                                  const std::vector<std::string>& class_names);

struct OperatingPoint {
  int class_index = -1;
  std::string class_name;
  TargetKind kind = TargetKind::sensitivity;
  double target = 0;
  double threshold = 0;                  // p_c >= threshold calls class c
  int64_t positives = 0, true_positives = 0;  // images of class c; of them, called c
  int64_t negatives = 0, true_negatives = 0;  // the other images; of them, not called c
  double sensitivity = 0, specificity = 0;
  Interval sensitivity_interval, specificity_interval;  // Wilson, at `level`
  double level = 0.95;
  // {"class", "target": {"sensitivity": 0.95}, "threshold", "sensitivity", "sensitivity_interval",
  //  "specificity", "specificity_interval", "positives", "negatives", "level"}
  nlohmann::json to_json() const;
};

// Throws Error(InvalidArgument) when the target's class has no image (or no other class has one)
// in `data`, or the target is out of range.
OperatingPoint operating_point(const LabelledLogits& data, double temperature, const OperatingPointTarget& target,
                               double level = 0.95);

// [SECTION] Site calibration

// Fewer labelled images of any class than this and a site calibration is refused: one temperature
// and a threshold per class fitted on a handful of images say little, and a class with none cannot
// be checked at all.
inline constexpr int kMinSiteImagesPerClass = 10;

struct SiteCalibrationOptions {
  int min_images_per_class = kMinSiteImagesPerClass;  // >= 1
  int bins = 15;
  BootstrapOptions bootstrap;
  std::vector<OperatingPointTarget> targets;           // at most one per class
  std::string created_utc;   // when, ISO 8601 (the caller's clock: the page's or the CLI's)
  std::string site;          // an optional label, recorded as given; file and folder names are
                             // never recorded (they may name patients)
};

struct SiteCalibrationResult {
  int64_t images = 0;
  std::vector<int64_t> class_counts;          // labelled images per class
  double fitted_temperature = 0;              // what the fit found
  bool temperature_applied = false;           // false: the fit ran to a search bound; the
                                              // temperature in use is kept (note says so)
  std::string note;                           // why not applied ("" when applied)
  const char* replaced = "none";              // the calibration in use before: "site", "export", "none"
  CalibrationComparison comparison;           // before: the calibration in use; after: the new one
  std::vector<OperatingPoint> operating_points;  // on the probabilities of the new calibration
  nlohmann::json record;                      // the card's "site_calibration"
  ModelCard card;                             // the card with it
  std::string to_text() const;                // what `loupe calibrate` prints
};

// The refit for a site, as a pure function of the model's card and the site's labelled logits:
// refits the temperature, measures ECE/NLL and the reliability bins with the calibration in use and
// with the new one, chooses the operating points on the new probabilities, and builds the card
// record and the updated card (a site calibration already in the card is replaced; the export's
// calibration is kept). Throws Error(InvalidArgument) naming the problem: a model with one logit,
// logits of another width than the card's classes, and fewer than min_images_per_class labelled
// images of any class (with every class's count), e.g.
//   "site calibration needs at least 10 labelled images of every class: Covid-19 has 4 (No_findings 25,
//    Pneumonia 31)".
SiteCalibrationResult calibrate_for_site(const ModelCard& card, const LabelledLogits& data,
                                         const SiteCalibrationOptions& options);

// The model file (ONNX bytes) with the result's record as its card's "site_calibration": the rest
// of the card as the file has it, the graph, the weights (so the weights hash) and the self-test
// byte for byte (onnx_model.h with_model_card). The graph's "probabilities" output keeps the
// export's calibration; Loupe computes probabilities from the logits with the calibration in use.
std::vector<uint8_t> with_site_calibration(const uint8_t* onnx, size_t size, const SiteCalibrationResult& result,
                                           const std::string& what);

}  // namespace loupe
