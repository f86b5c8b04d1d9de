#include "loupe/train/trainer.h"

#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <thread>

#include "loupe/data/balance.h"
#include "loupe/train/distributed.h"
#include "loupe/train/loader.h"
#include "loupe/train/optim.h"
#include "loupe/models/pretrained.h"
#include "loupe/train/precision.h"
#include "loupe/train/checkpoint.h"
#include "loupe/train/report.h"

namespace fs = std::filesystem;

namespace loupe::train {

namespace {

// Rank 0 (or the one process) logs to the run's log.txt and stderr. The other ranks of a
// distributed run write nothing into the run folder and print only what concerns them alone
// (warning: a file unreadable on their shard), prefixed with their rank.
class RunLog {
 public:
  RunLog(const std::string& path, int rank) : rank_(rank) {
    if (rank_ == 0) out_.open(path, std::ios::app);
  }
  void operator()(const std::string& line) {
    if (rank_ != 0) return;
    std::fprintf(stderr, "%s\n", line.c_str());
    out_ << line << "\n";
    out_.flush();
  }
  void warning(const std::string& line) {
    if (rank_ == 0) (*this)(line);
    else std::fprintf(stderr, "[rank %d] %s\n", rank_, line.c_str());
  }

 private:
  int rank_;
  std::ofstream out_;
};

std::string fixed(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string duration(double seconds) {
  char buf[32];
  const int s = static_cast<int>(seconds);
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", s / 60, s % 60);
  return buf;
}

// One line, redrawn in place on a terminal; plain periodic lines otherwise (CI logs).
class ProgressBar {
 public:
  ProgressBar(bool enabled, int epoch, int epochs, size_t batches)
      : enabled_(enabled), tty_(isatty(2)), epoch_(epoch), epochs_(epochs), batches_(batches),
        start_(std::chrono::steady_clock::now()) {}
  void update(size_t done, double loss, int64_t images) {
    if (!enabled_) return;
    const double elapsed = seconds();
    const double rate = static_cast<double>(images) / std::max(elapsed, 1e-9);
    const double eta = done ? elapsed / double(done) * double(batches_ - done) : 0;
    const int width = 24;
    const int filled = static_cast<int>(width * double(done) / double(std::max<size_t>(1, batches_)));
    char line[256];
    std::snprintf(line, sizeof line, "epoch %d/%d [%s%s] %zu/%zu loss %.4f %.1f img/s ETA %s", epoch_, epochs_,
                  std::string(static_cast<size_t>(filled), '=').c_str(),
                  std::string(static_cast<size_t>(width - filled), ' ').c_str(), done, batches_, loss, rate,
                  duration(eta).c_str());
    if (tty_) {
      std::fprintf(stderr, "\r%s\033[K", line);
    } else if (elapsed - last_print_ >= 30.0 || done == batches_) {
      std::fprintf(stderr, "%s\n", line);
      last_print_ = elapsed;
    }
  }
  void finish() {
    if (enabled_ && tty_) std::fprintf(stderr, "\r\033[K");
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  bool enabled_, tty_;
  int epoch_, epochs_;
  size_t batches_;
  std::chrono::steady_clock::time_point start_;
  double last_print_ = 0;
};

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

double metric_of(const EpochRecord& r, const std::string& name) {
  if (name == "val_accuracy") return r.val_accuracy;
  if (name == "val_balanced_accuracy") return r.val_balanced_accuracy;
  return r.val_loss;
}

bool better(double candidate, double best, const std::string& metric, double min_delta = 0.0) {
  return metric == "val_loss" ? candidate < best - min_delta : candidate > best + min_delta;
}

}  // namespace

// [SECTION] Records, devices

nlohmann::json EpochRecord::to_json() const {
  return {{"epoch", epoch}, {"lr", lr}, {"train_loss", train_loss}, {"train_accuracy", train_accuracy},
          {"val_loss", val_loss}, {"val_accuracy", val_accuracy}, {"val_balanced_accuracy", val_balanced_accuracy},
          {"seconds", seconds}, {"images_per_second", images_per_second}};
}

EpochRecord EpochRecord::from_json(const nlohmann::json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int>();
  r.lr = j.at("lr").get<double>();
  r.train_loss = j.at("train_loss").get<double>();
  r.train_accuracy = j.at("train_accuracy").get<double>();
  r.val_loss = j.at("val_loss").get<double>();
  r.val_accuracy = j.at("val_accuracy").get<double>();
  r.val_balanced_accuracy = j.at("val_balanced_accuracy").get<double>();
  r.seconds = j.at("seconds").get<double>();
  r.images_per_second = j.at("images_per_second").get<double>();
  return r;
}

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (!torch::cuda::is_available()) {
    throw Error(ErrorCode::InvalidArgument, "device '" + name + "': CUDA is not available in this build or machine");
  }
  return torch::Device(name);
}

void configure_threads(int threads) {
  // LibTorch 1.13 defaults to one intra-op thread here: use every core unless told otherwise.
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

// [SECTION] Training

namespace {
constexpr int kMaxConsecutiveSkippedSteps = 20;  // fp16 batches with a non-finite loss before a run stops
}  // namespace

namespace {

// train_step on several ranks (trainer.h): the loss of this rank's batch is its class-weighted sum
// over the class weights of all ranks' batches, so the gradients summed across ranks are those of
// one process's loss on the ranks' batches together, whatever their sizes (unreadable files) or
// class weights.
StepResult data_parallel_step(models::Classifier& model, torch::optim::Optimizer& optimizer, const torch::Tensor& images,
                              const torch::Tensor& labels, const torch::Tensor& class_weights, const DevicePolicy& policy,
                              LossScaler& scaler, const DataParallel& data_parallel) {
  optimizer.zero_grad();
  StepResult result;
  const bool empty = images.size(0) == 0;  // every file of this rank's batch was unreadable
  torch::Tensor weighted_sum;
  double local_weight = 0;
  if (!empty) {
    {
      AutocastScope autocast(policy);
      result.logits = model.forward(batch_layout(images, policy));
    }
    result.logits = result.logits.to(torch::kFloat32);
    const torch::Tensor per_sample = torch::nn::functional::cross_entropy(
        result.logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    const torch::Tensor weights = class_weights.index_select(0, labels);
    weighted_sum = (per_sample * weights).sum();
    local_weight = weights.sum().item<double>();
    result.loss = weighted_sum.item<double>() / local_weight;
  }
  const bool stop_requested = data_parallel.interrupt != nullptr && data_parallel.interrupt->load();
  const GradientSync::Agreement agreed = data_parallel.gradients.agree(local_weight, std::isfinite(result.loss), stop_requested);
  if (agreed.stop) {
    result.interrupted = true;
    return result;
  }
  if (!agreed.all_finite) {  // every rank skips (fp16) or stops, as one process would
    result.loss = std::numeric_limits<double>::quiet_NaN();
    scaler.update(false);
    return result;
  }
  if (agreed.total_weight <= 0) return result;  // no rank had a readable image
  data_parallel.gradients.begin_backward();
  if (!empty) scaler.scale_loss(weighted_sum / agreed.total_weight).backward();
  data_parallel.gradients.finish_backward();
  result.stepped = scaler.update(scaler.unscale_and_check(model.parameters()));
  if (result.stepped) optimizer.step();
  return result;
}

}  // namespace

StepResult train_step(models::Classifier& model, torch::optim::Optimizer& optimizer, const torch::Tensor& images,
                      const torch::Tensor& labels, const torch::Tensor& class_weights, const DevicePolicy& policy,
                      LossScaler& scaler, const DataParallel* data_parallel) {
  if (data_parallel) {
    return data_parallel_step(model, optimizer, images, labels, class_weights, policy, scaler, *data_parallel);
  }
  optimizer.zero_grad();
  StepResult result;
  {
    AutocastScope autocast(policy);  // the forward pass only; the loss and backward run outside, as in torch.autocast
    result.logits = model.forward(batch_layout(images, policy));
  }
  result.logits = result.logits.to(torch::kFloat32);
  const torch::Tensor loss = torch::nn::functional::cross_entropy(
      result.logits, labels, torch::nn::functional::CrossEntropyFuncOptions().weight(class_weights));
  result.loss = loss.item<double>();
  if (!std::isfinite(result.loss)) {
    scaler.update(false);  // with fp16 a step like any overflowing one: skipped, the scale lowered
    return result;
  }
  scaler.scale_loss(loss).backward();
  // Float16 gradients that overflowed skip this step and lower the scale (see precision.h).
  result.stepped = scaler.update(scaler.unscale_and_check(model.parameters()));
  if (result.stepped) optimizer.step();
  return result;
}

// The steps of a run, in order: its data (written before training, so a failed run can still be
// audited), its model and optimizer, the epochs, then the selected model's evaluation.
namespace {

struct RunData {
  data::Dataset dataset;
  data::Split split;
  data::BalancedTraining balanced;
};

RunData prepare_run_data(TrainConfig& config, const std::string& run_dir, DistributedGroup* group, RunLog& log) {
  const bool writes = group == nullptr || group->is_main();  // only rank 0 writes into the run folder
  RunData d;
  d.dataset = load_run_dataset(config);
  if (!d.dataset.skipped.empty()) {
    log(std::to_string(d.dataset.skipped.size()) + " file(s) skipped (listed in dataset.json), e.g. " +
        d.dataset.skipped.front().path + ": " + d.dataset.skipped.front().reason);
  }
  if (writes) write_json_atomic((fs::path(run_dir) / "dataset.json").string(), d.dataset.summary_json());
  d.split = data::stratified_split(d.dataset, config.split);
  if (writes) write_json_atomic((fs::path(run_dir) / "split.json").string(), d.split.to_json(d.dataset));
  d.balanced = data::balance_training(d.dataset, d.split.train, config.balancing, config.seed);
  if (writes) write_json_atomic((fs::path(run_dir) / "balance.json").string(), d.balanced.to_json(d.dataset, config.balancing));
  if (group) {
    // Every rank must build the same split from the same files (the data on a shared filesystem).
    group->require_same("the data set", data_fingerprint(d.dataset, d.balanced.indices),
                        "Every rank must read the same files at data.path (a filesystem shared by the machines)");
  }
  log("data: " + std::to_string(d.dataset.samples.size()) + " images, " + std::to_string(d.dataset.classes.size()) +
      " classes; split train " + std::to_string(d.split.train.size()) + " / val " + std::to_string(d.split.val.size()) +
      " / test " + std::to_string(d.split.test.size()) + (d.split.from_dataset ? " (the data set's own split)" : "") +
      "; balancing " + data::to_string(config.balancing) + " -> " + std::to_string(d.balanced.indices.size()) +
      " training images");
  if (d.split.groups) {
    const data::GroupReport& g = *d.split.groups;
    log("groups: " + std::to_string(g.groups) + " (" + std::to_string(g.ungrouped_files) + " files without a group id), " +
        std::to_string(g.groups_crossing) + " on more than one side of the split, " + std::to_string(g.test_sharing_train) +
        " test images sharing a group with training" +
        (config.split.group.keep_together ? "" : " (keep_together is false: an image-level split)"));
  }
  if (d.split.val.empty()) throw Error(ErrorCode::InvalidArgument, "split: no validation images (set split.val > 0)");
  config.model.num_classes = static_cast<int>(d.dataset.classes.size());
  if (writes) write_json_atomic((fs::path(run_dir) / "config.json").string(), config.to_json());
  return d;
}

// The model, seeded, with pretrained weights when the config names them (their folded batch norms
// re-expressed on up to 64 training images, see pretrained.h), on the run's device and layout.
std::shared_ptr<models::Classifier> create_run_model(const TrainConfig& config, const RunData& d,
                                                     const DevicePolicy& policy, RunLog& log) {
  torch::manual_seed(config.seed);  // weight initialisation is part of the run's reproducibility
  auto model = models::create_model(config.model);
  if (!config.pretrained_path.empty()) {
    const models::PretrainedReport report = models::load_pretrained(*model, config.pretrained_path);
    log("pretrained: " + report.summary());
    LoaderOptions calibration;
    calibration.batch_size = 64;
    calibration.workers = config.workers;
    std::vector<size_t> first(d.balanced.indices.begin(),
                              d.balanced.indices.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(64, d.balanced.indices.size())));
    BatchLoader loader(d.dataset, first, config.preprocess, calibration);
    if (auto batch = loader.next(); batch && batch->samples.size() >= 2) {
      torch::NoGradGuard no_grad;
      log("pretrained: " + std::to_string(models::calibrate_batchnorm(*model, batch->images)) +
          " batch norms calibrated on " + std::to_string(batch->samples.size()) + " training images");
    }
  }
  model->to(policy.device);
  if (policy.channels_last) to_channels_last(*model);
  return model;
}

// What one epoch of training gives, before validation.
struct EpochTraining {
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  bool interrupted = false;
  double seconds = 0;
};

// Everything an epoch needs that lives across epochs.
struct Trainer {
  const TrainConfig& config;
  const RunData& data;
  const DevicePolicy& policy;
  models::Classifier& model;
  torch::optim::Optimizer& optimizer;
  LossScaler& scaler;
  const torch::Tensor& class_weights;
  const RunOptions& options;
  const std::string& last_path;
  const DataParallel* data_parallel;  // several ranks: each trains its shard of every epoch
};

EpochTraining train_epoch(const Trainer& t, int epoch, const TrainerState& state, RunLog& log) {
  const auto start = std::chrono::steady_clock::now();
  // Dropout and stochastic depth draw from torch's generator: reseeded per epoch so that a
  // resumed run continues exactly like an uninterrupted one.
  torch::manual_seed(mix(t.config.seed ^ mix(static_cast<uint64_t>(epoch))));
  t.model.train();
  LoaderOptions loader_options;
  loader_options.batch_size = t.config.batch_size;
  loader_options.workers = t.config.workers;
  loader_options.seed = t.config.seed;
  loader_options.epoch = epoch;
  if (t.config.augment.enabled()) loader_options.augment = t.config.augment;
  std::vector<size_t> order = shuffled_order(t.data.balanced.indices, t.config.seed, epoch);
  DistributedGroup* group = t.options.distributed;
  if (group) {  // the DistributedSampler rule: this rank's positions of the same epoch order
    order = rank_shard(order, group->rank(), group->world_size(), /*pad=*/true);
    loader_options.batch_size = t.config.batch_size / group->world_size();
    loader_options.position_offset = static_cast<size_t>(group->rank());
    loader_options.position_stride = static_cast<size_t>(group->world_size());
  }
  BatchLoader loader(t.data.dataset, std::move(order), t.config.preprocess, loader_options);
  ProgressBar bar(t.options.progress && (group == nullptr || group->is_main()), epoch + 1, t.config.epochs,
                  loader.num_batches());
  EpochTraining out;
  size_t done = 0;
  int consecutive_nonfinite = 0;
  while (auto batch = loader.next()) {
    for (const auto& e : batch->errors) log.warning("unreadable during training, skipped: " + e);
    ++done;
    if (batch->samples.empty() && t.data_parallel == nullptr) continue;  // ranks take part in every step
    const torch::Tensor labels = batch->labels.to(t.policy.device);
    const StepResult step = train_step(t.model, t.optimizer, batch->images.to(t.policy.device), labels, t.class_weights,
                                       t.policy, t.scaler, t.data_parallel);
    if (step.interrupted) {
      out.interrupted = true;
      break;
    }
    const double loss_value = step.loss;
    // With fp16 loss scaling an occasional overflowing batch is skipped, as PyTorch's AMP loop
    // does; a run that keeps overflowing (or any non-finite loss without scaling) stops.
    consecutive_nonfinite = std::isfinite(loss_value) ? 0 : consecutive_nonfinite + 1;
    if (consecutive_nonfinite > 0 && t.scaler.enabled() && consecutive_nonfinite < kMaxConsecutiveSkippedSteps) continue;
    if (!std::isfinite(loss_value)) {
      bar.finish();
      throw Error(ErrorCode::InvalidArgument,
                  "training stopped: the loss became " + std::to_string(loss_value) + " in epoch " +
                      std::to_string(epoch + 1) + ", batch " + std::to_string(done) +
                      (state.epochs_done > 0 ? "; the last good checkpoint (epoch " + std::to_string(state.epochs_done) +
                                                   ") is kept in " + t.last_path
                                             : "; no epoch had finished, so there is no checkpoint") +
                      ". Try a lower learning rate" +
                      (t.scaler.enabled() ? " or precision bf16/fp32 (fp16 overflowed in " +
                                                std::to_string(kMaxConsecutiveSkippedSteps) + " batches in a row)"
                                          : "") +
                      ".");
    }
    if (batch->samples.empty()) continue;
    out.loss_sum += loss_value * double(batch->samples.size());
    out.correct += step.logits.argmax(1).eq(labels).sum().item<int64_t>();
    out.seen += static_cast<int64_t>(batch->samples.size());
    bar.update(done, out.loss_sum / double(out.seen), out.seen * (group ? group->world_size() : 1));
    // One process stops at once; ranks stop together at the next step's agreement.
    if (t.data_parallel == nullptr && t.options.interrupt && *t.options.interrupt) {
      out.interrupted = true;
      break;
    }
  }
  bar.finish();
  if (group && !out.interrupted) {  // the epoch's figures over every rank's shard
    torch::Tensor totals = torch::tensor({out.loss_sum, double(out.correct), double(out.seen)}, torch::kFloat64);
    group->all_reduce_sum(totals);
    out.loss_sum = totals[0].item<double>();
    out.correct = static_cast<int64_t>(totals[1].item<double>());
    out.seen = static_cast<int64_t>(totals[2].item<double>());
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

// The run folder as it stands after `epoch`, copied to `dest`: what a run with epochs = `epoch`
// leaves before its evaluation (RunOptions::snapshots).
// last.pt is copied last, so a snapshot with a last.pt is complete (epochs_recorded checks which epoch).
void write_epoch_snapshot(const std::string& run_dir, const std::string& dest, int epoch) {
  fs::create_directories(fs::path(dest) / "checkpoints");
  fs::remove(fs::path(dest) / "checkpoints" / "last.pt");
  for (const char* file : {"checkpoints/best.pt", "history.csv", "history.json", "log.txt"}) {
    const fs::path from = fs::path(run_dir) / file;
    if (fs::exists(from)) copy_file_atomic(from.string(), (fs::path(dest) / file).string());
  }
  std::ofstream(fs::path(dest) / "log.txt", std::ios::app)
      << "epochs 1 to " << epoch << " above were trained in " << run_dir
      << " (a grid over epochs trains each combination once, to its longest count); this folder is its state after epoch "
      << epoch << "\n";
  copy_file_atomic((fs::path(run_dir) / "checkpoints" / "last.pt").string(), (fs::path(dest) / "checkpoints" / "last.pt").string());
}

// Early stopping tracks its own metric, with min_delta: epochs since its best value.
int epochs_without_improvement(const std::vector<EpochRecord>& history, const EarlyStoppingConfig& rule, int before) {
  if (history.size() == 1) return 0;
  double best = metric_of(history.front(), rule.monitor);
  for (size_t i = 0; i + 1 < history.size(); ++i) {
    const double v = metric_of(history[i], rule.monitor);
    if (better(v, best, rule.monitor)) best = v;
  }
  return better(metric_of(history.back(), rule.monitor), best, rule.monitor, rule.min_delta) ? 0 : before + 1;
}

// The selected model on validation and test: metrics.json and the report.
void evaluate_selected_model(const TrainConfig& config, const RunData& d, models::Classifier& model,
                             const EvalOptions& eval_options, const TrainerState& state, const std::string& run_dir,
                             const std::string& best_path, const RunOptions& options, RunResult& result, RunLog& log) {
  // The reported model is the best epoch by the selection metric (Keras' restore_best_weights),
  // or the last epoch when early_stopping.restore_best is false.
  int selected_epoch = state.epochs_done;
  DistributedGroup* group = options.distributed;
  const bool writes = group == nullptr || group->is_main();
  if (config.early_stopping.restore_best) {
    if (writes) load_model_file(model, best_path);  // rank 0 wrote it; the others take its weights
    if (group) group->broadcast_model(model, true, true);
    selected_epoch = state.best_epoch;
  }
  nlohmann::json metrics = {{"selected_epoch", selected_epoch},
                            {"selection_metric", config.selection_metric},
                            {"selection_value", state.best_value},
                            {"split", {{"seed", config.split.seed}, {"train", d.split.train.size()}, {"val", d.split.val.size()},
                                       {"test", d.split.test.size()}, {"from_dataset", d.split.from_dataset}}}};
  result.val_report =
      evaluation_json(predict_on_ranks(group, model, d.dataset, d.split.val, config.preprocess, eval_options), d.dataset.classes);
  metrics["val"] = result.val_report;
  if (options.evaluate_test && !d.split.test.empty()) {
    result.test_report = evaluation_json(
        predict_on_ranks(group, model, d.dataset, d.split.test, config.preprocess, eval_options), d.dataset.classes);
    metrics["test"] = result.test_report;
    log("held-out test (" + std::to_string(d.split.test.size()) + " images), model of epoch " +
        std::to_string(selected_epoch) + ":\n" + result.test_report["report_text"].get<std::string>());
  }
  if (!writes) return;
  write_json_atomic((fs::path(run_dir) / "metrics.json").string(), metrics);
  write_run_report(run_dir, config, d.dataset, d.split, d.balanced, state.history, metrics);
}

}  // namespace

int epochs_recorded(const std::string& run_dir) {
  const fs::path history = fs::path(run_dir) / "history.json";
  if (!fs::exists(fs::path(run_dir) / "checkpoints" / "last.pt") || !fs::exists(history)) return -1;
  try {
    std::ifstream in(history);
    const nlohmann::json records = nlohmann::json::parse(in);
    return records.is_array() ? static_cast<int>(records.size()) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

RunResult run_training(const TrainConfig& config_in, const std::string& run_dir, const RunOptions& options) {
  TrainConfig config = config_in;
  DistributedGroup* group = options.distributed;
  const bool writes = group == nullptr || group->is_main();  // only rank 0 writes into the run folder
  if (writes) fs::create_directories(fs::path(run_dir) / "checkpoints");
  RunLog log((fs::path(run_dir) / "log.txt").string(), group ? group->rank() : 0);
  configure_threads(group ? rank_threads(config.threads, group->environment()) : config.threads);
  const DevicePolicy policy = resolve_device_policy(group ? group->device() : resolve_device(config.device),
                                                    config.precision, config.channels_last);
  configure_backend(policy);
  log("run " + run_dir + ": " + config.name + " on " + policy.describe() + ", " + std::to_string(at::get_num_threads()) +
      " threads" + (group ? ", " + group->describe() + ", " + std::to_string(config.batch_size / group->world_size()) +
                                " images per rank and step"
                          : ""));

  const RunData data = prepare_run_data(config, run_dir, group, log);
  const auto model = create_run_model(config, data, policy, log);
  auto optimizer = make_optimizer(config.optimizer, model->parameters());
  LossScaler scaler(policy.loss_scaling());
  EvalOptions eval_options;  // validation after each epoch, then the selected model on val and test
  eval_options.batch_size = std::max(32, config.batch_size);
  eval_options.workers = config.workers;
  eval_options.policy = policy;
  LrSchedule schedule(config.schedule, config.optimizer.lr, config.epochs);
  const torch::Tensor class_weights = torch::tensor(data.balanced.class_weights, torch::kFloat32).to(policy.device);

  const std::string last_path = (fs::path(run_dir) / "checkpoints" / "last.pt").string();
  const std::string best_path = (fs::path(run_dir) / "checkpoints" / "best.pt").string();
  TrainerState state;
  if ((options.resume || options.evaluate_only) && fs::exists(last_path)) {
    state = load_checkpoint(last_path, *model, *optimizer);
    if (policy.channels_last) to_channels_last(*model);  // loading takes the saved tensors' layout
    schedule.restore(state.schedule);
    scaler.restore(state.loss_scaler);
    log("resumed after epoch " + std::to_string(state.epochs_done));
  } else if (options.resume) {
    log("no checkpoint in " + run_dir + ": starting from scratch");
  }
  std::unique_ptr<GradientSync> gradients;
  std::unique_ptr<DataParallel> data_parallel;
  if (group) {
    // Every rank resumes from the same checkpoint (the run folder on a shared filesystem) and
    // starts from rank 0's weights and batch-norm buffers.
    group->require_same("the checkpoint to resume from",
                        state.epochs_done ? "last.pt after epoch " + std::to_string(state.epochs_done) : "none",
                        "Every rank must see the run folder " + run_dir + " (a filesystem shared by the machines)");
    group->broadcast_model(*model, true, true);
    gradients = std::make_unique<GradientSync>(*group, model->parameters(), config.distributed.bucket_mb);
    data_parallel = std::make_unique<DataParallel>(DataParallel{*gradients, options.interrupt});
  }

  RunResult result;
  result.run_dir = run_dir;
  const bool higher = config.selection_metric != "val_loss";
  if (state.best_epoch == 0) state.best_value = higher ? -1.0 : std::numeric_limits<double>::infinity();
  // A failed write (a full disk) stops the run naming the file and the cause; the checkpoints
  // already on disk are intact (atomic writes), so --resume continues from the last one.
  // With several ranks rank 0 writes, and every rank learns whether it could.
  const auto saving = [&](int epoch, const std::function<void()>& write) {
    std::optional<Error> failure;
    if (writes) {
      try {
        write();
      } catch (const Error& e) {
        failure = Error(e.code(), std::string(e.what()) + ". Training stopped while saving epoch " + std::to_string(epoch) +
                                      "; free some space, then continue from the last saved checkpoint with: loupe "
                                      "train --resume -o " + run_dir);
      }
    }
    if (group && group->any(failure.has_value()) && !failure) {
      throw Error(ErrorCode::Io, "rank 0 could not save epoch " + std::to_string(epoch) + " into " + run_dir +
                                     " (its log says why); every rank stops");
    }
    if (failure) throw *failure;
  };

  // Early stopping had already ended this run: resuming must not train on (the run would differ
  // from the one that was not interrupted).
  const bool had_stopped = state.epochs_done > 0 && config.early_stopping.patience > 0 &&
                           state.epochs_without_improvement >= config.early_stopping.patience;
  if (had_stopped) {  // also when only evaluating: a grid's shorter count read from a stopped run
    if (!options.evaluate_only) {
      log("early stopping had ended this run after epoch " + std::to_string(state.epochs_done) + ": nothing to continue");
    }
    result.stopped_early = true;
  }
  // Snapshots due at the epoch just loaded (the run was killed, or the disk was full, between its
  // checkpoint and the copy): the state just loaded is theirs.
  if (state.epochs_done > 0 && !options.evaluate_only) {
    for (const auto& [epoch, dest] : options.snapshots) {
      if (epoch != state.epochs_done && !(had_stopped && epoch > state.epochs_done)) continue;
      saving(state.epochs_done, [&, dest = dest] {
        if (epochs_recorded(dest) != state.epochs_done) write_epoch_snapshot(run_dir, dest, state.epochs_done);
      });
    }
  }

  const Trainer trainer{config, data, policy, *model, *optimizer, scaler, class_weights, options, last_path,
                        data_parallel.get()};
  for (int epoch = state.epochs_done; epoch < config.epochs && !options.evaluate_only && !had_stopped; ++epoch) {
    bool interrupt = options.interrupt && *options.interrupt;
    if (group) interrupt = group->any(interrupt);  // a Ctrl-C on any rank stops every rank here
    if (interrupt) {  // Ctrl-C between two epochs (after a checkpoint)
      log("interrupted after epoch " + std::to_string(state.epochs_done) + ": it is checkpointed; continue with --resume");
      result.interrupted = true;
      break;
    }
    const auto epoch_start = std::chrono::steady_clock::now();
    const double lr = schedule.lr_for_epoch(epoch);
    set_learning_rate(*optimizer, lr);
    model->set_backbone_trainable(epoch >= config.freeze_backbone_epochs);
    const int skipped_before = scaler.skipped_steps();
    const EpochTraining trained = train_epoch(trainer, epoch, state, log);
    if (trained.interrupted) {
      log("interrupted during epoch " + std::to_string(epoch + 1) + ": the last finished epoch (" +
          std::to_string(state.epochs_done) + ") is checkpointed; continue with --resume");
      result.interrupted = true;
      break;
    }
    if (scaler.skipped_steps() > skipped_before) {
      log("loss scaling: " + std::to_string(scaler.skipped_steps() - skipped_before) +
          " step(s) skipped this epoch (fp16 overflow in the loss or gradients); scale now " + fixed(scaler.scale(), 0));
    }

    // Batch norm: every rank takes rank 0's running statistics (distributed.h says why).
    if (group) group->broadcast_model(*model, false, true);
    const Predictions val = predict_on_ranks(group, *model, data.dataset, data.split.val, config.preprocess, eval_options);
    const ClassificationReport val_report = classification_report(data.dataset.classes, val.probabilities, val.labels);
    EpochRecord record;
    record.epoch = epoch + 1;
    record.lr = lr;
    record.train_loss = trained.seen ? trained.loss_sum / double(trained.seen) : 0.0;
    record.train_accuracy = trained.seen ? double(trained.correct) / double(trained.seen) : 0.0;
    record.val_loss = val.mean_loss;
    record.val_accuracy = val_report.accuracy;
    record.val_balanced_accuracy = val_report.balanced_accuracy;
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    record.images_per_second = double(trained.seen) / std::max(trained.seconds, 1e-9);
    state.history.push_back(record);
    schedule.observe(record.val_loss);
    state.schedule = schedule.state();
    state.epochs_done = epoch + 1;
    if (scaler.enabled()) state.loss_scaler = scaler.state();

    const bool improved = better(metric_of(record, config.selection_metric), state.best_value, config.selection_metric);
    if (improved) {
      state.best_value = metric_of(record, config.selection_metric);
      state.best_epoch = epoch + 1;
      saving(epoch + 1, [&] { save_model_file(*model, best_path); });
    }
    state.epochs_without_improvement =
        epochs_without_improvement(state.history, config.early_stopping, state.epochs_without_improvement);
    saving(epoch + 1, [&] {
      save_checkpoint(last_path, *model, *optimizer, state);
      write_history(run_dir, state.history);
    });
    log("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(config.epochs) + ": lr " + fixed(lr, 6) +
        ", train loss " + fixed(record.train_loss) + " acc " + fixed(record.train_accuracy) + ", val loss " +
        fixed(record.val_loss) + " acc " + fixed(record.val_accuracy) + ", " + fixed(record.images_per_second, 1) +
        " img/s, " + duration(record.seconds) + (improved ? " *" : ""));
    if (const auto snapshot = options.snapshots.find(epoch + 1); snapshot != options.snapshots.end()) {
      saving(epoch + 1, [&] { write_epoch_snapshot(run_dir, snapshot->second, epoch + 1); });
    }
    if (config.early_stopping.patience > 0 && state.epochs_without_improvement >= config.early_stopping.patience) {
      log("early stopping: " + config.early_stopping.monitor + " did not improve for " +
          std::to_string(config.early_stopping.patience) + " epochs");
      result.stopped_early = true;
      for (const auto& [later, dest] : options.snapshots) {
        if (later > epoch + 1) saving(epoch + 1, [&] { write_epoch_snapshot(run_dir, dest, epoch + 1); });
      }
      break;
    }
  }
  result.epochs_run = state.epochs_done;
  result.best_epoch = state.best_epoch;
  result.best_value = state.best_value;
  if (result.interrupted || state.best_epoch == 0) return result;
  evaluate_selected_model(config, data, *model, eval_options, state, run_dir, best_path, options, result, log);
  return result;
}

}  // namespace loupe::train
