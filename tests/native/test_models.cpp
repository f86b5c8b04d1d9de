// Model zoo: torchvision's parameter counts, shapes, the CAM identity, the exporter's view of the
// module tree, gradients, freezing, and the config's JSON contract.
#include "catch_torch.h"  // first: LibTorch, then Catch (see there)

#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "loupe/error.h"
#include "loupe/models/zoo.h"

using namespace loupe::models;
using Catch::Matchers::Contains;

namespace {

ModelConfig make_config(const std::string& architecture, int num_classes = 3, int in_channels = 3,
                        int input_size = 64) {
  ModelConfig config;
  config.architecture = architecture;
  config.num_classes = num_classes;
  config.in_channels = in_channels;
  config.input_size = input_size;
  return config;
}

// max |a - b| relative to the larger of max |b| and 1.
double relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(1.0, b.abs().max().item<double>());
  return (a - b).abs().max().item<double>() / scale;
}

bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

// What an exporter does: apply one top-level child, knowing only the block types of blocks.h and
// LibTorch's primitives. Throws on a type it does not know, which fails the test.
torch::Tensor apply_child(const std::shared_ptr<torch::nn::Module>& m, const torch::Tensor& x) {
  namespace nn = torch::nn;
  if (auto* seq = m->as<nn::Sequential>()) return seq->forward(x);
  if (auto* conv = m->as<nn::Conv2d>()) return conv->forward(x);
  if (auto* bn = m->as<nn::BatchNorm2d>()) return bn->forward(x);
  if (auto* relu = m->as<nn::ReLU>()) return relu->forward(x);
  if (auto* pool = m->as<nn::MaxPool2d>()) return pool->forward(x);
  if (auto* avg = m->as<nn::AdaptiveAvgPool2d>()) return avg->forward(x);
  if (auto* flatten = m->as<nn::Flatten>()) return flatten->forward(x);
  if (auto* dropout = m->as<nn::Dropout>()) return dropout->forward(x);
  if (auto* linear = m->as<nn::Linear>()) return linear->forward(x);
  if (auto* lstm = m->as<LstmHead>()) return lstm->forward(x);
  FAIL("exporter walk: unknown top-level module type " << m->name());
  return x;
}

// The closed set of module types an exporter must handle (see blocks.h).
bool is_known_module(const torch::nn::Module& m) {
  namespace nn = torch::nn;
  return m.as<nn::Sequential>() || m.as<nn::Conv2d>() || m.as<nn::BatchNorm2d>() || m.as<nn::ReLU>() ||
         m.as<nn::ReLU6>() || m.as<nn::SiLU>() || m.as<nn::Sigmoid>() || m.as<Hardswish>() || m.as<Hardsigmoid>() ||
         m.as<nn::MaxPool2d>() || m.as<nn::AdaptiveAvgPool2d>() || m.as<nn::Flatten>() || m.as<nn::Linear>() ||
         m.as<nn::Dropout>() || m.as<nn::LSTM>() || m.as<BasicBlock>() || m.as<Bottleneck>() ||
         m.as<InvertedResidual>() || m.as<SqueezeExcitation>() || m.as<StochasticDepth>() || m.as<LstmHead>();
}

struct ShapeCase {
  std::string architecture;
  int in_channels;
  int size;
  bool cam;
};

}  // namespace

TEST_CASE("parameter counts computed by hand", "[models]") {
  SECTION("simple_cnn, seed 001 layout at 28x28") {
    auto config = make_config("simple_cnn", 2, 3, 28);  // conv 32, conv 64, flatten, dense 128
    // conv1 3*32*9 + 32 = 896; conv2 32*64*9 + 64 = 18,496; 28 -> 14 -> 7: 64*7*7 = 3,136 features;
    // dense 3,136*128 + 128 = 401,536; head 128*2 + 2 = 258.
    CHECK(count_parameters(*create_model(config)) == 896 + 18496 + 401536 + 258);  // 421,186
  }
  SECTION("simple_cnn, global average pooling, no hidden layer, gray") {
    auto config = make_config("simple_cnn", 2, 1, 28);
    config.conv_channels = {16, 32, 64};
    config.hidden_units = 0;
    config.pooling = Pooling::GlobalAvg;
    // 1*16*9+16 = 160; 16*32*9+32 = 4,640; 32*64*9+64 = 18,496; head 64*2+2 = 130.
    CHECK(count_parameters(*create_model(config)) == 160 + 4640 + 18496 + 130);
  }
  SECTION("resnet18 with one input channel") {
    // conv1 loses 2 of 3 input planes: 64 * 2 * 7 * 7 = 6,272 fewer.
    CHECK(count_parameters(*create_model(make_config("resnet18", 1000, 1, 224))) == 11689512 - 6272);
  }
  SECTION("resnet50_lstm") {
    // resnet50 without fc: 25,557,032 - 2048*1000 - 1000 = 23,508,032.
    // LSTM(2048->32): 4*32*(2048+32) + 2*4*32 = 266,496; LSTM(32->16): 4*16*(32+16) + 2*4*16 = 3,200;
    // LSTM(16->8): 4*8*(16+8) + 2*4*8 = 832; head 8*2 + 2 = 18.
    CHECK(count_parameters(*create_model(make_config("resnet50_lstm", 2))) ==
          23508032 + 266496 + 3200 + 832 + 18);
  }
}

TEST_CASE("parameter counts and state_dict names equal torchvision's (1000 classes, RGB)", "[models]") {
  const std::map<std::string, int64_t> counts{
      {"resnet18", 11689512},     {"resnet50", 25557032},           {"vgg16", 138357544},
      {"mobilenet_v2", 3504872},  {"mobilenet_v3_large", 5483032}, {"efficientnet_b0", 5288548},
  };
  const std::map<std::string, std::vector<std::string>> keys{
      {"resnet18", {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                    "layer2.0.downsample.1.num_batches_tracked", "layer4.1.bn2.bias", "fc.weight", "fc.bias"}},
      {"resnet50", {"layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer3.5.bn3.running_var"}},
      {"vgg16", {"features.0.weight", "features.28.bias", "classifier.0.weight", "classifier.3.weight",
                 "classifier.6.bias"}},
      {"mobilenet_v2", {"features.0.0.weight", "features.0.1.running_mean", "features.1.conv.0.0.weight",
                        "features.1.conv.1.weight", "features.2.conv.0.0.weight", "features.2.conv.2.weight",
                        "features.2.conv.3.running_var", "features.17.conv.3.bias", "features.18.0.weight",
                        "classifier.1.weight"}},
      {"mobilenet_v3_large", {"features.0.0.weight", "features.1.block.0.0.weight", "features.4.block.2.fc1.weight",
                              "features.4.block.2.fc2.bias", "features.4.block.3.1.running_mean",
                              "features.16.0.weight", "classifier.0.weight", "classifier.3.weight"}},
      {"efficientnet_b0", {"features.0.0.weight", "features.1.0.block.0.0.weight", "features.1.0.block.1.fc1.weight",
                           "features.2.0.block.0.0.weight", "features.2.0.block.2.fc2.weight",
                           "features.7.0.block.3.1.running_var", "features.8.0.weight", "classifier.1.weight"}},
      {"resnet50_lstm", {"layer4.2.conv3.weight", "lstm.lstm1.weight_ih_l0", "lstm.lstm3.bias_hh_l0", "fc.weight"}},
  };
  for (const auto& [name, expected] : keys) {
    INFO(name);
    auto model = create_model(make_config(name, 1000, 3, 224));
    if (counts.count(name) != 0) CHECK(count_parameters(*model) == counts.at(name));
    std::vector<std::string> names;
    for (const auto& item : model->named_parameters()) names.push_back(item.key());
    for (const auto& item : model->named_buffers()) names.push_back(item.key());
    for (const auto& key : expected) {
      INFO(key);
      CHECK(std::find(names.begin(), names.end(), key) != names.end());
    }
  }
}

TEST_CASE("forward, embed, feature map, CAM and the exporter's walk", "[models]") {
  const auto c = GENERATE(values<ShapeCase>({
      {"simple_cnn", 1, 28, false},
      {"resnet18", 1, 28, true},
      {"resnet18", 3, 64, true},
      {"resnet50", 3, 64, true},
      {"vgg16", 3, 32, false},
      {"mobilenet_v2", 3, 64, true},
      {"mobilenet_v3_large", 3, 64, false},
      {"efficientnet_b0", 3, 64, true},
      {"resnet50_lstm", 3, 64, false},
  }));
  INFO(c.architecture << " " << c.in_channels << "x" << c.size << "x" << c.size);
  torch::manual_seed(7);
  auto model = create_model(make_config(c.architecture, 3, c.in_channels, c.size));
  model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, c.in_channels, c.size, c.size});

  const auto logits = model->forward(x);
  CHECK(logits.sizes() == torch::IntArrayRef({2, 3}));
  CHECK(all_finite(logits));

  const auto embedding = model->embed(x);
  CHECK(embedding.sizes() == torch::IntArrayRef({2, model->head()->options.in_features()}));
  CHECK(relative_diff(model->head()->forward(embedding), logits) < 1e-6);

  const auto fm = model->feature_map(x);
  CHECK(fm.dim() == 4);
  CHECK(fm.size(0) == 2);
  CHECK(all_finite(fm));

  CHECK(model->has_cam() == c.cam);
  if (model->has_cam()) {
    // CAM identity: the head applied to the globally pooled feature map is the forward pass.
    CHECK(relative_diff(model->head()->forward(fm.mean({2, 3})), logits) < 1e-5);
    const auto maps = model->class_activation_maps(fm);
    CHECK(maps.sizes() == torch::IntArrayRef({2, 3, fm.size(2), fm.size(3)}));
    CHECK(relative_diff(maps.mean({2, 3}) + model->head()->bias, logits) < 1e-5);
  }

  // Exporter contract: the top-level children composed in registration order are forward(), and
  // the child named feature_map_output() yields feature_map().
  auto y = x;
  bool saw_feature_map = false;
  for (const auto& child : model->named_children()) {
    y = apply_child(child.value(), y);
    if (child.key() == model->feature_map_output()) {
      saw_feature_map = true;
      CHECK(relative_diff(y, fm) < 1e-6);
    }
  }
  CHECK(saw_feature_map);
  CHECK(relative_diff(y, logits) < 1e-6);

  for (const auto& module : model->modules(/*include_self=*/false)) {
    INFO("module type " << module->name());
    CHECK(is_known_module(*module));
  }
}

TEST_CASE("every architecture runs on 1x28x28 (PneumoniaMNIST size), except vgg16 (min 32)", "[models]") {
  torch::NoGradGuard no_grad;
  for (const auto& name : architectures()) {
    INFO(name);
    if (name == "vgg16") continue;  // five 2x2 pools: 32 at least (its 32x32 run is above)
    auto config = make_config(name, 2, 1, 28);
    auto model = create_model(config);
    model->eval();
    const auto logits = model->forward(torch::randn({1, 1, config.input_size, config.input_size}));
    CHECK(logits.sizes() == torch::IntArrayRef({1, 2}));
    CHECK(all_finite(logits));
  }
  auto vgg = make_config("vgg16", 2, 1, 28);
  CHECK_THROWS_WITH(create_model(vgg), Contains("model.input_size") && Contains("between 32"));
}

TEST_CASE("simple_cnn with global pooling and no hidden layer supports CAM", "[models]") {
  auto config = make_config("simple_cnn", 4, 3, 32);
  config.pooling = Pooling::GlobalAvg;
  config.hidden_units = 0;
  auto model = create_model(config);
  model->eval();
  torch::NoGradGuard no_grad;
  REQUIRE(model->has_cam());
  const auto x = torch::randn({2, 3, 48, 40});  // global pooling: any input size
  const auto logits = model->forward(x);
  CHECK(logits.sizes() == torch::IntArrayRef({2, 4}));
  CHECK(relative_diff(model->head()->forward(model->feature_map(x).mean({2, 3})), logits) < 1e-5);
}

TEST_CASE("simple_cnn with flatten names the input size it was built for", "[models]") {
  auto model = create_model(make_config("simple_cnn", 2, 3, 64));
  torch::NoGradGuard no_grad;
  try {
    model->forward(torch::randn({1, 3, 32, 32}));
    FAIL("expected an error");
  } catch (const loupe::Error& e) {
    CHECK(e.code() == loupe::ErrorCode::InvalidArgument);
    CHECK_THAT(e.what(), Contains("64x64") && Contains("32x32"));
  }
}

TEST_CASE("a training step reaches every parameter", "[models]") {
  const auto name = GENERATE(as<std::string>{}, "simple_cnn", "resnet18", "resnet50", "mobilenet_v2",
                             "mobilenet_v3_large", "efficientnet_b0", "resnet50_lstm");
  INFO(name);
  torch::manual_seed(3);
  const int size = name == "simple_cnn" ? 28 : name == "resnet18" || name == "mobilenet_v2" ? 64 : 32;
  auto model = create_model(make_config(name, 3, 3, size));
  model->train();
  const auto x = torch::randn({2, 3, size, size});
  const auto target = torch::tensor({0, 2}, torch::kLong);
  const auto loss = torch::nn::functional::cross_entropy(model->forward(x), target);
  loss.backward();
  CHECK(std::isfinite(loss.item<double>()));
  int64_t with_grad = 0, total = 0;
  for (const auto& item : model->named_parameters()) {
    ++total;
    INFO(item.key());
    const auto& grad = item.value().grad();
    REQUIRE(grad.defined());
    CHECK(grad.sizes() == item.value().sizes());
    CHECK(all_finite(grad));
    ++with_grad;
  }
  CHECK(with_grad == total);
}

TEST_CASE("freezing the backbone leaves only the head trainable", "[models]") {
  const auto name = GENERATE(as<std::string>{}, "simple_cnn", "resnet18", "mobilenet_v3_large", "efficientnet_b0",
                             "resnet50_lstm");
  INFO(name);
  auto model = create_model(make_config(name, 2, 3, 32));
  const auto head = model->head();
  const int64_t head_count = count_parameters(*head);
  CHECK(count_parameters(*model) - head_count ==
        [&] {
          int64_t n = 0;
          for (const auto& p : model->backbone_parameters()) n += p.numel();
          return n;
        }());

  model->set_backbone_trainable(false);
  CHECK(count_trainable_parameters(*model) == head_count);
  for (const auto& item : model->named_parameters()) {
    INFO(item.key());
    const bool in_head = item.value().is_same(head->weight) || item.value().is_same(head->bias);
    CHECK(item.value().requires_grad() == in_head);
  }
  // Only the head receives gradients.
  model->train();
  const auto loss = model->forward(torch::randn({2, 3, 32, 32})).sum();
  loss.backward();
  CHECK(head->weight.grad().defined());
  for (const auto& p : model->backbone_parameters()) CHECK_FALSE(p.grad().defined());

  model->set_backbone_trainable(true);
  CHECK(count_trainable_parameters(*model) == count_parameters(*model));
}

TEST_CASE("reset_head re-initialises the head for a new class count", "[models]") {
  auto model = create_model(make_config("resnet18", 1000, 3, 64));
  const auto before = count_parameters(*model);
  const auto weight = model->head()->weight;
  model->reset_head(4);
  CHECK(model->config().num_classes == 4);
  CHECK(count_parameters(*model) == before - 996 * 512 - 996);
  CHECK(weight.sizes() == torch::IntArrayRef({4, 512}));  // the same Parameter, new shape
  model->eval();
  torch::NoGradGuard no_grad;
  CHECK(model->forward(torch::randn({2, 3, 64, 64})).sizes() == torch::IntArrayRef({2, 4}));

  auto mobilenet = create_model(make_config("mobilenet_v2", 2, 3, 64));  // head inside a Sequential
  mobilenet->reset_head(7);
  mobilenet->eval();
  CHECK(mobilenet->forward(torch::randn({1, 3, 64, 64})).sizes() == torch::IntArrayRef({1, 7}));
  CHECK_THROWS_AS(mobilenet->reset_head(0), loupe::Error);
}

TEST_CASE("copy_state makes two models compute the same function", "[models]") {
  const auto config = make_config("mobilenet_v3_large", 2, 3, 32);
  auto a = create_model(config);
  auto b = create_model(config);
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 32, 32});
  CHECK_FALSE(torch::equal(a->forward(x), b->forward(x)));
  copy_state(*a, *b);
  CHECK(torch::equal(a->forward(x), b->forward(x)));
  auto other = create_model(make_config("resnet18", 2, 3, 32));
  CHECK_THROWS_AS(copy_state(*a, *other), loupe::Error);
}

TEST_CASE("weights survive a save/load round trip through LibTorch archives", "[models]") {
  const auto config = make_config("efficientnet_b0", 2, 1, 32);  // nested Sequentials, SE, buffers
  auto a = create_model(config);
  auto b = create_model(config);
  std::stringstream stream;
  {
    torch::serialize::OutputArchive archive;
    a->save(archive);
    archive.save_to(stream);
  }
  torch::serialize::InputArchive archive;
  archive.load_from(stream);
  b->load(archive);
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 1, 32, 32});
  CHECK(torch::equal(a->forward(x), b->forward(x)));
}

TEST_CASE("model config JSON round-trips and is strict", "[models]") {
  SECTION("round trip for every architecture") {
    for (const auto& name : architectures()) {
      INFO(name);
      auto config = make_config(name, 4, 1, 96);
      config.dropout = 0.35;
      if (name == "simple_cnn") {
        config.conv_channels = {8, 16, 32};
        config.hidden_units = 0;
        config.pooling = Pooling::GlobalAvg;
      }
      const auto json = config.to_json();
      CHECK(ModelConfig::from_json(json) == config);
      CHECK(ModelConfig::from_json(nlohmann::json::parse(json.dump())) == config);
      CHECK(json.contains("conv_channels") == (name == "simple_cnn"));
    }
  }
  SECTION("defaults fill missing keys") {
    const auto config = ModelConfig::from_json({{"architecture", "resnet18"}});
    CHECK(config.num_classes == 2);
    CHECK(config.in_channels == 3);
    CHECK(config.input_size == 224);
    CHECK(config.dropout == Approx(0.2));
  }
  const auto error_of = [](const nlohmann::json& json) -> std::string {
    try {
      ModelConfig::from_json(json);
    } catch (const loupe::Error& e) {
      CHECK(e.code() == loupe::ErrorCode::InvalidSpec);
      return e.what();
    }
    return "no error";
  };
  SECTION("errors name the key") {
    CHECK_THAT(error_of({{"architecture", "resnet18"}, {"dropuot", 0.5}}),
               Contains("model.dropuot") && Contains("unknown key"));
    CHECK_THAT(error_of({{"num_classes", 2}}), Contains("model.architecture") && Contains("missing"));
    CHECK_THAT(error_of({{"architecture", "resnet18"}, {"num_classes", "two"}}),
               Contains("model.num_classes") && Contains("integer"));
    CHECK_THAT(error_of({{"architecture", "resnet18"}, {"num_classes", 0}}), Contains("model.num_classes"));
    CHECK_THAT(error_of({{"architecture", "resnet18"}, {"dropout", 1.0}}), Contains("model.dropout"));
    CHECK_THAT(error_of({{"architecture", "resnet18"}, {"hidden_units", 64}}),
               Contains("model.hidden_units") && Contains("only applies to architecture simple_cnn"));
    CHECK_THAT(error_of({{"architecture", "simple_cnn"}, {"pooling", "max"}}),
               Contains("model.pooling") && Contains("flatten, global_avg"));
    CHECK_THAT(error_of({{"architecture", "simple_cnn"}, {"conv_channels", {32, -1}}}),
               Contains("model.conv_channels[1]"));
    CHECK_THAT(error_of({{"architecture", "simple_cnn"}, {"input_size", 8}, {"conv_channels", {8, 8, 8, 8}}}),
               Contains("model.input_size") && Contains("between 16"));
    CHECK_THAT(error_of({{"architecture", "densenet121"}}),
               Contains("model.architecture") && Contains("resnet50_lstm"));
    CHECK_THAT(error_of(nlohmann::json::array()), Contains("expected a JSON object"));
  }
}

TEST_CASE("an unknown architecture lists the valid names", "[models]") {
  try {
    create_model(make_config("resnet"));
    FAIL("expected an error");
  } catch (const loupe::Error& e) {
    CHECK(e.code() == loupe::ErrorCode::InvalidArgument);
    const std::string message = e.what();
    CHECK_THAT(message, Contains("'resnet'"));
    for (const auto& name : architectures()) CHECK_THAT(message, Contains(name));
  }
  CHECK(architectures().size() == 8);
}

TEST_CASE("building blocks match torchvision's definitions", "[models]") {
  SECTION("_make_divisible: MobileNetV3's squeeze-excitation widths") {
    // torchvision: _make_divisible(expanded // 4, 8) for expanded 72, 120, 480, 672, 960.
    CHECK(make_divisible(72 / 4, 8) == 24);
    CHECK(make_divisible(120 / 4, 8) == 32);
    CHECK(make_divisible(480 / 4, 8) == 120);
    CHECK(make_divisible(672 / 4, 8) == 168);
    CHECK(make_divisible(960 / 4, 8) == 240);
    CHECK(make_divisible(32 * 0.75, 8) == 24);
    CHECK(make_divisible(3.0, 8) == 8);
  }
  SECTION("hard activations") {
    const auto x = torch::linspace(-5.0, 5.0, 101);
    CHECK(relative_diff(Hardswish()->forward(x), x * torch::relu6(x + 3.0) / 6.0) < 1e-7);
    CHECK(relative_diff(Hardsigmoid()->forward(x), torch::relu6(x + 3.0) / 6.0) < 1e-7);
  }
  SECTION("stochastic depth drops whole samples in training only") {
    torch::manual_seed(11);
    StochasticDepth sd(0.5);
    const auto x = torch::ones({2000, 3, 2, 2});
    const auto y = sd->forward(x);
    const auto per_sample = y.flatten(1);
    // Each sample is all 0 or all 2 (scaled by 1 / (1 - p)); about half survive.
    CHECK(torch::equal(per_sample.amin(1), per_sample.amax(1)));
    CHECK(((per_sample.select(1, 0) == 0) | (per_sample.select(1, 0) == 2)).all().item<bool>());
    CHECK(y.mean().item<double>() == Approx(1.0).margin(0.1));
    sd->eval();
    CHECK(torch::equal(sd->forward(x), x));
  }
  SECTION("LSTM head reads the feature map positions as time steps") {
    torch::manual_seed(5);
    LstmHead head(6, std::vector<int64_t>{5, 4});
    const auto fm = torch::randn({2, 6, 3, 2});
    const auto out = head->forward(fm);
    CHECK(out.sizes() == torch::IntArrayRef({2, 4}));
    // Same result from an explicit [N, h*w, C] sequence through both LSTMs.
    auto seq = fm.permute({0, 2, 3, 1}).reshape({2, 6, 6});
    seq = std::get<0>(head->lstms[0]->forward(seq));
    seq = std::get<0>(head->lstms[1]->forward(seq));
    CHECK(relative_diff(out, seq.select(1, 5)) < 1e-6);
  }
}
