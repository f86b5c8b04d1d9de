// ONNX export of the model zoo, written from Loupe's own model definitions (LibTorch has no C++
// ONNX exporter), and its verification against LibTorch with ONNX Runtime.
//
//   auto model = loupe::models::create_model(config);          // + train::load_model_file(...)
//   loupe::exporter::ExportOptions options;
//   options.card.class_names = {"normal", "pneumonia"};
//   options.card.preprocess = spec;
//   onnx::ModelProto proto = loupe::exporter::export_onnx(*model, options);   // checked
//   loupe::exporter::write_onnx(proto, "model.onnx");
//   auto parity = loupe::exporter::verify_onnx(*model, loupe::inference::OrtSession("model.onnx"));
//   std::cout << parity.to_text();                             // max abs differences per output
//
// Or, for a training run folder: run_export() in run_export.h.
//
// [SECTION] The graph
// Opset 13 by default (13..17: what ONNX 1.12's checker knows; ONNX Runtime 1.30 runs them all).
// One input, "input" [batch, C, H, W] float32 (C, H, W fixed: the model card's input size; batch
// symbolic). Outputs, float32, by name:
//   logits         [batch, K]         always
//   probabilities  [batch, K]         softmax over the classes (sigmoid when K == 1)   (default on);
//                                     of logits / T with temperature scaling (ExportOptions::temperature:
//                                     a Div by the scalar initializer "temperature" before the Softmax)
//   embedding      [batch, D]         the penultimate features, the head Linear's input  (default on)
//   cam            [batch, K, h, w]   class activation maps: head weights x feature map, no bias, as
//                                     Classifier::class_activation_maps (only has_cam() models)
//   feature_map    [batch, C', h, w]  the last convolutional feature map                 (default off)
//   ood_distance   [batch]            out-of-distribution distance of the embedding (ExportOptions::ood,
//                                     ood_fit.h): Sub(embedding, ood.mean) -> MatMul(ood.projection)
//                                     = z; min over classes of ||z||^2 - 2 z.c_k + ||c_k||^2 as
//                                     ReduceSumSquare + MatMul(ood.centers_m2 = -2 C^T) + Add + Add
//                                     (ood.centers_sq) + ReduceMin. Images above the card's
//                                     ood.threshold are flagged.
// Batch norm is in eval form (running statistics), folded into the preceding convolution when
// fold_batch_norm (the default), else a BatchNormalization node. Dropout and StochasticDepth are
// identities. Weights are initializers named after their state_dict keys ("layer1.0.conv1.weight";
// folded ones keep the convolution's names).
//
// [SECTION] How modules become nodes (the block types of loupe/models/blocks.h)
//   Conv2d -> Conv (groups, pads, strides, dilations; zero padding only), BatchNorm2d ->
//   BatchNormalization, ReLU -> Relu, ReLU6 -> Clip(0, 6), SiLU -> x * Sigmoid(x), Sigmoid,
//   Hardsigmoid -> HardSigmoid(alpha 1/6, beta 0.5) (= relu6(x + 3) / 6), Hardswish -> HardSwish
//   (opset >= 14) or x * HardSigmoid(x), MaxPool2d -> MaxPool, AdaptiveAvgPool2d -> GlobalAveragePool
//   (output 1x1), nothing (output = input size), AveragePool (input a multiple of the output), else
//   two MatMuls with the exact averaging matrices; Flatten -> Flatten, Linear -> Gemm, Sequential
//   -> its children in order; BasicBlock, Bottleneck, InvertedResidual, SqueezeExcitation as
//   written out in blocks.h; LstmHead -> Reshape + Transpose to [h*w, batch, C], one ONNX LSTM per
//   LSTM layer (gates reordered from LibTorch's i,f,g,o to ONNX's i,o,f,c; B = [b_ih, b_hh]), last
//   step from Y_h. Any other module type is an Error(InvalidArgument) naming the type and its path.
#pragma once

#include <onnx/onnx_pb.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "loupe/export/ood_fit.h"
#include "loupe/export/onnx_file.h"
#include "loupe/inference/ort_session.h"
#include "loupe/models/zoo.h"

namespace loupe::exporter {

// What the exporter cannot read from the model itself. Everything else in the card (architecture,
// model config, input, outputs, weights hash, creation time, producer) is filled in by export_onnx.
struct CardInfo {
  std::string name;                          // default: the architecture
  std::string version = "1";
  std::string description;
  std::vector<std::string> class_names;      // default "class_0", ...; count must equal num_classes
  // Default: x / 255 at the model's input size, gray or RGB by in_channels. Must agree with the
  // model's in_channels and the export input size.
  std::optional<PreprocessSpec> preprocess;
  nlohmann::json training_data;              // see model_card.h; null when unknown
  nlohmann::json test_metrics;               // see model_card.h; null when unknown
  std::string intended_use = kDefaultIntendedUse;
  std::optional<IntendedImages> intended_images;  // the config's intended_images, if any
  std::string created_utc;                   // default: now
  // Extra entries of the card's "calibration" / "ood" objects (fitted_on, error rates, ...), merged
  // with what export_onnx writes itself (method, temperature; method, output, threshold, dims).
  // Used only with ExportOptions::temperature / ExportOptions::ood.
  nlohmann::json calibration;
  nlohmann::json ood;
};

// The out-of-distribution output: a fitted MahalanobisFit (ood_fit.h) and the distance above
// which an image is flagged.
struct OodOutput {
  MahalanobisFit fit;
  double threshold = 0;
};

struct ExportOptions {
  int opset = 13;
  int input_size = 0;              // square input side; 0 = the model's config().input_size
  bool fold_batch_norm = true;
  bool probabilities = true;
  bool embedding = true;
  bool cam = true;                 // added only where model.has_cam(); the card lists what exists
  bool feature_map = false;
  bool check = true;               // run onnx::checker and strict shape inference on the result
  // > 0: "probabilities" = softmax(logits / temperature) (needs probabilities); the card gets
  // "calibration". 0: no temperature scaling.
  double temperature = 0;
  // The "ood_distance" output and the card's "ood" entry (needs a model with >= 1 fitted class).
  std::optional<OodOutput> ood;
  // The card's self-test (shared/include/loupe/self_test.h): synthetic images from this seed, at
  // default_self_test_sizes() of the input, and LibTorch's logits, probabilities and OOD distance
  // for them. Whoever opens the file reruns it (loupe inspect --verify, loupe predict, the page).
  bool self_test = true;
  uint64_t self_test_seed = 20261203;
  double self_test_absolute_tolerance = 1e-3;   // logits, probabilities
  double self_test_relative_tolerance = 1e-3;   // the OOD distance, relative to max(1, |value|)
  CardInfo card;
};

// Builds the ONNX model of `model` (its eval-mode computation; the model's train/eval mode is left
// as it was). Throws Error(InvalidArgument) for an unsupported module (naming its type and path),
// an input size below the architecture's minimum, or card fields that disagree with the model;
// Error(InvalidSpec) when the checker rejects the graph (a bug: please report it).
onnx::ModelProto export_onnx(models::Classifier& model, const ExportOptions& options = {});

// A graph of the out-of-distribution nodes alone (the same nodes export_onnx appends): input
// "embedding" [batch, D] float32, output "ood_distance" [batch]. For tests and for checking a fit.
onnx::ModelProto ood_distance_graph(const MahalanobisFit& fit, int opset = 13);

// onnx::checker::check_model plus strict shape inference (declared output shapes must agree).
// Throws Error(InvalidSpec) with the checker's message.
void check_onnx(onnx::ModelProto& proto);

// Serialises atomically (PATH.tmp, then rename). Throws Error(Io) on failure.
void write_onnx(const onnx::ModelProto& proto, const std::string& path);
std::string serialize_onnx(const onnx::ModelProto& proto);

// SHA-256 (lower-case hex) of every initializer's raw_data, concatenated in graph order. Every
// initializer Loupe writes stores its data in raw_data (little-endian); an initializer in another
// field is an Error(InvalidArgument).
std::string weights_sha256(const onnx::ModelProto& proto);

// [SECTION] Verification: ONNX Runtime against LibTorch on the same inputs

struct ParityOptions {
  std::vector<int64_t> batch_sizes{2, 3};   // random N(0, 1) inputs of these batch sizes
  uint64_t seed = 0;
  std::vector<torch::Tensor> extra_inputs;  // e.g. preprocessed real images, [n, C, H, W]
  double tolerance = 1e-4;                  // logits and probabilities: max abs difference allowed
  double feature_tolerance = 1e-3;          // embedding, cam, feature_map, ood_distance: relative (see OutputParity)
  // What the export put into the graph: the reference probabilities are softmax(logits / T) when
  // temperature > 0; the reference ood_distance is mahalanobis_distance(*ood, LibTorch's embedding).
  // A model with an "ood_distance" output needs `ood`.
  double temperature = 0;
  std::optional<MahalanobisFit> ood;
};

struct OutputParity {
  std::string output;
  double max_abs_diff = 0;       // over every compared input batch
  double max_abs_reference = 0;  // largest |LibTorch value|, for scale
  // logits and probabilities: max_abs_diff <= tolerance (1e-4). The other outputs (embedding, cam,
  // feature_map, ood_distance) are unnormalised features of any magnitude whose float32 rounding grows with depth
  // and is not averaged away as in the logits (resnet50's feature map at 224x224: ~1e-4 relative;
  // on the logits, LibTorch float32 and ONNX Runtime are about equally far from LibTorch float64):
  // max_abs_diff <= feature_tolerance * max(1, max_abs_reference). An export bug gives differences
  // of the order of the values themselves.
  bool passed = false;
};

struct ParityReport {
  std::vector<OutputParity> outputs;
  std::vector<std::string> inputs;   // what was compared, e.g. "random [2, 3, 64, 64]"
  bool passed = false;
  double max_logits_diff() const;
  std::string to_text() const;       // one line per output
  nlohmann::json to_json() const;
};

// LibTorch's value of each of `names` for input x (eval mode and no grad are the caller's): logits,
// probabilities (softmax, or sigmoid for one class, of logits / temperature when temperature > 0),
// embedding, ood_distance (needs `ood`), feature_map, cam. What the exported graph must compute.
std::map<std::string, torch::Tensor> reference_outputs(models::Classifier& model, const torch::Tensor& x,
                                                       const std::vector<std::string>& names, double temperature,
                                                       const std::optional<MahalanobisFit>& ood);

// The self-test record for `card` (its preprocessing, outputs, ood): LibTorch's outputs for the
// synthetic images of `seed`, hashed. The model's train/eval mode is restored afterwards.
SelfTest make_self_test(models::Classifier& model, const ModelCard& card, const ExportOptions& options);

// Runs `session` and `model` (eval, no grad) on the same inputs and compares every output the
// session has that the exporter knows. The model's train/eval mode is restored afterwards.
ParityReport verify_onnx(models::Classifier& model, const inference::OrtSession& session, const ParityOptions& options = {});

}  // namespace loupe::exporter
