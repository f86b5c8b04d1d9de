// The building blocks every zoo model is made of. An exporter (ONNX) walks a model's module tree and
// needs to know only these types:
//
//   LibTorch primitives   Conv2d, BatchNorm2d, ReLU, ReLU6, SiLU, Sigmoid, MaxPool2d, AdaptiveAvgPool2d,
//                         Flatten, Linear, Dropout (identity in eval), LSTM (only inside LstmHead);
//   torch::nn::Sequential applies its children "0", "1", ... in order (SequentialBlock below is the same);
//   the types below       two parameter-free activations, StochasticDepth (identity in eval), and four
//                         composites whose forward is written out next to each class.
//
// Submodule names follow torchvision's, so state_dict keys match theirs (see zoo.h).
#pragma once

#include <torch/nn.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace loupe::models {

// [SECTION] Activations LibTorch 1.13 has no module for

// y = x * relu6(x + 3) / 6   (torch::hardswish)
class HardswishImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(torch::Tensor x);
};
TORCH_MODULE(Hardswish);

// y = relu6(x + 3) / 6   (torch::hardsigmoid)
class HardsigmoidImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(torch::Tensor x);
};
TORCH_MODULE(Hardsigmoid);

enum class Activation { None, ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, Sigmoid };

// A fresh module for `activation` (None is invalid here).
torch::nn::AnyModule make_activation(Activation activation);

// [SECTION] Regularisation

// torchvision.ops.StochasticDepth(p, "row"): in training, each sample's residual branch is dropped
// with probability p and the survivors scaled by 1 / (1 - p); in eval (and for p == 0) the identity.
class StochasticDepthImpl : public torch::nn::Module {
 public:
  explicit StochasticDepthImpl(double p);
  torch::Tensor forward(torch::Tensor x);
  double p() const { return p_; }

 private:
  double p_;
};
TORCH_MODULE(StochasticDepth);

// [SECTION] Convolution helpers

// A torch::nn::Sequential with a plain forward(Tensor), so that it can sit inside another Sequential
// (LibTorch's AnyModule cannot hold Sequential's templated forward). Exporters treat it as a Sequential
// (module->as<torch::nn::Sequential>() finds it).
class SequentialBlockImpl : public torch::nn::SequentialImpl {
 public:
  using torch::nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return torch::nn::SequentialImpl::forward(std::move(x)); }
};
TORCH_MODULE(SequentialBlock);

// torchvision's Conv2dNormActivation as a SequentialBlock: "0" Conv2d (no bias, padding (k - 1) / 2),
// "1" BatchNorm2d, and "2" the activation unless it is None.
SequentialBlock conv_norm_activation(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                                     int64_t stride, int64_t groups, Activation activation,
                                     double bn_eps = 1e-5, double bn_momentum = 0.1);

// torchvision's _make_divisible: round v to the nearest multiple of divisor, not below min_value
// (default: divisor) and not more than 10% below v.
int64_t make_divisible(double v, int64_t divisor, int64_t min_value = 0);

// [SECTION] Composite blocks

// torchvision.ops.SqueezeExcitation. Children: avgpool, fc1 (1x1 Conv2d), activation, fc2, scale_activation.
//   forward(x) = x * scale_activation(fc2(activation(fc1(avgpool(x)))))
// MobileNetV3: activation ReLU, scale Hardsigmoid. EfficientNet: activation SiLU, scale Sigmoid.
class SqueezeExcitationImpl : public torch::nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels, Activation activation,
                        Activation scale_activation);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Conv2d fc1{nullptr};
  torch::nn::AnyModule activation;
  torch::nn::Conv2d fc2{nullptr};
  torch::nn::AnyModule scale_activation;
  Activation activation_kind;
  Activation scale_activation_kind;
};
TORCH_MODULE(SqueezeExcitation);

// torchvision.models.resnet.BasicBlock (ResNet-18/34). Children: conv1, bn1, relu, conv2, bn2, [downsample].
//   forward(x) = relu(bn2(conv2(relu(bn1(conv1(x))))) + (downsample ? downsample(x) : x))
// conv1 is 3x3 with the block's stride, conv2 3x3; downsample is Sequential("0" 1x1 Conv2d with the
// stride, "1" BatchNorm2d).
class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, bool with_downsample);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};  // null when the shortcut is the identity
};
TORCH_MODULE(BasicBlock);

// torchvision.models.resnet.Bottleneck (ResNet V1.5, stride on the 3x3). Children: conv1, bn1, conv2,
// bn2, conv3, bn3, relu, [downsample].
//   forward(x) = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + (downsample ? downsample(x) : x))
class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, bool with_downsample);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::Conv2d conv3{nullptr};
  torch::nn::BatchNorm2d bn3{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

// The inverted residual of MobileNetV2 (body named "conv"), MobileNetV3 ("block") and EfficientNet's
// MBConv ("block", plus a "stochastic_depth" child). The body is a Sequential of conv_norm_activation
// blocks, possibly a SqueezeExcitation, and for MobileNetV2 a bare Conv2d + BatchNorm2d projection.
//   forward(x) = use_residual ? stochastic_depth(body(x)) + x : body(x)
class InvertedResidualImpl : public torch::nn::Module {
 public:
  // stochastic_depth_prob < 0: no stochastic_depth child (MobileNets).
  InvertedResidualImpl(torch::nn::Sequential body, const std::string& body_name, bool use_residual,
                       double stochastic_depth_prob = -1.0);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Sequential body{nullptr};
  StochasticDepth stochastic_depth{nullptr};  // null for the MobileNets
  bool use_residual;
};
TORCH_MODULE(InvertedResidual);

// Seed 003's recurrent head. Children: lstm1, lstm2, lstm3 (batch-first torch::nn::LSTM, one layer each,
// hidden sizes 32, 16, 8 by default).
//   forward(x [N, C, h, w]) = lstm3(lstm2(lstm1(s)))[:, -1, :] with s = x.flatten(2).transpose(1, 2),
// i.e. the h*w feature-map positions in row-major order are the time steps, each a C-vector; every
// LSTM returns its whole output sequence to the next (Keras return_sequences=True) and the last one's
// final time step is the result [N, hidden_sizes.back()].
class LstmHeadImpl : public torch::nn::Module {
 public:
  LstmHeadImpl(int64_t input_size, const std::vector<int64_t>& hidden_sizes);
  torch::Tensor forward(torch::Tensor x);
  int64_t output_size() const { return hidden_sizes_.back(); }

  std::vector<torch::nn::LSTM> lstms;

 private:
  std::vector<int64_t> hidden_sizes_;
};
TORCH_MODULE(LstmHead);

}  // namespace loupe::models
