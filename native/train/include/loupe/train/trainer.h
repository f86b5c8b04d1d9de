// Training and evaluation runs. A run folder holds everything needed to audit or resume it:
//
//   RUN/config.json          the resolved configuration (defaults filled in)
//   RUN/dataset.json         data set summary: classes, counts, skipped files with reasons
//   RUN/split.json           the split: spec, per-class counts, every file with its split
//   RUN/balance.json         training-split counts before/after balancing, class weights
//   RUN/history.csv, .json   per-epoch train/val loss and accuracy, learning rate, img/s
//   RUN/checkpoints/last.pt  model + optimizer + trainer state after the last finished epoch
//   RUN/checkpoints/best.pt  the best epoch by the selection metric (written atomically: tmp + rename)
//   RUN/metrics.json         validation and held-out test reports of the selected model
//   RUN/report.md            a readable report; RUN/curves.png, RUN/confusion_test.png
//   RUN/log.txt              the run's log
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/data/dataset.h"
#include "loupe/metrics.h"
#include "loupe/models/zoo.h"
#include "loupe/train/atomic_file.h"
#include "loupe/train/precision.h"
#include "loupe/train/train_config.h"

namespace loupe::train {

class DistributedGroup;  // distributed.h
class GradientSync;

struct EpochRecord {
  int epoch = 0;  // 1-based
  double lr = 0;
  double train_loss = 0, train_accuracy = 0;
  double val_loss = 0, val_accuracy = 0, val_balanced_accuracy = 0;
  double seconds = 0, images_per_second = 0;
  nlohmann::json to_json() const;
  static EpochRecord from_json(const nlohmann::json& json);
};

// Predictions of a model on a set of samples.
struct Predictions {
  std::vector<size_t> samples;
  std::vector<int> labels;
  std::vector<std::vector<double>> probabilities;
  std::vector<double> losses;        // each sample's cross-entropy, -log p(label)
  std::vector<std::string> errors;  // samples that could not be loaded
  double mean_loss = 0;             // cross-entropy (log loss) of the probabilities
};

struct EvalOptions {
  int batch_size = 64;
  int workers = 2;
  DevicePolicy policy;  // device, autocast precision, layout (CPU fp32 by default)
};

Predictions predict(models::Classifier& model, const data::Dataset& dataset, const std::vector<size_t>& samples,
                    const PreprocessSpec& spec, const EvalOptions& options);

// One optimisation step exactly as training runs it (scripts/bench-train times this function):
// the forward pass under the policy's autocast and layout, the float32 (class-weighted)
// cross-entropy, the backward pass on the scaled loss and the optimizer step unless gradients
// overflowed. A non-finite loss returns before backward (weights untouched; the caller stops).
//
// On several ranks (data_parallel, distributed.h) the step is the one-process step of the ranks'
// batches together: the loss is each rank's class-weighted sum over the weights of every rank's
// batch (one small all-reduce before backward), gradients are summed across ranks while backward
// runs, and every rank skips or stops at the same step (a non-finite loss or a Ctrl-C anywhere).
struct StepResult {
  torch::Tensor logits;  // float32 (undefined for an empty batch)
  double loss = 0;       // the unscaled loss of the batch (not finite on every rank if any rank's was not)
  bool stepped = false;  // false: non-finite loss, or a step skipped by the loss scaler
  bool interrupted = false;  // data parallel: some rank asked to stop; no step was taken
};
struct DataParallel {
  GradientSync& gradients;
  const std::atomic<bool>* interrupt = nullptr;  // this rank's Ctrl-C flag
};
StepResult train_step(models::Classifier& model, torch::optim::Optimizer& optimizer, const torch::Tensor& images,
                      const torch::Tensor& labels, const torch::Tensor& class_weights, const DevicePolicy& policy,
                      LossScaler& scaler, const DataParallel* data_parallel = nullptr);

// Report + log loss, as written to metrics.json.
nlohmann::json evaluation_json(const Predictions& predictions, const std::vector<std::string>& classes);

struct RunOptions {
  bool resume = false;
  bool evaluate_test = true;     // grids evaluate only the selected run on test
  bool evaluate_only = false;    // load the run's checkpoint and only evaluate (grid winners)
  bool progress = true;          // progress bar on stderr
  std::atomic<bool>* interrupt = nullptr;  // set by a Ctrl-C handler: checkpoint and stop
  // Several ranks (distributed.h): each trains its shard; only rank 0 writes into the run folder.
  DistributedGroup* distributed = nullptr;
  // Epoch -> folder: after that epoch the run's checkpoints, history and log are copied there,
  // which is the folder a run with that many epochs leaves before its evaluation (grid.cpp reads
  // a grid's shorter epoch counts from its longest run this way). A run that stops early copies
  // its final state to every later epoch's folder, as those runs would have stopped there too.
  std::map<int, std::string> snapshots;
};

struct RunResult {
  std::string run_dir;
  int epochs_run = 0;
  int best_epoch = 0;
  double best_value = 0;       // the selection metric at best_epoch
  bool stopped_early = false;
  bool interrupted = false;
  nlohmann::json val_report, test_report;
};

// Trains per `config` into `run_dir` (created; with resume, continued from its last checkpoint).
// Throws loupe::Error with a clear reason on bad data/config, NaN loss (after keeping the last
// good checkpoint) or a failed checkpoint write (the previous checkpoint stays intact).
RunResult run_training(const TrainConfig& config, const std::string& run_dir, const RunOptions& options);

// The number of epochs a run folder's history records, or -1 without a checkpoint or history
// (grid.cpp checks a snapshot is the state after the epoch it stands for).
int epochs_recorded(const std::string& run_dir);

// Every combination of config.grid, each trained into run_dir/grid/NNN; leaderboard.csv ranks
// them by the validation selection metric; only the winner is evaluated on test.
RunResult run_grid(const TrainConfig& config, const std::string& run_dir, const RunOptions& options);

// The data set exactly as a run sees it: loaded, filtered to include_classes, capped at
// max_per_class (seeded). `loupe eval` uses it to rebuild a run's split.
data::Dataset load_run_dataset(const TrainConfig& config);

torch::Device resolve_device(const std::string& name);
void configure_threads(int threads);

// Saves `model` (eval state) to a file atomically (tmp + rename, atomic_file.h). Throws Error(Io)
// when the write fails; the previous file stays. (checkpoint.cpp)
void save_model_file(models::Classifier& model, const std::string& path);
// A model file or a checkpoint's weights, onto the model's device.
void load_model_file(models::Classifier& model, const std::string& path);

}  // namespace loupe::train
