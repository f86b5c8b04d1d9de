// ImageNet-pretrained weights for transfer learning, from the one ImageNet model reachable offline:
// TensorFlow Lite's uint8-quantised MobileNetV2 (mobilenet_v2_1.0_224_quant.tflite, 1001 classes,
// class 0 = "background", batch norm folded into the convolutions, ReLU6).
//
//   loupe::models::ModelConfig config;
//   config.architecture = "mobilenet_v2";
//   config.num_classes = 4;             // any: the head is loaded only for 1001 (or 1000) classes
//   config.in_channels = 1;             // 1 or 3 (gray: the first conv's RGB weights are summed)
//   auto model = loupe::models::create_model(config);
//   auto report = loupe::models::load_pretrained(*model, data_dir + "/pretrained/mobilenet_v2_1.0_224_quant.tflite");
//   // report.summary(): "52 convolutions (head left fresh) from mobilenet_v2_1.0_224_quant.tflite: 104 tensors, ..."
//   loupe::models::calibrate_batchnorm(*model, some_training_images);  // before training in train mode
//   model->set_backbone_trainable(false);   // then train the head (or fine-tune everything)
//
// The weights expect inputs in [-1, 1]: x / 255 then mean 0.5, std 0.5 (PreprocessSpec
// {"mean": [0.5], "std": [0.5]}), RGB (or gray with in_channels 1), 224 x 224. The file's input
// tensor says so: uint8 with scale 1/128 and zero point 128, i.e. real = pixel / 128 - 1, which is
// mean = std = 128/255 (0.502) on x / 255; 0.5 / 0.5 is the float original's (TF-slim) recipe and
// differs from it by less than one input quantisation step.
//
// [SECTION] How the quantised graph becomes mobilenet_v2's float parameters
//   * every weight and bias is dequantised: real = scale * (q - zero_point), per tensor or per
//     channel (QuantizationParameters.quantized_dimension); biases are int32 with
//     scale = input scale * weight scale (the file stores that scale with the bias tensor);
//   * the file's CONV_2D / DEPTHWISE_CONV_2D ops, in execution order, are the Conv2d modules of
//     mobilenet_v2 in registration order (features.0.0, features.1.conv.0.0, ...): 52 of them,
//     then the 1x1 "Logits" conv (or a FULLY_CONNECTED op) = classifier.1;
//   * layouts: conv weights OHWI -> OIHW, depthwise 1HWO -> O1HW, 1x1 logits [1001,1,1,1280] -> [1001,1280];
//   * batch norm was folded into the convs, so every BatchNorm2d after a conv is set to pass the folded
//     bias through: weight 1, bias = folded bias, running_mean 0, running_var = 1 - eps, which makes
//     (x - 0) / sqrt(running_var + eps) * 1 + bias exactly x + bias in eval mode;
//   * train mode is another matter: there BatchNorm2d normalises with the batch's statistics, which are
//     nothing like (0, 1) for folded convs (depthwise weights reach |w| ~ 56), so a train-mode forward
//     of the freshly loaded model has ~0 correlation with the pretrained one, and the running statistics
//     drift away within a few steps. calibrate_batchnorm() fixes that: it measures every BN's input on
//     real images and re-expresses the same eval function with those statistics (see there);
//   * in_channels 1: the first conv's weights are summed over R, G, B, so the gray model on a gray image
//     computes exactly what the RGB model computes on that image replicated to three channels;
//   * num_classes 1001: the head is loaded; 1000: rows 1..1000 (torchvision's ImageNet class order,
//     background dropped); any other count: the head keeps its fresh initialisation.
//
// [SECTION] What does not carry over exactly (the float model is not bit-identical to the .tflite)
//   * padding: TFLite's SAME padding on the five stride-2 3x3 convs (features.0, and the depthwise
//     convs of features.2, 4, 7, 14) pads 0 before and 1 after (top/left 0, bottom/right 1) on even
//     inputs; PyTorch's padding=1 pads 1 on both sides. The output size is the same, but the sampling
//     grid is shifted by one input pixel on each of those layers: 1 + 2 + 4 + 8 + 16 = 31 pixels of
//     the 224 input in all, about one cell of the final 7 x 7 map, whose border cells then see
//     different padding. Stride-1 layers are identical. Measured in test_pretrained.cpp on 14 images
//     (12 medical, 2 synthetic) against a reference run of the uint8 graph: with TFLite's padding the
//     float weights reach logit correlation 0.997 and 13/14 equal top-1 classes; with PyTorch's, 0.81
//     and 4/14 (these images are far from ImageNet, so their top classes are near ties). Transfer
//     features are not hurt (nearest-class-mean accuracy moved by -0.06 to +0.04, no consistent sign, on
//     five medical class sets), and fine-tuning
//     adapts to the shift; a frozen 1001-class ImageNet classifier would want TFLite's padding;
//   * quantisation: the .tflite also rounds activations to uint8 after every op; the float model
//     does not (it is the better model, and the one training needs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "loupe/models/zoo.h"

namespace loupe::models {

// [SECTION] A read-only view of a TFLite flatbuffer (the subset this loader needs, fully checked)

// TFLite's TensorType codes (schema.fbs).
enum class TfliteType : int8_t { Float32 = 0, Float16 = 1, Int32 = 2, UInt8 = 3, Int64 = 4, Int8 = 9 };

struct TfliteQuantization {
  std::vector<float> scale;          // empty: not quantised
  std::vector<int64_t> zero_point;   // same length as scale (or empty = 0)
  int32_t quantized_dimension = 0;   // the axis that per-channel scales run along
};

struct TfliteTensor {
  std::string name;
  std::vector<int32_t> shape;
  int8_t type = 0;                   // a TfliteType code (other codes are kept, and refused on use)
  std::vector<uint8_t> data;         // the constant's bytes (little-endian); empty for activations
  TfliteQuantization quantization;
};

// The builtin operator codes the loader and its tests look at (BuiltinOperator in schema.fbs).
enum class TfliteOp : int32_t {
  Add = 0, AveragePool2D = 1, Conv2D = 3, DepthwiseConv2D = 4, FullyConnected = 9,
  Reshape = 22, Softmax = 25, Mean = 40, Squeeze = 43,
};

struct TfliteOperator {
  int32_t opcode = -1;               // the builtin operator code (TfliteOp values and others)
  std::vector<int32_t> inputs;       // tensor indices; -1 = optional input absent
  std::vector<int32_t> outputs;
  // Conv2D, DepthwiseConv2D and AveragePool2D options (0 where the op has none).
  bool padding_same = false;         // SAME (true) or VALID
  int32_t stride_h = 0, stride_w = 0;
  int32_t dilation_h = 1, dilation_w = 1;
  int32_t depth_multiplier = 0;      // DepthwiseConv2D
  int32_t filter_h = 0, filter_w = 0;  // AveragePool2D
  int8_t fused_activation = 0;       // 0 none, 1 ReLU, 2 ReLU_N1_TO_1, 3 ReLU6
};

struct TfliteModel {
  uint32_t version = 0;
  std::string description;
  std::vector<TfliteTensor> tensors;       // subgraph 0
  std::vector<TfliteOperator> operators;   // subgraph 0, in execution order
  std::vector<int32_t> inputs, outputs;    // subgraph 0's input and output tensor indices
};

// Parses a .tflite file's bytes. Every offset, vector length, string and table is bounds-checked
// (flatbuffers::Verifier) before it is read. Throws Error(UnknownFormat) for a file that is not a
// TFLite flatbuffer (no "TFL3" identifier), Error(CorruptImage) for a truncated or inconsistent one
// (the message names the table and field), Error(EmptyInput) for zero bytes.
TfliteModel read_tflite(const uint8_t* data, size_t size);
// read_file + read_tflite; messages are prefixed with the path. Error(Io) when it cannot be read.
TfliteModel read_tflite_file(const std::string& path);

// The real values of a constant tensor, as float32 in the file's layout (shape = tensor.shape):
// float32 as is; uint8 / int8 / int32 as scale * (q - zero_point), per tensor or along
// quantized_dimension. Throws Error(InvalidArgument) naming the tensor for an unsupported type, a data
// size that does not match the shape, or scales that do not fit the shape.
torch::Tensor dequantize(const TfliteTensor& tensor);

// [SECTION] Loading into the zoo

struct PretrainedReport {
  std::string source;              // the file's name
  int64_t convolutions = 0;        // backbone convs loaded (52 for mobilenet_v2)
  int64_t tensors_loaded = 0;      // tensors taken from the file: a weight and a bias per conv (and head)
  bool head_loaded = false;        // false: the head keeps its fresh initialisation
  bool gray_input = false;         // in_channels 1: the first conv's RGB weights were summed
  double max_abs_weight = 0.0;     // largest |dequantised conv or head weight|
  double max_abs_bias = 0.0;       // largest |folded bias|
  // The file's input quantisation: real = input_scale * (pixel - input_zero_point).
  double input_scale = 0.0;
  int64_t input_zero_point = 0;
  // The exact PreprocessSpec normalisation on x / 255 (128/255 for both here; use 0.5 and 0.5, see top).
  double preprocess_mean = 0.0, preprocess_std = 1.0;

  std::string summary() const;     // one line for logs
};

// Overwrites `model`'s backbone (and head, see above) with the .tflite file's weights, converted as
// described at the top of this file. Supports model->config().architecture == "mobilenet_v2" with
// in_channels 1 or 3. Anything else throws Error(InvalidArgument) naming what does not fit: the
// architecture ("pretrained: mobilenet_v2_1.0_224_quant.tflite has 52 convolutions and a 1001-class
// head (mobilenet_v2 weights); resnet18 has 20 convolutions of other shapes and cannot take them: use
// mobilenet_v2"), the in_channels, or the first layer whose shape or stride differs ("convolution 1
// (MobilenetV2/Conv/Conv2D_Fold, [32, 3, 3, 3], stride 2) does not fit features.0.0.weight [16, 3, 3, 3],
// stride 2"). The model is left untouched when the file does not fit. Error(Io) for a missing file,
// the reader's errors for a bad one.
PretrainedReport load_pretrained(Classifier& model, const std::string& path);

// Re-expresses every BatchNorm2d of a mobilenet_v2 with statistics measured on `images` [N, C, H, W]
// (N >= 2, preprocessed like the training data; a few dozen training images are enough), keeping the
// eval-mode function unchanged: for each BN with input mean m and (biased) variance v per channel,
//   running_mean = m, running_var = v, weight' = weight * sqrt(v + eps) / sqrt(rv + eps),
//   bias' = bias + (m - rm) * weight / sqrt(rv + eps)            (rv, rm: the old running statistics).
// Then a train-mode forward on similar images normalises with batch statistics close to (m, v) and
// computes nearly the pretrained function, and fine-tuning with BN in train mode starts where the
// pretrained model is. Runs under NoGradGuard in eval mode and restores the model's mode. Returns the
// number of BatchNorm2d layers calibrated (52). Throws Error(InvalidArgument) for another
// architecture or images of the wrong shape.
int64_t calibrate_batchnorm(Classifier& model, const torch::Tensor& images);

}  // namespace loupe::models
