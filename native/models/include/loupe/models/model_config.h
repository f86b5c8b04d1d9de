// What model to build: the architecture name and its few knobs, as stored in a model card.
// This header does not include LibTorch, so the CLI can read and check configs cheaply.
//
//   auto config = loupe::models::ModelConfig::from_json(card["model"]);  // strict, throws Error(InvalidSpec)
//   auto model = loupe::models::create_model(config);                    // see zoo.h
//
// JSON form (every key but "architecture" optional; the simple_cnn keys only for simple_cnn):
//   {"architecture": "simple_cnn", "num_classes": 2, "in_channels": 3, "input_size": 64, "dropout": 0.5,
//    "conv_channels": [32, 64], "hidden_units": 128, "pooling": "flatten"}
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace loupe::models {

// How simple_cnn turns its last feature map into a vector.
enum class Pooling {
  Flatten,    // the seed-001 net: flatten C x h x w (the dense layer's width then depends on input_size)
  GlobalAvg,  // global average pooling to C (any input size; with hidden_units = 0 it supports CAM)
};

struct ModelConfig {
  std::string architecture;  // one of architectures()
  int num_classes = 2;       // logits per image; 1 is allowed (a single sigmoid logit)
  int in_channels = 3;       // 1 (gray) or 3 (RGB), any value in [1, 16] works
  // Square input side the model is built for. Only simple_cnn with Pooling::Flatten depends on it
  // (its dense layer size); the other architectures take any size at or above their minimum
  // (28 for all but vgg16, which needs 32) and this value is only checked against that minimum.
  int input_size = 224;
  // Rate of every dropout layer the architecture has: torchvision's positions, one rate. torchvision's
  // own defaults are 0.5 for vgg16, 0.2 for mobilenet_v2/v3 and efficientnet_b0, none for resnets;
  // resnets here have one dropout before `fc` (identity in eval, and at 0 identical to torchvision).
  double dropout = 0.2;

  // simple_cnn only (seed 001: conv 3x3x32 + ReLU + 2x2 max-pool, conv 3x3x64 + ReLU + pool, flatten,
  // one hidden dense layer, dropout, linear head).
  std::vector<int> conv_channels{32, 64};  // one 3x3 conv ("same" padding) + ReLU + 2x2 max-pool each
  int hidden_units = 128;                  // 0: no hidden layer (pooled features go straight to the head)
  Pooling pooling = Pooling::Flatten;

  // Throws Error(InvalidSpec) naming the offending field ("model.input_size: ...").
  void validate() const;

  nlohmann::json to_json() const;  // the simple_cnn keys are written only for simple_cnn
  // Strict: unknown keys, wrong types, out-of-range values and simple_cnn keys for another
  // architecture throw Error(InvalidSpec) naming the key. Missing keys take the defaults above,
  // except "architecture", which is required.
  static ModelConfig from_json(const nlohmann::json& json);

  bool operator==(const ModelConfig& other) const;
  bool operator!=(const ModelConfig& other) const { return !(*this == other); }
};

// The architecture names create_model() accepts (the CLI's --model values), in a stable order:
// simple_cnn, vgg16, resnet18, resnet50, mobilenet_v2, mobilenet_v3_large, efficientnet_b0, resnet50_lstm.
const std::vector<std::string>& architectures();
bool is_architecture(const std::string& name);
// "simple_cnn, vgg16, ..." for error messages.
std::string architecture_list();

// Smallest input side the architecture accepts under this config.
int min_input_size(const ModelConfig& config);

const char* to_string(Pooling pooling);

}  // namespace loupe::models
