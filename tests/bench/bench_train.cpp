// Training-step throughput of Loupe's models (LibTorch C++), and of the batch loader on real
// images; scripts/bench-train runs it next to the same loop in PyTorch. Never part of the tests.
//
//   bench_train MODEL SIZE BATCH STEPS [THREADS [DEVICE [PRECISION [CHANNELS_LAST]]]]
//                                                         the trainer's step (train_step) on random data
//   bench_train --loader FOLDER SIZE BATCH WORKERS        decode + augment + preprocess, images/s
// Prints one JSON line.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "loupe/data/dataset.h"
#include "loupe/train/loader.h"
#include "loupe/models/zoo.h"
#include "loupe/train/precision.h"
#include "loupe/train/trainer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 6 && std::string(argv[1]) == "--loader") {
      const loupe::data::Dataset ds = loupe::data::load_dataset(argv[2]);
      std::vector<size_t> all(ds.samples.size());
      for (size_t i = 0; i < all.size(); ++i) all[i] = i;
      loupe::train::LoaderOptions options;
      options.batch_size = std::stoi(argv[4]);
      options.workers = std::stoi(argv[5]);
      loupe::data::AugmentSpec augment;
      augment.horizontal_flip = 0.5;
      augment.rotation_degrees = 15;
      options.augment = augment;
      const auto start = std::chrono::steady_clock::now();
      loupe::train::BatchLoader loader(ds, all, loupe::PreprocessSpec::imagenet(std::stoi(argv[3])), options);
      size_t images = 0;
      while (auto batch = loader.next()) images += batch->samples.size();
      const double s = seconds_since(start);
      std::printf("{\"images\": %zu, \"seconds\": %.3f, \"images_per_second\": %.1f}\n", images, s, double(images) / s);
      return 0;
    }
    if (argc < 5) {
      std::fprintf(stderr,
                   "usage: bench_train MODEL SIZE BATCH STEPS [THREADS [DEVICE [PRECISION [CHANNELS_LAST]]]]\n"
                   "       bench_train --loader FOLDER SIZE BATCH WORKERS\n");
      return 2;
    }
    const int size = std::stoi(argv[2]), batch = std::stoi(argv[3]), steps = std::stoi(argv[4]);
    at::set_num_threads(argc > 5 ? std::stoi(argv[5]) : 2);
    // The device policy as a config would give it: "auto" precision = fp16 + loss scaling on CUDA.
    const std::string channels_last = argc > 8 ? argv[8] : "auto";
    const loupe::train::DevicePolicy policy = loupe::train::resolve_device_policy(
        loupe::train::resolve_device(argc > 6 ? argv[6] : "cpu"), argc > 7 ? argv[7] : "auto",
        channels_last == "auto" ? nlohmann::json("auto") : nlohmann::json(channels_last == "true"));
    loupe::train::configure_backend(policy);
    torch::manual_seed(0);
    loupe::models::ModelConfig config;
    config.architecture = argv[1];
    config.num_classes = 10;
    config.input_size = size;
    config.dropout = 0.0;
    auto model = loupe::models::create_model(config);
    model->to(policy.device);
    if (policy.channels_last) loupe::train::to_channels_last(*model);
    model->train();
    torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    // Laid out once, as the Python loop does (the trainer lays out each batch the loader makes).
    const torch::Tensor x = loupe::train::batch_layout(torch::randn({batch, 3, size, size}).to(policy.device), policy);
    const torch::Tensor y = torch::randint(0, 10, {batch}, torch::kInt64).to(policy.device);
    const torch::Tensor class_weights = torch::ones({10}).to(policy.device);
    loupe::train::LossScaler scaler(policy.loss_scaling());
    // The trainer's own step (forward under autocast, loss, scaled backward, optimizer step).
    const auto step = [&] { loupe::train::train_step(*model, optimizer, x, y, class_weights, policy, scaler); };
    const auto finish_queued_work = [&] {
      if (policy.device.is_cuda()) torch::cuda::synchronize();
    };
    for (int i = 0; i < 3; ++i) step();  // warm-up (allocator, oneDNN primitives / cuDNN autotuning)
    finish_queued_work();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();  // each step reads its loss back (a device sync), as training does
    finish_queued_work();
    const double s = seconds_since(start);
    std::printf("{\"model\": \"%s\", \"size\": %d, \"batch\": %d, \"steps\": %d, \"threads\": %d, "
                "\"device\": \"%s\", \"precision\": \"%s\", \"channels_last\": %s, \"images_per_second\": %.2f}\n",
                argv[1], size, batch, steps, at::get_num_threads(), policy.device.str().c_str(),
                loupe::train::to_string(policy.precision).c_str(), policy.channels_last ? "true" : "false",
                double(steps * batch) / s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  return 0;
}
