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
#include <random>
#include <thread>

#include "loupe/data/balance.h"
#include "loupe/train/loader.h"
#include "loupe/train/optim.h"
#include "loupe/models/pretrained.h"
#include "loupe/train/precision.h"
#include "loupe/train/checkpoint.h"
#include "loupe/train/report.h"

namespace fs = std::filesystem;

namespace loupe::train {

namespace {

class RunLog {
 public:
  explicit RunLog(const std::string& path) : out_(path, std::ios::app) {}
  void operator()(const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
    out_ << line << "\n";
    out_.flush();
  }

 private:
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

StepResult train_step(models::Classifier& model, torch::optim::Optimizer& optimizer, const torch::Tensor& images,
                      const torch::Tensor& labels, const torch::Tensor& class_weights, const DevicePolicy& policy,
                      LossScaler& scaler) {
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

RunData prepare_run_data(TrainConfig& config, const std::string& run_dir, RunLog& log) {
  RunData d;
  d.dataset = load_run_dataset(config);
  if (!d.dataset.skipped.empty()) {
    log(std::to_string(d.dataset.skipped.size()) + " file(s) skipped (listed in dataset.json), e.g. " +
        d.dataset.skipped.front().path + ": " + d.dataset.skipped.front().reason);
  }
  write_json_atomic((fs::path(run_dir) / "dataset.json").string(), d.dataset.summary_json());
  d.split = data::stratified_split(d.dataset, config.split);
  write_json_atomic((fs::path(run_dir) / "split.json").string(), d.split.to_json(d.dataset));
  d.balanced = data::balance_training(d.dataset, d.split.train, config.balancing, config.seed);
  write_json_atomic((fs::path(run_dir) / "balance.json").string(), d.balanced.to_json(d.dataset, config.balancing));
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
  write_json_atomic((fs::path(run_dir) / "config.json").string(), config.to_json());
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
  BatchLoader loader(t.data.dataset, shuffled_order(t.data.balanced.indices, t.config.seed, epoch), t.config.preprocess,
                     loader_options);
  ProgressBar bar(t.options.progress, epoch + 1, t.config.epochs, loader.num_batches());
  EpochTraining out;
  size_t done = 0;
  int consecutive_nonfinite = 0;
  while (auto batch = loader.next()) {
    for (const auto& e : batch->errors) log("unreadable during training, skipped: " + e);
    ++done;
    if (batch->samples.empty()) continue;
    const torch::Tensor labels = batch->labels.to(t.policy.device);
    const StepResult step =
        train_step(t.model, t.optimizer, batch->images.to(t.policy.device), labels, t.class_weights, t.policy, t.scaler);
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
    out.loss_sum += loss_value * double(batch->samples.size());
    out.correct += step.logits.argmax(1).eq(labels).sum().item<int64_t>();
    out.seen += static_cast<int64_t>(batch->samples.size());
    bar.update(done, out.loss_sum / double(out.seen), out.seen);
    if (t.options.interrupt && *t.options.interrupt) {
      out.interrupted = true;
      break;
    }
  }
  bar.finish();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
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
  if (config.early_stopping.restore_best) {
    load_model_file(model, best_path);
    selected_epoch = state.best_epoch;
  }
  nlohmann::json metrics = {{"selected_epoch", selected_epoch},
                            {"selection_metric", config.selection_metric},
                            {"selection_value", state.best_value},
                            {"split", {{"seed", config.split.seed}, {"train", d.split.train.size()}, {"val", d.split.val.size()},
                                       {"test", d.split.test.size()}, {"from_dataset", d.split.from_dataset}}}};
  result.val_report = evaluation_json(predict(model, d.dataset, d.split.val, config.preprocess, eval_options), d.dataset.classes);
  metrics["val"] = result.val_report;
  if (options.evaluate_test && !d.split.test.empty()) {
    result.test_report =
        evaluation_json(predict(model, d.dataset, d.split.test, config.preprocess, eval_options), d.dataset.classes);
    metrics["test"] = result.test_report;
    log("held-out test (" + std::to_string(d.split.test.size()) + " images), model of epoch " +
        std::to_string(selected_epoch) + ":\n" + result.test_report["report_text"].get<std::string>());
  }
  write_json_atomic((fs::path(run_dir) / "metrics.json").string(), metrics);
  write_run_report(run_dir, config, d.dataset, d.split, d.balanced, state.history, metrics);
}

}  // namespace

RunResult run_training(const TrainConfig& config_in, const std::string& run_dir, const RunOptions& options) {
  TrainConfig config = config_in;
  fs::create_directories(fs::path(run_dir) / "checkpoints");
  RunLog log((fs::path(run_dir) / "log.txt").string());
  configure_threads(config.threads);
  const DevicePolicy policy = resolve_device_policy(resolve_device(config.device), config.precision, config.channels_last);
  configure_backend(policy);
  log("run " + run_dir + ": " + config.name + " on " + policy.describe() + ", " + std::to_string(at::get_num_threads()) +
      " threads");

  const RunData data = prepare_run_data(config, run_dir, log);
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

  RunResult result;
  result.run_dir = run_dir;
  const bool higher = config.selection_metric != "val_loss";
  if (state.best_epoch == 0) state.best_value = higher ? -1.0 : std::numeric_limits<double>::infinity();
  // A failed write (a full disk) stops the run naming the file and the cause; the checkpoints
  // already on disk are intact (atomic writes), so --resume continues from the last one.
  const auto saving = [&](int epoch, const std::function<void()>& write) {
    try {
      write();
    } catch (const Error& e) {
      throw Error(e.code(), std::string(e.what()) + ". Training stopped while saving epoch " + std::to_string(epoch) +
                                "; free some space, then continue from the last saved checkpoint with: loupe train "
                                "--resume -o " + run_dir);
    }
  };

  const Trainer trainer{config, data, policy, *model, *optimizer, scaler, class_weights, options, last_path};
  for (int epoch = state.epochs_done; epoch < config.epochs && !options.evaluate_only; ++epoch) {
    if (options.interrupt && *options.interrupt) {  // Ctrl-C between two epochs (after a checkpoint)
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

    const Predictions val = predict(*model, data.dataset, data.split.val, config.preprocess, eval_options);
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
    if (config.early_stopping.patience > 0 && state.epochs_without_improvement >= config.early_stopping.patience) {
      log("early stopping: " + config.early_stopping.monitor + " did not improve for " +
          std::to_string(config.early_stopping.patience) + " epochs");
      result.stopped_early = true;
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
