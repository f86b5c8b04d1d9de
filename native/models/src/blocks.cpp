#include "loupe/models/blocks.h"

#include <algorithm>

#include "loupe/error.h"

namespace loupe::models {

namespace nn = torch::nn;

// [SECTION] Activations

torch::Tensor HardswishImpl::forward(torch::Tensor x) { return torch::hardswish(x); }

torch::Tensor HardsigmoidImpl::forward(torch::Tensor x) { return torch::hardsigmoid(x); }

nn::AnyModule make_activation(Activation activation) {
  switch (activation) {
    case Activation::ReLU: return nn::AnyModule(nn::ReLU());
    case Activation::ReLU6: return nn::AnyModule(nn::ReLU6());
    case Activation::Hardswish: return nn::AnyModule(Hardswish());
    case Activation::Hardsigmoid: return nn::AnyModule(Hardsigmoid());
    case Activation::SiLU: return nn::AnyModule(nn::SiLU());
    case Activation::Sigmoid: return nn::AnyModule(nn::Sigmoid());
    case Activation::None: break;
  }
  throw Error(ErrorCode::InvalidArgument, "make_activation: Activation::None has no module");
}

// [SECTION] StochasticDepth

StochasticDepthImpl::StochasticDepthImpl(double p) : p_(p) {}

torch::Tensor StochasticDepthImpl::forward(torch::Tensor x) {
  if (!is_training() || p_ <= 0.0) return x;
  const double survival = 1.0 - p_;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  auto noise = torch::empty(shape, x.options()).bernoulli_(survival);
  if (survival > 0.0) noise.div_(survival);
  return x * noise;
}

// [SECTION] Convolution helpers

SequentialBlock conv_norm_activation(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
                                     int64_t groups, Activation activation, double bn_eps, double bn_momentum) {
  SequentialBlock seq;
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, kernel_size)
                                .stride(stride)
                                .padding((kernel_size - 1) / 2)
                                .groups(groups)
                                .bias(false)));
  seq->push_back(nn::BatchNorm2d(nn::BatchNorm2dOptions(out_channels).eps(bn_eps).momentum(bn_momentum)));
  if (activation != Activation::None) seq->push_back(make_activation(activation));
  return seq;
}

int64_t make_divisible(double v, int64_t divisor, int64_t min_value) {
  if (min_value == 0) min_value = divisor;
  const auto rounded = static_cast<int64_t>(v + static_cast<double>(divisor) / 2.0) / divisor * divisor;
  int64_t new_v = std::max(min_value, rounded);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;  // do not round down by more than 10%
  return new_v;
}

// [SECTION] SqueezeExcitation

SqueezeExcitationImpl::SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels, Activation act,
                                             Activation scale_act)
    : activation_kind(act), scale_activation_kind(scale_act) {
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  fc1 = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, squeeze_channels, 1)));
  activation = make_activation(act);
  register_module("activation", activation.ptr());
  fc2 = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze_channels, channels, 1)));
  scale_activation = make_activation(scale_act);
  register_module("scale_activation", scale_activation.ptr());
}

torch::Tensor SqueezeExcitationImpl::forward(torch::Tensor x) {
  auto scale = avgpool->forward(x);
  scale = fc1->forward(scale);
  scale = activation.forward(scale);
  scale = fc2->forward(scale);
  scale = scale_activation.forward(scale);
  return scale * x;
}

// [SECTION] ResNet blocks

namespace {

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride) {
  nn::Sequential seq;
  seq->push_back(conv1x1(in, out, stride));
  seq->push_back(nn::BatchNorm2d(out));
  return seq;
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, bool with_downsample) {
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  relu = register_module("relu", nn::ReLU());
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  if (with_downsample) downsample = register_module("downsample", make_downsample(inplanes, planes * kExpansion, stride));
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  auto out = relu->forward(bn1->forward(conv1->forward(x)));
  out = bn2->forward(conv2->forward(out));
  const auto identity = downsample ? downsample->forward(x) : x;
  return relu->forward(out + identity);
}

BottleneckImpl::BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, bool with_downsample) {
  const int64_t width = planes;  // groups = 1, base_width = 64
  conv1 = register_module("conv1", conv1x1(inplanes, width, 1));
  bn1 = register_module("bn1", nn::BatchNorm2d(width));
  conv2 = register_module("conv2", conv3x3(width, width, stride));
  bn2 = register_module("bn2", nn::BatchNorm2d(width));
  conv3 = register_module("conv3", conv1x1(width, planes * kExpansion, 1));
  bn3 = register_module("bn3", nn::BatchNorm2d(planes * kExpansion));
  relu = register_module("relu", nn::ReLU());
  if (with_downsample) downsample = register_module("downsample", make_downsample(inplanes, planes * kExpansion, stride));
}

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  auto out = relu->forward(bn1->forward(conv1->forward(x)));
  out = relu->forward(bn2->forward(conv2->forward(out)));
  out = bn3->forward(conv3->forward(out));
  const auto identity = downsample ? downsample->forward(x) : x;
  return relu->forward(out + identity);
}

// [SECTION] InvertedResidual

InvertedResidualImpl::InvertedResidualImpl(nn::Sequential block_body, const std::string& body_name, bool residual,
                                           double stochastic_depth_prob)
    : use_residual(residual) {
  body = register_module(body_name, std::move(block_body));
  if (stochastic_depth_prob >= 0.0) {
    stochastic_depth = register_module("stochastic_depth", StochasticDepth(stochastic_depth_prob));
  }
}

torch::Tensor InvertedResidualImpl::forward(torch::Tensor x) {
  auto out = body->forward(x);
  if (!use_residual) return out;
  if (stochastic_depth) out = stochastic_depth->forward(out);
  return out + x;
}

// [SECTION] LstmHead

LstmHeadImpl::LstmHeadImpl(int64_t input_size, const std::vector<int64_t>& hidden_sizes)
    : hidden_sizes_(hidden_sizes) {
  if (hidden_sizes_.empty()) throw Error(ErrorCode::InvalidArgument, "LstmHead: needs at least one LSTM");
  int64_t in = input_size;
  for (size_t i = 0; i < hidden_sizes_.size(); ++i) {
    auto lstm = nn::LSTM(nn::LSTMOptions(in, hidden_sizes_[i]).batch_first(true));
    lstms.push_back(register_module("lstm" + std::to_string(i + 1), lstm));
    in = hidden_sizes_[i];
  }
}

torch::Tensor LstmHeadImpl::forward(torch::Tensor x) {
  // [N, C, h, w] -> [N, h*w, C]: one time step per feature-map position, row-major.
  auto seq = x.flatten(2).transpose(1, 2);
  for (auto& lstm : lstms) seq = std::get<0>(lstm->forward(seq));
  return seq.select(1, seq.size(1) - 1);
}

}  // namespace loupe::models
