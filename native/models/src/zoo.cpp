// The architectures (torchvision's definitions, ported module by module) and the factory.
// Index:
//   [SECTION] Initialisation   torchvision's per-architecture weight inits
//   [SECTION] Classifier       shared methods (head, CAM, freezing)
//   [SECTION] PooledClassifier features -> [avgpool] -> flatten -> classifier Sequential
//   [SECTION] simple_cnn, vgg16, mobilenet_v2, mobilenet_v3_large, efficientnet_b0
//   [SECTION] resnet18, resnet50, resnet50_lstm
//   [SECTION] Factory and utilities
#include "loupe/models/zoo.h"

#include <cmath>
#include <unordered_set>

#include "loupe/error.h"

namespace loupe::models {

namespace nn = torch::nn;

// [SECTION] Initialisation

namespace {

enum class LinearInit {
  Default,      // PyTorch's (kaiming_uniform(a = sqrt(5)), bias U(+-1/sqrt(fan_in))): resnet, simple_cnn
  Normal001,    // N(0, 0.01), bias 0: vgg, mobilenet_v2, mobilenet_v3
  UniformOut,   // U(+-1/sqrt(out_features)), bias 0: efficientnet
};

// Conv2d: kaiming_normal_(fan_out, relu) and zero bias; BatchNorm2d: weight 1, bias 0 (as torchvision).
void init_torchvision(nn::Module& root, LinearInit linear_init) {
  torch::NoGradGuard no_grad;
  for (const auto& module : root.modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) nn::init::zeros_(conv->bias);
    } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    } else if (auto* linear = module->as<nn::Linear>()) {
      if (linear_init == LinearInit::Normal001) {
        nn::init::normal_(linear->weight, 0.0, 0.01);
        nn::init::zeros_(linear->bias);
      } else if (linear_init == LinearInit::UniformOut) {
        const double range = 1.0 / std::sqrt(static_cast<double>(linear->options.out_features()));
        nn::init::uniform_(linear->weight, -range, range);
        nn::init::zeros_(linear->bias);
      }
    }
  }
}

// Applies every module of `seq` except the last (the head) to x.
torch::Tensor apply_all_but_last(nn::Sequential& seq, torch::Tensor x) {
  auto it = seq->begin();
  for (size_t i = 0; i + 1 < seq->size(); ++i, ++it) x = it->forward(x);
  return x;
}

}  // namespace

// [SECTION] Classifier

torch::Tensor Classifier::forward(torch::Tensor x) { return head()->forward(embed(x)); }

torch::Tensor Classifier::class_activation_maps(const torch::Tensor& fm) {
  const auto linear = head();
  if (fm.dim() != 4 || fm.size(1) != linear->options.in_features()) {
    throw Error(ErrorCode::InvalidArgument,
                "class_activation_maps: expected a feature map [N, " + std::to_string(linear->options.in_features()) +
                    ", h, w], got " + std::to_string(fm.dim()) + " dimensions" +
                    (fm.dim() >= 2 ? " with " + std::to_string(fm.size(1)) + " channels" : std::string()));
  }
  const auto n = fm.size(0), h = fm.size(2), w = fm.size(3);
  return torch::matmul(linear->weight, fm.flatten(2)).view({n, linear->options.out_features(), h, w});
}

std::vector<torch::Tensor> Classifier::backbone_parameters() {
  std::unordered_set<const void*> head_params;
  for (const auto& p : head()->parameters()) head_params.insert(p.unsafeGetTensorImpl());
  std::vector<torch::Tensor> out;
  for (const auto& p : parameters()) {
    if (head_params.count(p.unsafeGetTensorImpl()) == 0) out.push_back(p);
  }
  return out;
}

void Classifier::set_backbone_trainable(bool trainable) {
  for (auto& p : backbone_parameters()) p.set_requires_grad(trainable);
  for (auto& p : head()->parameters()) p.set_requires_grad(true);
}

void Classifier::reset_head(int64_t num_classes) {
  if (num_classes < 1 || num_classes > 100000) {
    throw Error(ErrorCode::InvalidArgument,
                "reset_head: num_classes must be between 1 and 100000, got " + std::to_string(num_classes));
  }
  auto linear = head();
  const auto in_features = linear->options.in_features();
  const auto options = linear->weight.options();
  // set_data swaps the storage (and shape) under the same Parameter objects, so the module tree,
  // named_parameters() and any Sequential holding the head stay valid.
  linear->weight.set_data(torch::empty({num_classes, in_features}, options));
  linear->weight.mutable_grad() = torch::Tensor();
  if (linear->bias.defined()) {
    linear->bias.set_data(torch::empty({num_classes}, options));
    linear->bias.mutable_grad() = torch::Tensor();
  }
  linear->options.out_features(num_classes);
  linear->reset_parameters();
  config_.num_classes = static_cast<int>(num_classes);
}

namespace {

// [SECTION] PooledClassifier

// features -> [avgpool] -> flatten -> classifier, with the head the classifier's last Linear.
class PooledClassifier : public Classifier {
 public:
  using Classifier::Classifier;

  torch::Tensor feature_map(torch::Tensor x) override { return features->forward(x); }
  std::string feature_map_output() const override { return "features"; }
  torch::Tensor embed(torch::Tensor x) override { return pooled_embed(feature_map(x)); }
  nn::Linear head() override { return nn::Linear(classifier->ptr<nn::LinearImpl>(classifier->size() - 1)); }

 protected:
  // Registers the children in forward order. avgpool_size 0: no pooling module (flatten directly).
  void finish(nn::Sequential feature_layers, int64_t avgpool_size, nn::Sequential classifier_layers) {
    features = register_module("features", std::move(feature_layers));
    if (avgpool_size > 0) {
      avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(avgpool_size)));
    }
    flatten = register_module("flatten", nn::Flatten());
    classifier = register_module("classifier", std::move(classifier_layers));
  }

  torch::Tensor pooled_embed(torch::Tensor fm) {
    if (avgpool) fm = avgpool->forward(fm);
    return apply_all_but_last(classifier, flatten->forward(fm));
  }

  nn::Sequential features{nullptr};
  nn::AdaptiveAvgPool2d avgpool{nullptr};
  nn::Flatten flatten{nullptr};
  nn::Sequential classifier{nullptr};
};

// [SECTION] simple_cnn

class SimpleCnn : public PooledClassifier {
 public:
  explicit SimpleCnn(const ModelConfig& config) : PooledClassifier(config) {
    nn::Sequential layers;
    int64_t channels = config.in_channels;
    int64_t side = config.input_size;
    for (int width : config.conv_channels) {
      layers->push_back(nn::Conv2d(nn::Conv2dOptions(channels, width, 3).padding(1)));
      layers->push_back(nn::ReLU());
      layers->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
      channels = width;
      side /= 2;
    }
    const bool global = config.pooling == Pooling::GlobalAvg;
    const int64_t flat = global ? channels : channels * side * side;
    nn::Sequential head_layers;
    int64_t head_in = flat;
    if (config.hidden_units > 0) {
      head_layers->push_back(nn::Linear(flat, config.hidden_units));
      head_layers->push_back(nn::ReLU());
      head_in = config.hidden_units;
    }
    head_layers->push_back(nn::Dropout(config.dropout));
    head_layers->push_back(nn::Linear(head_in, config.num_classes));
    finish(layers, global ? 1 : 0, head_layers);
  }

  bool has_cam() const override { return config_.pooling == Pooling::GlobalAvg && config_.hidden_units == 0; }

  torch::Tensor embed(torch::Tensor x) override {
    if (config_.pooling == Pooling::Flatten &&
        (x.dim() != 4 || x.size(2) != config_.input_size || x.size(3) != config_.input_size)) {
      throw Error(ErrorCode::InvalidArgument,
                  "simple_cnn with pooling 'flatten' is built for " + std::to_string(config_.input_size) + "x" +
                      std::to_string(config_.input_size) + " inputs, got " +
                      (x.dim() == 4 ? std::to_string(x.size(2)) + "x" + std::to_string(x.size(3))
                                    : std::to_string(x.dim()) + "-D tensor"));
    }
    return PooledClassifier::embed(x);
  }
};

// [SECTION] vgg16

class Vgg16 : public PooledClassifier {
 public:
  explicit Vgg16(const ModelConfig& config) : PooledClassifier(config) {
    constexpr int64_t kPool = 0;
    const int64_t cfg[] = {64, 64, kPool, 128, 128, kPool, 256, 256, 256, kPool, 512, 512, 512, kPool,
                           512, 512, 512, kPool};
    nn::Sequential layers;
    int64_t channels = config.in_channels;
    for (int64_t v : cfg) {
      if (v == kPool) {
        layers->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
      } else {
        layers->push_back(nn::Conv2d(nn::Conv2dOptions(channels, v, 3).padding(1)));
        layers->push_back(nn::ReLU());
        channels = v;
      }
    }
    nn::Sequential head_layers(nn::Linear(512 * 7 * 7, 4096), nn::ReLU(), nn::Dropout(config.dropout),
                               nn::Linear(4096, 4096), nn::ReLU(), nn::Dropout(config.dropout),
                               nn::Linear(4096, config.num_classes));
    finish(layers, 7, head_layers);
    init_torchvision(*this, LinearInit::Normal001);
  }
};

// [SECTION] mobilenet_v2

class MobileNetV2 : public PooledClassifier {
 public:
  explicit MobileNetV2(const ModelConfig& config) : PooledClassifier(config) {
    struct Stage {
      int64_t t, c, n, s;
    };
    const Stage stages[] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                            {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t input_channel = make_divisible(32.0, 8);
    const int64_t last_channel = make_divisible(1280.0, 8);
    nn::Sequential layers;
    layers->push_back(conv_norm_activation(config.in_channels, input_channel, 3, 2, 1, Activation::ReLU6));
    for (const auto& stage : stages) {
      const int64_t output_channel = make_divisible(static_cast<double>(stage.c), 8);
      for (int64_t i = 0; i < stage.n; ++i) {
        const int64_t stride = i == 0 ? stage.s : 1;
        const int64_t hidden = input_channel * stage.t;
        nn::Sequential body;
        if (stage.t != 1) body->push_back(conv_norm_activation(input_channel, hidden, 1, 1, 1, Activation::ReLU6));
        body->push_back(conv_norm_activation(hidden, hidden, 3, stride, hidden, Activation::ReLU6));
        body->push_back(nn::Conv2d(nn::Conv2dOptions(hidden, output_channel, 1).bias(false)));
        body->push_back(nn::BatchNorm2d(output_channel));
        layers->push_back(InvertedResidual(body, "conv", stride == 1 && input_channel == output_channel));
        input_channel = output_channel;
      }
    }
    layers->push_back(conv_norm_activation(input_channel, last_channel, 1, 1, 1, Activation::ReLU6));
    nn::Sequential head_layers(nn::Dropout(config.dropout), nn::Linear(last_channel, config.num_classes));
    finish(layers, 1, head_layers);
    init_torchvision(*this, LinearInit::Normal001);
  }

  bool has_cam() const override { return true; }
};

// [SECTION] mobilenet_v3_large

class MobileNetV3Large : public PooledClassifier {
 public:
  explicit MobileNetV3Large(const ModelConfig& config) : PooledClassifier(config) {
    struct Bneck {
      int64_t input, kernel, expanded, out;
      bool use_se, use_hs;
      int64_t stride;
    };
    // torchvision's _mobilenet_v3_conf("mobilenet_v3_large"), width 1.0 (already multiples of 8).
    const Bneck settings[] = {
        {16, 3, 16, 16, false, false, 1},   {16, 3, 64, 24, false, false, 2},  {24, 3, 72, 24, false, false, 1},
        {24, 5, 72, 40, true, false, 2},    {40, 5, 120, 40, true, false, 1},  {40, 5, 120, 40, true, false, 1},
        {40, 3, 240, 80, false, true, 2},   {80, 3, 200, 80, false, true, 1},  {80, 3, 184, 80, false, true, 1},
        {80, 3, 184, 80, false, true, 1},   {80, 3, 480, 112, true, true, 1},  {112, 3, 672, 112, true, true, 1},
        {112, 5, 672, 160, true, true, 2},  {160, 5, 960, 160, true, true, 1}, {160, 5, 960, 160, true, true, 1},
    };
    constexpr double kEps = 0.001, kMomentum = 0.01;
    nn::Sequential layers;
    layers->push_back(
        conv_norm_activation(config.in_channels, settings[0].input, 3, 2, 1, Activation::Hardswish, kEps, kMomentum));
    for (const auto& s : settings) {
      const Activation act = s.use_hs ? Activation::Hardswish : Activation::ReLU;
      nn::Sequential body;
      if (s.expanded != s.input) body->push_back(conv_norm_activation(s.input, s.expanded, 1, 1, 1, act, kEps, kMomentum));
      body->push_back(conv_norm_activation(s.expanded, s.expanded, s.kernel, s.stride, s.expanded, act, kEps, kMomentum));
      if (s.use_se) {
        const int64_t squeeze = make_divisible(static_cast<double>(s.expanded / 4), 8);
        body->push_back(SqueezeExcitation(s.expanded, squeeze, Activation::ReLU, Activation::Hardsigmoid));
      }
      body->push_back(conv_norm_activation(s.expanded, s.out, 1, 1, 1, Activation::None, kEps, kMomentum));
      layers->push_back(InvertedResidual(body, "block", s.stride == 1 && s.input == s.out));
    }
    const int64_t last_in = 160, last_conv = 6 * last_in, last_channel = make_divisible(1280.0, 8);
    layers->push_back(conv_norm_activation(last_in, last_conv, 1, 1, 1, Activation::Hardswish, kEps, kMomentum));
    nn::Sequential head_layers(nn::Linear(last_conv, last_channel), Hardswish(), nn::Dropout(config.dropout),
                               nn::Linear(last_channel, config.num_classes));
    finish(layers, 1, head_layers);
    init_torchvision(*this, LinearInit::Normal001);
  }
};

// [SECTION] efficientnet_b0

class EfficientNetB0 : public PooledClassifier {
 public:
  explicit EfficientNetB0(const ModelConfig& config) : PooledClassifier(config) {
    struct MbConv {
      double expand_ratio;
      int64_t kernel, stride, input, out, layers;
    };
    const MbConv settings[] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                               {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                               {6, 3, 1, 192, 320, 1}};
    constexpr double kStochasticDepth = 0.2;
    int64_t total_blocks = 0;
    for (const auto& s : settings) total_blocks += s.layers;

    nn::Sequential layers;
    layers->push_back(conv_norm_activation(config.in_channels, settings[0].input, 3, 2, 1, Activation::SiLU));
    int64_t block_id = 0;
    for (const auto& s : settings) {
      SequentialBlock stage;
      for (int64_t i = 0; i < s.layers; ++i) {
        const int64_t input = i == 0 ? s.input : s.out;
        const int64_t stride = i == 0 ? s.stride : 1;
        const double sd_prob =
            kStochasticDepth * static_cast<double>(block_id) / static_cast<double>(total_blocks);
        const int64_t expanded = make_divisible(static_cast<double>(input) * s.expand_ratio, 8);
        nn::Sequential body;
        if (expanded != input) body->push_back(conv_norm_activation(input, expanded, 1, 1, 1, Activation::SiLU));
        body->push_back(conv_norm_activation(expanded, expanded, s.kernel, stride, expanded, Activation::SiLU));
        body->push_back(SqueezeExcitation(expanded, std::max<int64_t>(1, input / 4), Activation::SiLU,
                                          Activation::Sigmoid));
        body->push_back(conv_norm_activation(expanded, s.out, 1, 1, 1, Activation::None));
        stage->push_back(InvertedResidual(body, "block", stride == 1 && input == s.out, sd_prob));
        ++block_id;
      }
      layers->push_back(stage);
    }
    const int64_t last_in = settings[6].out, last_conv = 4 * last_in;
    layers->push_back(conv_norm_activation(last_in, last_conv, 1, 1, 1, Activation::SiLU));
    nn::Sequential head_layers(nn::Dropout(config.dropout), nn::Linear(last_conv, config.num_classes));
    finish(layers, 1, head_layers);
    init_torchvision(*this, LinearInit::UniformOut);
  }

  bool has_cam() const override { return true; }
};

// [SECTION] resnet18, resnet50, resnet50_lstm

// The ResNet trunk (conv1 .. layer4), registered first so that children stay in forward order.
class ResNetTrunk : public Classifier {
 public:
  ResNetTrunk(const ModelConfig& config, bool bottleneck, const std::vector<int64_t>& blocks)
      : Classifier(config), bottleneck_(bottleneck) {
    conv1 = register_module(
        "conv1", nn::Conv2d(nn::Conv2dOptions(config.in_channels, 64, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(64));
    relu = register_module("relu", nn::ReLU());
    maxpool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
    const int64_t planes[] = {64, 128, 256, 512};
    for (size_t i = 0; i < 4; ++i) {
      layers_.push_back(
          register_module("layer" + std::to_string(i + 1), make_layer(planes[i], blocks[i], i == 0 ? 1 : 2)));
    }
  }

  torch::Tensor feature_map(torch::Tensor x) override {
    x = maxpool->forward(relu->forward(bn1->forward(conv1->forward(x))));
    for (auto& layer : layers_) x = layer->forward(x);
    return x;
  }
  std::string feature_map_output() const override { return "layer4"; }

 protected:
  int64_t out_channels() const { return inplanes_; }

  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::ReLU relu{nullptr};
  nn::MaxPool2d maxpool{nullptr};

 private:
  nn::Sequential make_layer(int64_t planes, int64_t count, int64_t stride) {
    const int64_t expansion = bottleneck_ ? BottleneckImpl::kExpansion : BasicBlockImpl::kExpansion;
    nn::Sequential layer;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t block_stride = i == 0 ? stride : 1;
      const bool downsample = i == 0 && (stride != 1 || inplanes_ != planes * expansion);
      if (bottleneck_) layer->push_back(Bottleneck(inplanes_, planes, block_stride, downsample));
      else layer->push_back(BasicBlock(inplanes_, planes, block_stride, downsample));
      inplanes_ = planes * expansion;
    }
    return layer;
  }

  bool bottleneck_;
  int64_t inplanes_ = 64;
  std::vector<nn::Sequential> layers_;
};

class ResNet : public ResNetTrunk {
 public:
  ResNet(const ModelConfig& config, bool bottleneck, const std::vector<int64_t>& blocks)
      : ResNetTrunk(config, bottleneck, blocks) {
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
    flatten = register_module("flatten", nn::Flatten());
    dropout = register_module("dropout", nn::Dropout(config.dropout));
    fc = register_module("fc", nn::Linear(out_channels(), config.num_classes));
    init_torchvision(*this, LinearInit::Default);
  }

  bool has_cam() const override { return true; }
  torch::Tensor embed(torch::Tensor x) override {
    return dropout->forward(flatten->forward(avgpool->forward(feature_map(x))));
  }
  nn::Linear head() override { return fc; }

 private:
  nn::AdaptiveAvgPool2d avgpool{nullptr};
  nn::Flatten flatten{nullptr};
  nn::Dropout dropout{nullptr};
  nn::Linear fc{nullptr};
};

class ResNet50Lstm : public ResNetTrunk {
 public:
  explicit ResNet50Lstm(const ModelConfig& config) : ResNetTrunk(config, true, {3, 4, 6, 3}) {
    lstm = register_module("lstm", LstmHead(out_channels(), std::vector<int64_t>{32, 16, 8}));
    dropout = register_module("dropout", nn::Dropout(config.dropout));
    fc = register_module("fc", nn::Linear(lstm->output_size(), config.num_classes));
    init_torchvision(*this, LinearInit::Default);  // convs and batch norms; LSTM keeps PyTorch's init
  }

  torch::Tensor embed(torch::Tensor x) override { return dropout->forward(lstm->forward(feature_map(x))); }
  nn::Linear head() override { return fc; }

 private:
  LstmHead lstm{nullptr};
  nn::Dropout dropout{nullptr};
  nn::Linear fc{nullptr};
};

}  // namespace

// [SECTION] Factory and utilities

std::shared_ptr<Classifier> create_model(const ModelConfig& config) {
  if (!is_architecture(config.architecture)) {
    throw Error(ErrorCode::InvalidArgument,
                "unknown architecture '" + config.architecture + "'; expected one of " + architecture_list());
  }
  config.validate();
  const auto& name = config.architecture;
  if (name == "simple_cnn") return std::make_shared<SimpleCnn>(config);
  if (name == "vgg16") return std::make_shared<Vgg16>(config);
  if (name == "resnet18") return std::make_shared<ResNet>(config, false, std::vector<int64_t>{2, 2, 2, 2});
  if (name == "resnet50") return std::make_shared<ResNet>(config, true, std::vector<int64_t>{3, 4, 6, 3});
  if (name == "mobilenet_v2") return std::make_shared<MobileNetV2>(config);
  if (name == "mobilenet_v3_large") return std::make_shared<MobileNetV3Large>(config);
  if (name == "efficientnet_b0") return std::make_shared<EfficientNetB0>(config);
  if (name == "resnet50_lstm") return std::make_shared<ResNet50Lstm>(config);
  throw Error(ErrorCode::InvalidArgument, "create_model: architecture '" + name + "' is listed but not built");
}

int64_t count_parameters(const nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

int64_t count_trainable_parameters(const nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) total += p.numel();
  }
  return total;
}

void copy_state(const nn::Module& from, nn::Module& to) {
  torch::NoGradGuard no_grad;
  const auto copy_all = [](const torch::OrderedDict<std::string, torch::Tensor>& src,
                           torch::OrderedDict<std::string, torch::Tensor> dst, const char* kind) {
    if (src.size() != dst.size()) {
      throw Error(ErrorCode::InvalidArgument, std::string("copy_state: the models have different ") + kind +
                                                  " (" + std::to_string(src.size()) + " vs " +
                                                  std::to_string(dst.size()) + ")");
    }
    for (auto& item : dst) {
      const auto* source = src.find(item.key());
      if (source == nullptr || !source->sizes().equals(item.value().sizes())) {
        throw Error(ErrorCode::InvalidArgument,
                    std::string("copy_state: ") + kind + " '" + item.key() + "' is missing or differs in shape");
      }
      item.value().copy_(*source);
    }
  };
  copy_all(from.named_parameters(), to.named_parameters(), "parameters");
  copy_all(from.named_buffers(), to.named_buffers(), "buffers");
}

}  // namespace loupe::models
