// The CUDA path: float16 autocast with loss scaling and channels-last, against the CPU float32
// reference on the same inputs. Hidden cases ("[.cuda]"): ctest's native.cuda runs them where
// LibTorch sees a GPU (tests/native/cuda_tests.sh) and is skipped elsewhere.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)

#include <torch/cuda.h>
#include <torch/torch.h>


#include "fixtures.h"
#include "loupe/models/zoo.h"
#include "loupe/train/precision.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

using namespace loupe;
using namespace loupe::train;
using Catch::Matchers::Contains;

TEST_CASE("CUDA: automatic precision is fp16 with loss scaling, channels-last", "[.cuda]") {
  REQUIRE(torch::cuda::is_available());
  const DevicePolicy policy = resolve_device_policy(resolve_device("auto"), "auto", "auto");
  CHECK(policy.device.is_cuda());
  CHECK(policy.precision == Precision::Float16);
  CHECK(policy.loss_scaling());
  CHECK(policy.channels_last);
}

TEST_CASE("CUDA: fp16 channels-last forward matches the CPU fp32 reference", "[.cuda]") {
  REQUIRE(torch::cuda::is_available());
  auto model = test::seeded_model("resnet18", 4, 64, 5);
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({8, 3, 64, 64});
  const torch::Tensor reference = model->forward(images);

  const DevicePolicy policy = resolve_device_policy(torch::kCUDA, "fp16", true);
  model->to(policy.device);
  to_channels_last(*model);
  torch::Tensor logits;
  {
    AutocastScope autocast(policy);
    logits = model->forward(batch_layout(images.to(policy.device), policy));
  }
  CHECK(logits.scalar_type() == torch::kHalf);
  const torch::Tensor back = logits.to(torch::kCPU, torch::kFloat32);
  const double difference = (back - reference).abs().max().item<double>();
  CAPTURE(difference);
  const double tolerance = 0.02 * reference.abs().max().item<double>();
  CHECK(difference < tolerance);
  // The predicted class agrees wherever the top two logits are further apart than the tolerance.
  const auto top2 = std::get<0>(reference.topk(2, 1));
  const torch::Tensor clear = (top2.select(1, 0) - top2.select(1, 1)) > 2 * tolerance;
  CHECK(torch::equal(back.argmax(1).masked_select(clear), reference.argmax(1).masked_select(clear)));
}

TEST_CASE("CUDA: the fp16 loss scaler skips a step whose gradients overflow", "[.cuda]") {
  REQUIRE(torch::cuda::is_available());
  torch::manual_seed(9);
  const DevicePolicy policy = resolve_device_policy(torch::kCUDA, "fp16", false);
  torch::nn::Linear layer(16, 3);
  layer->to(policy.device);
  const torch::Tensor x = torch::randn({4, 16}).to(policy.device);
  const torch::Tensor y = torch::tensor({0, 1, 2, 1}, torch::kInt64).to(policy.device);
  const auto gradients_of = [&](LossScaler& scaler) {
    layer->zero_grad();
    torch::Tensor logits;
    {
      AutocastScope autocast(policy);
      logits = layer(x);
    }
    scaler.scale_loss(torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), y)).backward();
    return scaler.unscale_and_check(layer->parameters());
  };
  LossScaler normal(true, 1024.0);  // fp16 gradients stay far below 65504
  CHECK(gradients_of(normal));
  // The fused CUDA unscale gives the gradients of the unscaled loss, as the CPU loop does.
  std::vector<torch::Tensor> unscaled;
  for (const auto& p : layer->parameters()) unscaled.push_back(p.grad().clone());
  LossScaler off(false);
  CHECK(gradients_of(off));
  for (size_t i = 0; i < unscaled.size(); ++i) {
    const double largest = unscaled[i].abs().max().item<double>();
    CHECK((unscaled[i] - layer->parameters()[i].grad()).abs().max().item<double>() < 5e-3 * largest + 1e-5);
  }
  LossScaler huge(true, 1e30);  // beyond fp16's 65504 once cast back in backward: inf gradients
  CHECK_FALSE(gradients_of(huge));
  CHECK_FALSE(huge.update(false));
  CHECK(huge.scale() == 5e29);
}

TEST_CASE("CUDA: a run with automatic precision trains and says how it ran", "[.cuda]") {
  REQUIRE(torch::cuda::is_available());
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 30, 32);
  const nlohmann::json doc = {{"name", "cuda"},
                              {"data", {{"path", (dir.path / "data").string()}}},
                              {"split", {{"val", 0.2}, {"test", 0.2}, {"seed", 3}}},
                              {"preprocess", {{"color", "rgb"}, {"size", 32}}},
                              {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {8, 16}}, {"hidden_units", 32}}},
                              {"optimizer", {{"name", "adamax"}, {"lr", 3e-3}}},
                              {"epochs", 10},
                              {"batch_size", 8},
                              {"device", "cuda"}};
  RunOptions quiet;
  quiet.progress = false;
  const RunResult result = run_training(TrainConfig::from_json(doc), (dir.path / "run").string(), quiet);
  REQUIRE(result.test_report.is_object());
  CHECK(result.test_report["accuracy"].get<double>() > 0.6);  // chance is 1/3
  CHECK_THAT(test::read_text(dir.path / "run" / "log.txt"), Contains("fp16 autocast with loss scaling, channels-last"));
}

TEST_CASE("CUDA: weights saved from the GPU load into a CPU model (export on another machine)", "[.cuda]") {
  REQUIRE(torch::cuda::is_available());
  const test::TempDir dir;
  auto on_gpu = test::seeded_model("mobilenet_v2", 3, 224, 2);
  on_gpu->to(torch::kCUDA);
  to_channels_last(*on_gpu);
  const std::string path = (dir.path / "weights.pt").string();
  save_model_file(*on_gpu, path);
  auto on_cpu = test::seeded_model("mobilenet_v2", 3, 224, 3);  // other weights: loading must replace them all
  load_model_file(*on_cpu, path);
  const auto gpu_parameters = on_gpu->parameters();
  const auto cpu_parameters = on_cpu->parameters();
  REQUIRE(gpu_parameters.size() == cpu_parameters.size());
  for (size_t i = 0; i < cpu_parameters.size(); ++i) {
    CHECK(cpu_parameters[i].device().is_cpu());
    CHECK(torch::equal(cpu_parameters[i], gpu_parameters[i].cpu()));
  }
}
