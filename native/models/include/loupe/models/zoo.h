// The model zoo: every classifier the papers use, built natively with LibTorch.
//
//   loupe::models::ModelConfig config;
//   config.architecture = "resnet18";   // or ModelConfig::from_json(card["model"]); names: architectures()
//   config.num_classes = 2;
//   config.in_channels = 1;             // gray X-rays
//   auto model = loupe::models::create_model(config);
//   torch::Tensor logits = model->forward(x);          // x [N, 1, H, W] -> [N, 2]
//   if (model->has_cam()) {                            // CAM: head weights x last feature map
//     torch::Tensor maps = model->class_activation_maps(model->feature_map(x));  // [N, 2, h, w]
//   }
//   model->set_backbone_trainable(false);              // transfer learning: train the head only
//   model->reset_head(4);                              // ... or re-initialise it for 4 classes
//
// [SECTION] Architectures (torchvision's definitions: layer order, channel rounding, SE widths, inits)
//   simple_cnn          seed 001: [Conv2d 3x3 "same" + ReLU + MaxPool2d 2x2] per conv_channels entry,
//                       flatten (or global average pool), [Linear hidden_units + ReLU], Dropout, Linear.
//   vgg16               torchvision vgg16 (no batch norm): features, avgpool 7x7, classifier (3 Linear).
//   resnet18, resnet50  torchvision resnet18 / resnet50 (V1.5), plus a Dropout before fc (rate `dropout`).
//   mobilenet_v2        torchvision mobilenet_v2 (width 1.0).
//   mobilenet_v3_large  torchvision mobilenet_v3_large (BatchNorm eps 0.001, momentum 0.01).
//   efficientnet_b0     torchvision efficientnet_b0 (stochastic depth 0.2, linear in block index).
//   resnet50_lstm       seed 003: the resnet50 trunk up to layer4, then LstmHead (the 7x7 positions of
//                       the 2048-channel map as 49 time steps -> LSTM 32 -> LSTM 16 -> LSTM 8, last
//                       step), Dropout, Linear.
//
// [SECTION] How forward() maps to building blocks (for exporters)
// A model's top-level children, in registration order (named_children()), composed in that order give
// forward(): logits = child_k(... child_1(child_0(x))). Every child is a primitive, a Sequential or a
// composite from blocks.h. The last child is the head Linear, or a Sequential ending in it. The child
// named feature_map_output() produces feature_map(); the input of the head Linear is embed().
//   simple_cnn          features, [avgpool], flatten, classifier (Sequential, last "Linear" = head)
//   vgg16               features, avgpool, flatten, classifier (head = classifier.6)
//   resnet18/50         conv1, bn1, relu, maxpool, layer1..layer4 (Sequentials of BasicBlock/Bottleneck),
//                       avgpool, flatten, dropout, fc (head)
//   mobilenet_v2        features, avgpool, flatten, classifier (Dropout, Linear = head)
//   mobilenet_v3_large  features, avgpool, flatten, classifier (Linear, Hardswish, Dropout, Linear = head)
//   efficientnet_b0     features (features.1..7 are Sequentials of InvertedResidual), avgpool, flatten,
//                       classifier (Dropout, Linear = head)
//   resnet50_lstm       conv1, bn1, relu, maxpool, layer1..layer4, lstm (LstmHead), dropout, fc (head)
// Dropout and StochasticDepth are identities in eval mode (the mode an export uses).
//
// [SECTION] Parameter names
// state_dict keys equal torchvision's for the six torchvision architectures (e.g. "features.0.0.weight",
// "layer1.0.conv1.weight", "features.1.0.block.2.fc1.weight", "classifier.1.bias"), so ImageNet weights
// map by name (the first conv differs in shape when in_channels != 3). The extra parameter-free
// children (avgpool, flatten, dropout, relu, activations) add no keys.
#pragma once

#include <torch/nn.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loupe/models/blocks.h"
#include "loupe/models/model_config.h"

namespace loupe::models {

class Classifier : public torch::nn::Module {
 public:
  explicit Classifier(ModelConfig config) : config_(std::move(config)) {}
  ~Classifier() override = default;

  const ModelConfig& config() const { return config_; }

  // Logits [N, num_classes] for x [N, in_channels, H, W]: head()(embed(x)).
  virtual torch::Tensor forward(torch::Tensor x);
  // Penultimate embedding [N, D], the input of the final Linear (D = head()->options.in_features()).
  virtual torch::Tensor embed(torch::Tensor x) = 0;

  // True when the model ends in global average pooling + (dropout +) the head Linear, so that class
  // activation maps are exact: in eval, head(mean_hw(feature_map(x))) == forward(x). True for resnet18,
  // resnet50, mobilenet_v2, efficientnet_b0, and simple_cnn with pooling global_avg and hidden_units 0.
  virtual bool has_cam() const { return false; }
  // The last convolutional feature map [N, C, h, w] (every architecture has one; for vgg16,
  // mobilenet_v3_large and resnet50_lstm it is not followed directly by pooling + head, so no CAM).
  virtual torch::Tensor feature_map(torch::Tensor x) = 0;
  // Name of the top-level child whose output is feature_map() ("layer4", "features").
  virtual std::string feature_map_output() const = 0;
  // CAM for every class from a feature map: [N, num_classes, h, w] = sum_c W[k, c] * fm[n, c, y, x]
  // (no bias; its spatial mean plus the head bias equals the logits when has_cam()).
  torch::Tensor class_activation_maps(const torch::Tensor& feature_map);

  // The final Linear layer (shares parameters with the model).
  virtual torch::nn::Linear head() = 0;
  // Every parameter except the head's, in named_parameters() order.
  virtual std::vector<torch::Tensor> backbone_parameters();
  // requires_grad on/off for backbone_parameters(); the head stays trainable. (BatchNorm running
  // statistics still update in train mode: put the backbone in eval() too to freeze them.)
  void set_backbone_trainable(bool trainable);
  // Re-initialise the head in place for num_classes outputs (PyTorch's default Linear init). The
  // parameters keep their identity, so build optimizers after calling this.
  void reset_head(int64_t num_classes);

 protected:
  ModelConfig config_;
};

// Builds an architecture with freshly initialised weights. Unknown architecture ->
// Error(InvalidArgument) listing the valid names; other invalid fields -> Error(InvalidSpec).
std::shared_ptr<Classifier> create_model(const ModelConfig& config);

// Number of parameter elements (all, or only those with requires_grad).
int64_t count_parameters(const torch::nn::Module& module);
int64_t count_trainable_parameters(const torch::nn::Module& module);

// Copies every parameter and buffer of `from` into `to` (same architecture and config), e.g. to keep
// the best epoch's weights. LibTorch's clone() needs Cloneable modules; the zoo's are not.
void copy_state(const torch::nn::Module& from, torch::nn::Module& to);

}  // namespace loupe::models
