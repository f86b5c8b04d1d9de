// Data-parallel training on several processes ("ranks"), on one machine or many, over c10d: the
// engine under torch.distributed and torchrun (Gloo on CPU, NCCL between CUDA devices). Loupe
// writes no communication layer of its own.
//
//   RANK=0 WORLD_SIZE=2 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 loupe train -c c.json -o runs/x   # machine A
//   RANK=1 WORLD_SIZE=2 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 loupe train -c c.json -o runs/x   # machine B
//   loupe train --nproc 2 -c c.json -o runs/x          # 2 ranks on this machine (local_launch.h)
//
// [SECTION] Launch environment   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
// [SECTION] Rendezvous           rank 0 serves a c10d TCPStore; every rank must reach it within
//                                distributed.timeout_s; the resolved configs must be equal (the first
//                                differing key is named); then the backend's process group
// [SECTION] Collectives          sums, broadcasts, small texts; a lost rank is named (heartbeats)
// [SECTION] Sampling             the DistributedSampler rule: every rank shuffles the same epoch order
//                                (seed + epoch), pads it to a multiple of world_size by repeating
//                                its start, and takes positions rank, rank + world_size, ...
// [SECTION] Gradients            bucketed all-reduce launched from gradient hooks while backward runs
// [SECTION] Evaluation           each rank predicts a shard; every rank gets all predictions
//
// The config's batch_size is the global batch: each rank takes batch_size / world_size images per
// step, so 2 ranks reproduce 1 process on the same config (tests/native/test_distributed.cpp).
// Batch norm: rank 0's buffers (running mean and variance) are broadcast at every epoch's end and
// at the start (as DDP's broadcast_buffers); in training mode each rank normalises with its own
// batch's statistics (README, "Training on several machines", says why).
#pragma once

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loupe/models/zoo.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

namespace loupe::train {

// [SECTION] Launch environment

struct LaunchEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // this machine's rank: which CUDA device (cuda:LOCAL_RANK)
  int local_world_size = 1;  // ranks on this machine: threads = 0 shares the cores among them
  std::string master_addr;   // rank 0's machine, which serves the rendezvous store
  int master_port = 29500;
  bool distributed() const { return world_size > 1; }
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT as torchrun
// sets them. No WORLD_SIZE (or 1): one process. Throws Error naming the variable that is bad.
LaunchEnvironment launch_environment_from_env();

// Checks that a config can run on `world_size` ranks before anything starts: the global
// batch_size must divide into equal per-rank batches.
void check_distributed_config(const TrainConfig& config, int world_size);

// The device of this rank: "auto" and "cuda" become cuda:LOCAL_RANK where CUDA is present.
torch::Device rank_device(const std::string& configured, const LaunchEnvironment& env);

// Threads of a rank with config.threads = 0: the machine's cores shared by its ranks.
int rank_threads(int configured, const LaunchEnvironment& env);

// [SECTION] Rendezvous, collectives

class DistributedGroup {
 public:
  // Rendezvous through the c10d TCPStore at MASTER_ADDR:MASTER_PORT (rank 0 serves it) within
  // config.distributed.timeout_s; refuses ranks whose resolved configs differ (naming the key) and
  // a rank that claims a RANK another already has; then creates the backend's process group
  // (config.distributed.backend; auto: nccl when every rank trains on CUDA and this build has
  // NCCL, else gloo). Throws Error naming the address and port when the store cannot be reached
  // or served (a port in use), naming the ranks that did not arrive in time.
  static std::unique_ptr<DistributedGroup> join(const LaunchEnvironment& env, const TrainConfig& config,
                                                const torch::Device& device);
  ~DistributedGroup();
  DistributedGroup(const DistributedGroup&) = delete;
  DistributedGroup& operator=(const DistributedGroup&) = delete;

  int rank() const;
  int world_size() const;
  bool is_main() const { return rank() == 0; }
  const std::string& backend() const;
  const LaunchEnvironment& environment() const;
  const torch::Device& device() const;  // this rank's training device, as given to join()
  int timeout_seconds() const;
  // "rank 1 of 2 (gloo, store 127.0.0.1:29500)"
  std::string describe() const;

  // Collectives: blocking, every rank calls them in the same order. A rank that is gone (killed,
  // failed) or a collective that runs past the timeout throws Error naming the rank.
  void all_reduce_sum(torch::Tensor& tensor);                 // in place, any device
  void broadcast_from_main(std::vector<torch::Tensor> tensors);  // in place, from rank 0
  // Parameters and buffers (batch norm running statistics) of rank 0 on every rank.
  void broadcast_model(models::Classifier& model, bool parameters, bool buffers);
  // Each rank's `text`, in rank order, on every rank (small values: through the store).
  std::vector<std::string> all_gather_text(const std::string& text);
  // Rank 0's `text` on every rank.
  std::string main_text(const std::string& text);
  // Throws Error when the ranks' values differ: "<what> differs between ranks: rank 0 ..., rank 1 ...".
  void require_same(const std::string& what, const std::string& value, const std::string& hint);
  // True on every rank when `flag` is true on any rank (a Ctrl-C, a failure on one rank).
  bool any(bool flag);

  // This rank is stopping with `message`: the others say so instead of only "rank N is gone".
  void announce_failure(const std::string& message) noexcept;

  struct Impl;  // c10d objects (distributed.cpp): kept out of this header

 private:
  explicit DistributedGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class GradientSync;
};

// [SECTION] Sampling

// The DistributedSampler rule for one epoch: `order` padded to a multiple of world_size by
// repeating its start (pad = true), then positions rank, rank + world_size, ... Without padding
// (evaluation) the shards are disjoint and cover `order` exactly once.
std::vector<size_t> rank_shard(const std::vector<size_t>& order, int rank, int world_size, bool pad);

// Names the files, labels and training order a rank built (every rank must build the same).
std::string data_fingerprint(const data::Dataset& dataset, const std::vector<size_t>& training);

// [SECTION] Gradients

// Averages gradients across ranks during backward: parameters are grouped into buckets of about
// distributed.bucket_mb (in reverse order, the order backward produces them); a gradient hook
// copies each gradient into its bucket, and a full bucket is all-reduced asynchronously at once
// while backward goes on, in bucket order on every rank (collectives must match). After backward
// the rest are launched, everything is awaited and the summed gradients written back.
class GradientSync {
 public:
  GradientSync(DistributedGroup& group, const std::vector<torch::Tensor>& parameters, double bucket_mb);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // One small all-reduce per step, before backward: the sum of the class weights of every rank's
  // batch (the loss's denominator, so unequal or weighted batches give the one-process loss),
  // whether every rank's loss is finite, and whether any rank asked to stop (Ctrl-C).
  struct Agreement {
    double total_weight = 0;
    bool all_finite = true;
    bool stop = false;
  };
  Agreement agree(double local_weight, bool finite, bool stop_requested);

  void begin_backward();   // arms the hooks for the parameters that require gradients now
  void finish_backward();  // launches the remaining buckets, waits, writes the summed gradients

  size_t bucket_count() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// [SECTION] Evaluation

// predict() on this rank's shard of `samples`; every rank returns the predictions of all of them
// (in `samples` order, unreadable ones left out and listed in errors), so metrics, the schedule
// and early stopping decide the same on every rank. group = nullptr: predict() itself.
Predictions predict_on_ranks(DistributedGroup* group, models::Classifier& model, const data::Dataset& dataset,
                             const std::vector<size_t>& samples, const PreprocessSpec& spec,
                             const EvalOptions& options);

}  // namespace loupe::train
