// int8 models: static QDQ quantisation of an exported ONNX file, calibrated on training images and
// gated on the held-out test split (no Python: ONNX Runtime's quantisation tool is not available
// here, so the pass is written over the ONNX graph itself).
//
//   loupe::exporter::SplitFiles split = loupe::exporter::read_split_files("runs/x/split.json");
//   loupe::exporter::QuantizeOptions options;                      // percentile ranges, the gate
//   auto result = loupe::exporter::quantize_model_file("model.onnx", split, "model.int8.onnx", options);
//   std::cout << result.summary;       // calibration, gate figures, sizes; throws when the gate refuses
//
// Or `loupe quantize -m model.onnx -c config.json` (the split rebuilt from the training config) and
// `loupe export -r RUN --quantize int8` (the run's split.json).
//
// [SECTION] What becomes int8 (plan_qdq, apply_qdq)
// The network's body, every node the head's input depends on, is quantised; the rest stays float.
//   Conv, Gemm (alpha = beta = 1), MatMul with an initializer weight: weights int8, symmetric
//     (zero point 0), one scale per output channel (max |w| / 127); bias int32 with scale
//     input scale x weight scale, zero point 0. ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv
//     (QGemm, QLinearMatMul).
//   Activations: uint8, asymmetric, one scale and zero point per tensor, the range always holding 0
//     (zero padding stays exact). Each weighted op's input and output gets a QuantizeLinear ->
//     DequantizeLinear pair; so does a residual Add of two quantised tensors (QLinearAdd), and
//     MaxPool, Flatten, Reshape, Transpose and Identity of a quantised tensor pass it on with the
//     same scale (ONNX Runtime then drops their pairs and runs them on uint8).
//   A weighted op whose only consumer is Relu or Clip(0, hi) loses the activation: its output range
//     is [0, min(hi, calibrated max)], so the uint8 saturation is the activation (what ONNX Runtime's
//     own tool does; QLinearConv has no activation attribute).
// What stays float, and why:
//   the head (the Gemm/MatMul giving the logits, 0.2% of MobileNetV2's weights) and everything after
//     the body: its input is the "embedding" output and the OOD distance's input, and the "cam"
//     1x1 Conv reuses the head's weights, so that mean(cam) + bias == logits stays exact;
//   the out-of-distribution nodes: a squared distance of large terms that cancel, which uint8
//     rounding would distort (and the card's threshold is refitted on the int8 model's distances);
//   probabilities (Div by T, Softmax), GlobalAveragePool, activations other than Relu/Clip(0, hi).
// Opset 13 QuantizeLinear/DequantizeLinear (per-axis scales); the result passes onnx::checker and
// strict shape inference.
//
// [SECTION] Calibration (calibrate_qdq): activation ranges and bias correction
// The float model runs on the calibration images with every quantised tensor as an extra output:
//   min_max      the smallest and largest value seen;
//   percentile   the `percentile`-th and (100 - percentile)-th percentiles over every value of
//                every image (two passes: min/max, then a 4096-bin histogram), clipping rare
//                outliers so that the common values keep more of the 256 steps;
//   mse          the range [lo, hi] (lo <= 0 <= hi, on the histogram's bin edges) that minimises the
//                expected squared error over the calibration values: rounding, step^2 / 12 for each
//                value inside, plus clipping, (value - bound)^2 for each value outside.
//
// [SECTION] The gate (quantize_model_file)
// The float and the int8 model classify the test split (ONNX Runtime, the card's preprocessing).
// The int8 model is written only when its accuracy is at most max_accuracy_drop (1 point) below the
// float model's and its top class agrees on at least min_agreement (98%) of the test images;
// otherwise Error(InvalidArgument) with both figures, and nothing is written. (A drop, not a
// difference either way: an int8 model that classifies one more test image correctly, +1.03
// points on 97 images, is not refused for it; the agreement bounds how far it may differ.) The card of the int8
// file: precision "int8", the "quantization" record (model_card.h: method, calibration method and
// image count, both accuracies with their Wilson intervals, the agreement, the gate), the int8
// model's own test_metrics, its OOD threshold refitted on its validation distances (same quantile),
// a self-test recorded from ONNX Runtime on the int8 graph (tolerance self_test_*_tolerance), and
// the weights hash over the int8 initializers.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loupe/export/onnx_file.h"
#include "loupe/export/run_export.h"
#include "loupe/inference/ort_session.h"
#include "loupe/preprocess.h"
#include "loupe/self_test.h"

namespace loupe::exporter {

enum class RangeMethod { min_max, percentile, mse };
const char* to_string(RangeMethod method);             // "min_max", "percentile", "mse"
RangeMethod range_method_from_string(const std::string& name);  // Error(InvalidArgument) naming the choices

struct QuantizeOptions {
  // mse: on the chest model's validation split it gave the smallest differences to fp32 (docs/MODELS.md).
  RangeMethod range = RangeMethod::mse;
  double percentile = 99.9;             // with RangeMethod::percentile, in (50, 100]
  int weight_bits = 8;                  // 8: [-127, 127]; 7: [-63, 63] (no 16-bit overflow in any int8 kernel)
  bool bias_correction = true;          // QdqCalibration::output_shift taken off the biases
  int max_calibration_images = 1000;    // training images, spread evenly over the split's list; 0 = all
  int batch = 8;                        // images per ONNX Runtime call
  int threads = 0;                      // decoding and ONNX Runtime threads; 0 = every core
  double max_accuracy_drop = 0.01;      // int8 test accuracy >= float's - this
  double min_agreement = 0.98;          // share of test images with the same top class
  // The int8 file's self-test: ONNX Runtime's int8 outputs, compared within these (logits and
  // probabilities absolute; the OOD distance relative to max(1, |value|)).
  double self_test_absolute_tolerance = 0.02;
  double self_test_relative_tolerance = 0.02;
  bool progress = false;                // a line per step on stderr
};

// [SECTION] The pass

struct QdqPlan {
  std::vector<std::string> weighted_nodes;           // Conv/Gemm/MatMul nodes quantised, by name
  std::map<std::string, std::string> fused_activation;  // weighted node -> the Relu/Clip node it absorbs
  std::map<std::string, double> range_cap;           // tensor -> upper bound of its range (Clip's hi)
  std::vector<std::string> calibrated;               // tensors whose range is measured, in graph order
  std::map<std::string, std::string> same_range_as;  // tensor -> the tensor whose scale it shares
  std::string head;                                  // the node giving the logits (stays float)
};

// Which nodes and tensors become int8 in `fp32` (a graph `loupe export` wrote). Throws
// Error(InvalidArgument) when the graph has no logits output, its head cannot be found, or nothing
// in it can be quantised.
QdqPlan plan_qdq(const onnx::ModelProto& fp32);

struct TensorRange {
  float min = 0, max = 0;
};
using ActivationRanges = std::map<std::string, TensorRange>;

// What the float model does on the calibration images.
struct QdqCalibration {
  ActivationRanges ranges;  // of plan.calibrated
  // Weighted node -> per output channel, the mean over the images of (W_int8 - W) * x, x the
  // node's float input: the shift weight rounding adds to its output, which apply_qdq takes off the
  // bias (bias correction, Nagel et al. 2019, "Data-free quantization ...", measured rather than
  // derived from batch-norm statistics). Without it the early layers' errors are ~90% such shifts.
  std::map<std::string, std::vector<double>> output_shift;
  int64_t images = 0;       // read and used
  int64_t unreadable = 0;   // skipped
};

// Runs the float model over `images` (preprocessed with `spec`). Images that cannot be read are
// skipped and counted; throws Error(InvalidArgument) when none can be read.
QdqCalibration calibrate_qdq(const onnx::ModelProto& fp32, const QdqPlan& plan, const std::vector<std::string>& images,
                             const PreprocessSpec& spec, const QuantizeOptions& options);

// The int8 graph: `fp32` with the plan applied, the ranges turned into scales and (with
// options.bias_correction) the biases corrected. The card in its metadata is still the float
// model's (quantize_model_file writes the int8 card). Checked with onnx::checker and strict shape
// inference.
onnx::ModelProto apply_qdq(const onnx::ModelProto& fp32, const QdqPlan& plan, const QdqCalibration& calibration,
                           const QuantizeOptions& options);

// Node counts by op type ("QuantizeLinear": 70, "Conv": 52, ...), for reports and tests.
std::map<std::string, int> count_ops(const onnx::ModelProto& proto);

// A self-test whose expected outputs are what `session` gives (for a graph that LibTorch does not
// compute, like the int8 one): the synthetic images of `seed` at default_self_test_sizes(), the
// outputs logits, probabilities and the card's OOD output where the card lists them, hashed.
SelfTest record_self_test(const ModelCard& card, const inference::OrtSession& session, uint64_t seed,
                          double absolute_tolerance, double relative_tolerance);

// [SECTION] The whole step, with the gate

struct QuantizeGate {
  int64_t test_images = 0;          // classified by both models
  int64_t float_correct = 0, int8_correct = 0, agreeing = 0;
  double float_accuracy = 0, int8_accuracy = 0, agreement = 0;
  double max_probability_difference = 0;   // over the test images and classes
  bool passed = false;
  std::string to_text() const;      // two lines: the accuracies with their intervals, the agreement
};

struct QuantizeResult {
  std::string onnx_path, card_path;
  ModelCard card;                   // the int8 file's
  int64_t float_bytes = 0, file_bytes = 0;
  int64_t calibration_images = 0, unreadable_calibration_images = 0;
  QuantizeGate gate;
  SelfTestResult self_test;         // the int8 file's self-test, rerun from the written bytes
  std::map<std::string, int> ops;   // of the int8 graph
  std::string summary;              // what `loupe quantize` prints
};

// `out_path` empty: the float path with ".onnx" replaced by ".int8.onnx". Calibrates on
// split.train, gates on split.test, refits the OOD threshold on split.val (when the card has an
// OOD check and the split a validation part). Writes OUT.tmp, checks it (reader, weights hash,
// self-test with ONNX Runtime) and renames it; writes the card beside it (.card.json). Throws
// loupe::Error: a float file that is not a Loupe fp32 model, classes that differ from the
// split's, no readable test image, the gate (nothing written).
QuantizeResult quantize_model_file(const std::string& float_path, const SplitFiles& split, const std::string& out_path,
                                   const QuantizeOptions& options = {});

}  // namespace loupe::exporter
