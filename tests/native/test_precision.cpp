// Mixed precision and channels-last (precision.h): each checked against the plain float32 / NCHW
// reference on the same inputs. The CUDA flavour (fp16 + loss scaling) runs the same code on a GPU;
// here the loss scaler is checked against its rules with float32 gradients, and autocast with bf16
// on CPU.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "fixtures.h"
#include "loupe/models/zoo.h"
#include "loupe/train/precision.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

using namespace loupe;
using namespace loupe::train;
using Catch::Matchers::Contains;

namespace {

DevicePolicy cpu_policy(Precision precision, bool channels_last) {
  DevicePolicy policy;
  policy.precision = precision;
  policy.channels_last = channels_last;
  return policy;
}

double max_abs_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("device policy: CPU defaults to fp32 NCHW; impossible combinations name the key", "[train][precision]") {
  const DevicePolicy automatic = resolve_device_policy(torch::kCPU, "auto", "auto");
  CHECK(automatic.precision == Precision::Float32);
  CHECK_FALSE(automatic.channels_last);
  CHECK_FALSE(automatic.loss_scaling());
  CHECK(automatic.describe() == "cpu, fp32");

  const DevicePolicy bf16 = resolve_device_policy(torch::kCPU, "bf16", true);
  CHECK(bf16.precision == Precision::BFloat16);
  CHECK(bf16.channels_last);
  CHECK_FALSE(bf16.loss_scaling());  // bf16 has float32's range: no scale needed
  CHECK(bf16.describe() == "cpu, bf16 autocast, channels-last");

  CHECK_THAT(test::error_of([] { resolve_device_policy(torch::kCPU, "fp16", "auto"); }),
             Contains("precision: fp16 needs a CUDA device"));
  CHECK_THAT(test::error_of([] { resolve_device_policy(torch::kCPU, "fp8", "auto"); }), Contains("precision: 'fp8'"));
  CHECK_THAT(test::error_of([] { resolve_device_policy(torch::kCPU, "auto", "yes"); }), Contains("channels_last"));

  // The config keys are checked when the config is read, and written back resolved.
  nlohmann::json doc = {{"data", {{"path", "/nowhere"}}}, {"model", {{"architecture", "resnet18"}}}};
  CHECK(TrainConfig::from_json(doc).precision == "auto");
  doc["precision"] = "half";
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(doc); }), Contains("precision: 'half'"));
  doc["precision"] = "bf16";
  doc["channels_last"] = 1;
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(doc); }), Contains("channels_last: expected true, false"));
  doc["channels_last"] = false;
  const TrainConfig parsed = TrainConfig::from_json(doc);
  CHECK(parsed.to_json()["precision"] == "bf16");
  CHECK(parsed.to_json()["channels_last"] == false);
}

TEST_CASE("autocast scope: lower precision inside, the previous state restored after", "[train][precision]") {
  const torch::Tensor x = torch::randn({4, 8});
  const torch::Tensor w = torch::randn({3, 8});
  CHECK(torch::nn::functional::linear(x, w).scalar_type() == torch::kFloat32);
  {
    AutocastScope outer(cpu_policy(Precision::BFloat16, false));
    CHECK(torch::nn::functional::linear(x, w).scalar_type() == torch::kBFloat16);
    {
      AutocastScope fp32(cpu_policy(Precision::Float32, false));  // float32 policy: leaves autocast alone
      CHECK(torch::nn::functional::linear(x, w).scalar_type() == torch::kBFloat16);
    }
    {
      AutocastScope inner(cpu_policy(Precision::BFloat16, false));
      CHECK(torch::nn::functional::linear(x, w).scalar_type() == torch::kBFloat16);
    }
    CHECK(torch::nn::functional::linear(x, w).scalar_type() == torch::kBFloat16);  // still inside outer
  }
  CHECK(torch::nn::functional::linear(x, w).scalar_type() == torch::kFloat32);
}

TEST_CASE("channels-last and bf16 forward passes match the fp32 NCHW reference", "[train][precision]") {
  auto model = test::seeded_model("resnet18", 4, 64, 5);
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({3, 3, 64, 64});
  const torch::Tensor reference = model->forward(images);

  // An optimizer made before the conversion holds the same parameters, now NHWC.
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  to_channels_last(*model);
  const DevicePolicy nhwc = cpu_policy(Precision::Float32, true);
  int converted = 0;
  for (const auto& p : sgd.param_groups()[0].params()) {
    if (p.dim() == 4) {
      CHECK(p.is_contiguous(at::MemoryFormat::ChannelsLast));
      ++converted;
    }
  }
  CHECK(converted == 20);  // resnet18: 17 convolutions + 3 downsampling 1x1s
  const torch::Tensor batch = batch_layout(images, nhwc);
  CHECK(batch.is_contiguous(at::MemoryFormat::ChannelsLast));
  CHECK(max_abs_difference(model->forward(batch), reference) < 1e-4);

  // bf16 keeps ~3 significant digits: the logits agree to a few hundredths, the classes exactly.
  torch::Tensor mixed;
  {
    AutocastScope autocast(cpu_policy(Precision::BFloat16, true));
    mixed = model->forward(batch);
  }
  CHECK(mixed.scalar_type() == torch::kBFloat16);
  CAPTURE(max_abs_difference(mixed, reference));
  CHECK(max_abs_difference(mixed, reference) < 0.1 * reference.abs().max().item<double>());
  CHECK(torch::equal(mixed.argmax(1), reference.argmax(1)));
}

TEST_CASE("loss scaler: scaled gradients unscale to the reference; overflow skips the step", "[train][precision]") {
  torch::manual_seed(9);
  torch::nn::Linear reference(6, 3), scaled(6, 3);
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < reference->parameters().size(); ++i) scaled->parameters()[i].copy_(reference->parameters()[i]);
  }
  const torch::Tensor x = torch::randn({5, 6});
  const torch::Tensor y = torch::tensor({0, 1, 2, 1, 0}, torch::kInt64);
  torch::nn::functional::cross_entropy(reference(x), y).backward();

  LossScaler scaler(true, 1024.0, 2.0, 0.5, 3);
  scaler.scale_loss(torch::nn::functional::cross_entropy(scaled(x), y)).backward();
  CHECK(max_abs_difference(scaled->weight.grad(), reference->weight.grad() * 1024.0) < 1e-3);
  CHECK(scaler.unscale_and_check(scaled->parameters()));
  for (size_t i = 0; i < reference->parameters().size(); ++i) {
    CHECK(max_abs_difference(scaled->parameters()[i].grad(), reference->parameters()[i].grad()) < 1e-6);
  }
  CHECK(scaler.update(true));
  CHECK(scaler.scale() == 1024.0);

  // An inf gradient: the step is refused, the scale halves, the growth count restarts.
  scaled->bias.grad()[1] = std::numeric_limits<float>::infinity();
  CHECK_FALSE(scaler.unscale_and_check(scaled->parameters()));
  CHECK_FALSE(scaler.update(false));
  CHECK(scaler.scale() == 512.0);
  CHECK(scaler.skipped_steps() == 1);
  // Three finite steps in a row (growth_interval) double it.
  for (int i = 0; i < 3; ++i) CHECK(scaler.update(true));
  CHECK(scaler.scale() == 1024.0);

  // The state travels in checkpoints.
  CHECK(scaler.update(true));
  LossScaler resumed(true, 1024.0, 2.0, 0.5, 3);
  resumed.restore(scaler.state());
  CHECK(resumed.state() == scaler.state());
  CHECK(resumed.skipped_steps() == 1);

  // An overflow through backward itself (not an injected value): a scale beyond float32's range.
  LossScaler overflowing(true, 1e39);
  scaled->zero_grad();
  overflowing.scale_loss(torch::nn::functional::cross_entropy(scaled(x), y)).backward();
  CHECK_FALSE(overflowing.unscale_and_check(scaled->parameters()));

  LossScaler off(false);  // float32 and bf16 runs: the identity
  const torch::Tensor loss = torch::tensor(2.5);
  CHECK(off.scale_loss(loss).item<double>() == 2.5);
  CHECK(off.unscale_and_check(scaled->parameters()));  // not inspected when disabled
  CHECK(off.update(false));
}

TEST_CASE("train_step: a non-finite loss changes no weight; with loss scaling it is a skipped step", "[train][precision]") {
  models::ModelConfig config;
  config.architecture = "simple_cnn";
  config.num_classes = 2;
  config.input_size = 32;
  config.conv_channels = {4};
  config.hidden_units = 8;
  torch::manual_seed(1);
  auto model = models::create_model(config);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  const torch::Tensor labels = torch::tensor({0, 1}, torch::kInt64);
  const torch::Tensor weights = torch::ones({2});
  const DevicePolicy policy = cpu_policy(Precision::Float32, false);
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());

  const torch::Tensor broken = torch::full({2, 3, 32, 32}, std::numeric_limits<float>::quiet_NaN());
  for (const bool scaling : {false, true}) {
    LossScaler scaler(scaling, 1024.0);
    const StepResult step = train_step(*model, sgd, broken, labels, weights, policy, scaler);
    CHECK_FALSE(std::isfinite(step.loss));
    CHECK_FALSE(step.stepped);
    CHECK(scaler.skipped_steps() == (scaling ? 1 : 0));
    CHECK(scaler.scale() == (scaling ? 512.0 : 1.0));
    for (size_t i = 0; i < before.size(); ++i) CHECK(torch::equal(model->parameters()[i], before[i]));
  }
  LossScaler scaler(true, 1024.0);  // a finite batch steps, with the gradients unscaled first
  const StepResult step = train_step(*model, sgd, torch::randn({2, 3, 32, 32}), labels, weights, policy, scaler);
  CHECK(std::isfinite(step.loss));
  CHECK(step.stepped);
  CHECK_FALSE(torch::equal(model->parameters()[0], before[0]));
}

TEST_CASE("a bf16 channels-last run on CPU trains like the fp32 one and says how it ran", "[train][precision]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 30, 32);
  nlohmann::json doc = {{"name", "mixed"},
                        {"data", {{"path", (dir.path / "data").string()}}},
                        {"split", {{"val", 0.2}, {"test", 0.2}, {"seed", 3}}},
                        {"preprocess", {{"color", "rgb"}, {"size", 32}}},
                        {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {8, 16}}, {"hidden_units", 32}}},
                        {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}},
                        {"epochs", 10},
                        {"batch_size", 8},
                        {"threads", 2},
                        {"device", "cpu"},  // also on GPU machines: this case is about the CPU's bf16
                        {"precision", "bf16"},
                        {"channels_last", true}};
  RunOptions quiet;
  quiet.progress = false;
  const RunResult result = run_training(TrainConfig::from_json(doc), (dir.path / "run").string(), quiet);
  REQUIRE(result.test_report.is_object());
  CHECK(result.test_report["accuracy"].get<double>() > 0.6);  // chance is 1/3
  CHECK_THAT(test::read_text(dir.path / "run" / "log.txt"), Contains("on cpu, bf16 autocast, channels-last"));
  CHECK(nlohmann::json::parse(test::read_text(dir.path / "run" / "config.json"))["precision"] == "bf16");
}
