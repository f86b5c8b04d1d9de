// Training-step throughput of Loupe's models (LibTorch C++), and of the batch loader on real
// images; scripts/bench-train runs it next to the same loop in PyTorch. Never part of the tests.
//
//   bench_train MODEL SIZE BATCH STEPS [THREADS]          fwd + bwd + SGD step on random data
//   bench_train --loader FOLDER SIZE BATCH WORKERS        decode + augment + preprocess, images/s
// Prints one JSON line.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "dataset.h"
#include "loader.h"
#include "loupe/models/zoo.h"

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
      std::fprintf(stderr, "usage: bench_train MODEL SIZE BATCH STEPS [THREADS] | --loader FOLDER SIZE BATCH WORKERS\n");
      return 2;
    }
    const int size = std::stoi(argv[2]), batch = std::stoi(argv[3]), steps = std::stoi(argv[4]);
    at::set_num_threads(argc > 5 ? std::stoi(argv[5]) : 2);
    torch::manual_seed(0);
    loupe::models::ModelConfig config;
    config.architecture = argv[1];
    config.num_classes = 10;
    config.input_size = size;
    config.dropout = 0.0;
    auto model = loupe::models::create_model(config);
    model->train();
    torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    const torch::Tensor x = torch::randn({batch, 3, size, size});
    const torch::Tensor y = torch::randint(0, 10, {batch}, torch::kInt64);
    const auto step = [&] {
      optimizer.zero_grad();
      torch::nn::functional::cross_entropy(model->forward(x), y).backward();
      optimizer.step();
    };
    for (int i = 0; i < 2; ++i) step();  // warm-up (allocator, oneDNN primitives)
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    const double s = seconds_since(start);
    std::printf("{\"model\": \"%s\", \"size\": %d, \"batch\": %d, \"steps\": %d, \"threads\": %d, \"images_per_second\": %.2f}\n",
                argv[1], size, batch, steps, at::get_num_threads(), double(steps * batch) / s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  return 0;
}
