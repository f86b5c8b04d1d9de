// Training-step throughput of Loupe's models (LibTorch C++), and of the batch loader on real
// images; scripts/bench-train runs it next to the same loop in PyTorch. Never part of the tests.
//
//   bench_train MODEL SIZE BATCH STEPS [THREADS [DEVICE [PRECISION [CHANNELS_LAST]]]]
//                                                         the trainer's step (train_step) on random data
//   bench_train --loader FOLDER SIZE BATCH WORKERS        decode + augment + preprocess, images/s
//   bench_train --nproc N MODEL SIZE BATCH STEPS [THREADS [DEVICE [PRECISION [CHANNELS_LAST]]]]
//                                                         N local ranks (local_launch.h), BATCH/N images
//                                                         each, the trainer's data-parallel step
// Prints one JSON line (with --nproc, rank 0 does: images/s of all ranks together).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "loupe/data/dataset.h"
#include "loupe/train/distributed.h"
#include "loupe/train/loader.h"
#include "loupe/train/local_launch.h"
#include "loupe/models/zoo.h"
#include "loupe/train/precision.h"
#include "loupe/train/trainer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The step loop of one rank, started by `bench_train --nproc N` (rank 0 prints). A world of one
// rank still joins a group: on a single GPU that runs NCCL's whole code path.
int run_rank(int argc, char** argv) {
  using namespace loupe::train;
  stop_with_local_launcher();
  LaunchEnvironment env = launch_environment_from_env();
  if (!env.distributed()) {  // WORLD_SIZE=1 from the launcher
    env.master_addr = "127.0.0.1";
    env.master_port = std::atoi(std::getenv("MASTER_PORT"));
  }
  const std::string model_name = argv[2];
  const int size = std::stoi(argv[3]), batch = std::stoi(argv[4]), steps = std::stoi(argv[5]);
  at::set_num_threads(argc > 6 ? std::stoi(argv[6]) : 1);
  const std::string channels_last = argc > 9 ? argv[9] : "auto";
  const TrainConfig config = TrainConfig::from_json(
      {{"data", {{"path", "random"}}},
       {"preprocess", {{"color", "rgb"}, {"size", size}}},
       {"model", {{"architecture", model_name}, {"num_classes", 10}, {"dropout", 0.0}}},
       {"batch_size", batch},
       {"device", argc > 7 ? argv[7] : "cpu"},
       {"distributed", {{"timeout_s", 120}}}});
  check_distributed_config(config, env.world_size);
  const DevicePolicy policy = resolve_device_policy(
      rank_device(config.device, env), argc > 8 ? argv[8] : "auto",
      channels_last == "auto" ? nlohmann::json("auto") : nlohmann::json(channels_last == "true"));
  configure_backend(policy);
  const auto group = DistributedGroup::join(env, config, policy.device);
  torch::manual_seed(0);
  auto model = loupe::models::create_model(config.model);
  model->to(policy.device);
  if (policy.channels_last) to_channels_last(*model);
  group->broadcast_model(*model, true, true);
  model->train();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  GradientSync gradients(*group, model->parameters(), config.distributed.bucket_mb);
  const DataParallel data_parallel{gradients, nullptr};
  const int local_batch = batch / env.world_size;
  torch::manual_seed(static_cast<uint64_t>(env.rank) + 1);
  const torch::Tensor x = batch_layout(torch::randn({local_batch, 3, size, size}).to(policy.device), policy);
  const torch::Tensor y = torch::randint(0, 10, {local_batch}, torch::kInt64).to(policy.device);
  const torch::Tensor class_weights = torch::ones({10}).to(policy.device);
  LossScaler scaler(policy.loss_scaling());
  const auto step = [&] { train_step(*model, optimizer, x, y, class_weights, policy, scaler, &data_parallel); };
  for (int i = 0; i < 3; ++i) step();
  if (policy.device.is_cuda()) torch::cuda::synchronize();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();  // each step waits for its all-reduces: the ranks stay in step
  if (policy.device.is_cuda()) torch::cuda::synchronize();
  const double s = seconds_since(start);
  group->any(false);  // every rank finishes before rank 0 reports (and its store goes)
  if (group->is_main()) {
    std::printf("{\"model\": \"%s\", \"size\": %d, \"batch\": %d, \"steps\": %d, \"ranks\": %d, \"threads\": %d, "
                "\"backend\": \"%s\", \"buckets\": %zu, \"device\": \"%s\", \"precision\": \"%s\", "
                "\"channels_last\": %s, \"images_per_second\": %.2f}\n",
                model_name.c_str(), size, batch, steps, env.world_size, at::get_num_threads(), group->backend().c_str(),
                gradients.bucket_count(), policy.device.str().c_str(), to_string(policy.precision).c_str(),
                policy.channels_last ? "true" : "false", double(steps * batch) / s);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 7 && std::string(argv[1]) == "--nproc") {
      std::vector<std::string> rank_arguments{"--rank"};
      for (int i = 3; i < argc; ++i) rank_arguments.emplace_back(argv[i]);
      return loupe::train::launch_local_ranks("bench_train", std::stoi(argv[2]), rank_arguments, 60);
    }
    if (argc >= 6 && std::string(argv[1]) == "--rank") return run_rank(argc, argv);
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
                   "       bench_train --loader FOLDER SIZE BATCH WORKERS\n"
                   "       bench_train --nproc N MODEL SIZE BATCH STEPS [THREADS [DEVICE [PRECISION [CHANNELS_LAST]]]]\n");
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
