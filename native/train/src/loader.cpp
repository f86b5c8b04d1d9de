#include "loupe/train/loader.h"

#include "loupe/data/random.h"

#include <torch/torch.h>

#include <algorithm>
#include <random>

namespace loupe::train {

namespace {

// splitmix64: turns (seed, epoch, position) into well-mixed generator seeds.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

std::vector<size_t> shuffled_order(const std::vector<size_t>& indices, uint64_t seed, int epoch) {
  std::vector<size_t> order = indices;
  std::mt19937_64 rng(mix(seed ^ mix(static_cast<uint64_t>(epoch) + 1)));
  data::shuffle_in_place(order, rng);
  return order;
}

BatchLoader::BatchLoader(const data::Dataset& dataset, std::vector<size_t> order, PreprocessSpec spec,
                         LoaderOptions options)
    : dataset_(dataset),
      order_(std::move(order)),
      spec_(std::move(spec)),
      options_(std::move(options)),
      num_batches_((order_.size() + static_cast<size_t>(options_.batch_size) - 1) / static_cast<size_t>(options_.batch_size)),
      worker_count_(static_cast<size_t>(std::max(1, options_.workers))) {
  spec_.validate();
  for (size_t w = 0; w < worker_count_; ++w) threads_.emplace_back([this, w] { work(w); });
}

BatchLoader::~BatchLoader() {
  stopping_ = true;
  changed_.notify_all();
  for (auto& t : threads_) t.join();
}

Batch BatchLoader::load_batch(size_t batch_index) const {
  const size_t begin = batch_index * static_cast<size_t>(options_.batch_size);
  const size_t end = std::min(order_.size(), begin + static_cast<size_t>(options_.batch_size));
  const int64_t c = spec_.channels(), h = spec_.height, w = spec_.width;
  Batch batch;
  torch::Tensor images = torch::empty({static_cast<int64_t>(end - begin), c, h, w}, torch::kFloat32);
  std::vector<int64_t> labels;
  int64_t filled = 0;
  for (size_t position = begin; position < end; ++position) {
    const size_t sample = order_[position];
    try {
      Image image = dataset_.load_image(sample);
      if (options_.augment) {
        const uint64_t epoch_position = options_.position_offset + options_.position_stride * position;
        std::mt19937_64 rng(mix(options_.seed ^ mix((uint64_t(options_.epoch) << 32) + epoch_position)));
        image = data::augment(image, *options_.augment, rng);
      }
      preprocess_into(image, spec_, images[filled].data_ptr<float>());
      labels.push_back(dataset_.samples[sample].label);
      batch.samples.push_back(sample);
      ++filled;
    } catch (const std::exception& e) {
      batch.errors.push_back(dataset_.samples[sample].path + ": " + e.what());
    }
  }
  batch.images = images.narrow(0, 0, filled);
  batch.labels = torch::tensor(labels, torch::kInt64);
  return batch;
}

void BatchLoader::work(size_t worker) {
  for (size_t b = worker; b < num_batches_; b += worker_count_) {
    {
      // Bounded prefetch: do not run more than `prefetch` batches ahead of the consumer.
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] {
        return stopping_ || b < next_to_return_ + static_cast<size_t>(std::max(1, options_.prefetch));
      });
      if (stopping_) return;
    }
    Batch batch = load_batch(b);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(b, std::move(batch));
    }
    changed_.notify_all();
  }
}

std::optional<Batch> BatchLoader::next() {
  if (next_to_return_ >= num_batches_) return std::nullopt;
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return ready_.count(next_to_return_) > 0; });
  Batch batch = std::move(ready_.at(next_to_return_));
  ready_.erase(next_to_return_);
  ++next_to_return_;
  lock.unlock();
  changed_.notify_all();
  return batch;
}

}  // namespace loupe::train
