// Multi-threaded batch loader with prefetch: decode (shared core) -> augment (training only)
// -> preprocess (shared core, written straight into the batch tensor).
//
// Deterministic whatever the thread timing: the sample order is fixed by the caller, and each
// sample's augmentation draws from its own generator seeded with (seed, epoch, position), so a
// resumed run sees exactly the batches an uninterrupted one would.
#pragma once

#include <torch/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loupe/data/augment.h"
#include "loupe/data/dataset.h"
#include "loupe/preprocess.h"

namespace loupe::train {

struct Batch {
  torch::Tensor images;          // [n, C, H, W] float32
  torch::Tensor labels;          // [n] int64
  std::vector<size_t> samples;   // dataset indices, in batch order
  std::vector<std::string> errors;  // samples that failed to load (left out of the batch), with reasons
};

struct LoaderOptions {
  int batch_size = 32;
  int workers = 2;                // decoding threads
  int prefetch = 4;               // batches decoded ahead of the consumer
  std::optional<data::AugmentSpec> augment;  // training split only
  uint64_t seed = 42;
  int epoch = 0;
  // The augmentation generator is seeded with a sample's position in the whole epoch's order. A
  // rank of a distributed run loads every world_size-th position of it (distributed.h):
  // position_offset = rank, position_stride = world_size, so each sample is augmented exactly as
  // one process would augment it.
  size_t position_offset = 0;
  size_t position_stride = 1;
};

class BatchLoader {
 public:
  BatchLoader(const data::Dataset& dataset, std::vector<size_t> order, PreprocessSpec spec, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  size_t num_batches() const { return num_batches_; }
  // The next batch in order, or nullopt after the last one.
  std::optional<Batch> next();

 private:
  void work(size_t worker);
  Batch load_batch(size_t batch_index) const;

  const data::Dataset& dataset_;
  std::vector<size_t> order_;
  PreprocessSpec spec_;
  LoaderOptions options_;
  size_t num_batches_;
  size_t worker_count_;
  size_t next_to_return_ = 0;
  std::map<size_t, Batch> ready_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
};

// Seeded training order for an epoch: a permutation of `indices` from (seed, epoch).
std::vector<size_t> shuffled_order(const std::vector<size_t>& indices, uint64_t seed, int epoch);

}  // namespace loupe::train
