#include "trainer.h"

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

#include "balance.h"
#include "loader.h"
#include "optim.h"
#include "loupe/models/pretrained.h"
#include "precision.h"
#include "report.h"

namespace fs = std::filesystem;

namespace loupe::train {

namespace {

// [SECTION] Files: every write goes to a temporary name first, then is renamed into place, so a
// crash or a full disk never leaves a truncated checkpoint or report behind.

// Writes what `fill` produces to PATH.tmp (POSIX write, fsync), then renames it to PATH. On any
// failure PATH.tmp is removed, PATH is untouched, and Error(Io) names the file and the cause
// ("No space left on device"). `fill` gets a sink that always reports success: LibTorch 1.13's zip
// writer aborts the process (an exception from its destructor) when a write comes back short, so
// the first error is only recorded and later bytes are dropped.
using Sink = std::function<size_t(const void*, size_t)>;

void write_file_atomic(const std::string& path, const std::function<void(const Sink&)>& fill) {
  const std::string tmp = path + ".tmp";
  int error = 0;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) error = errno;
  const auto sink = [&](const void* data, size_t n) -> size_t {
    const char* p = static_cast<const char*>(data);
    for (size_t left = n; left > 0 && error == 0;) {
      const ssize_t w = ::write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) error = w < 0 ? errno : EIO;
      else {
        p += w;
        left -= static_cast<size_t>(w);
      }
    }
    return n;
  };
  std::string failure;
  if (error == 0) {
    try {
      fill(sink);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (error == 0 && failure.empty() && ::fsync(fd) != 0) error = errno;
  }
  if (fd >= 0 && ::close(fd) != 0 && error == 0) error = errno;
  if (error != 0 || !failure.empty()) {
    ::unlink(tmp.c_str());
    std::string cause = error ? std::strerror(error) : failure;
    if (error == ENOSPC || error == EDQUOT) cause += " (the disk is full)";
    throw Error(ErrorCode::Io, path + ": write failed: " + cause + "; the previous " +
                                   fs::path(path).filename().string() + " is kept, nothing was replaced");
  }
  std::error_code renamed;
  fs::rename(tmp, path, renamed);
  if (renamed) {
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::Io, path + ": cannot replace it: " + renamed.message() + "; the previous version is kept");
  }
}

}  // namespace

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](const Sink& sink) { sink(text.data(), text.size()); });
}

namespace {

void write_json(const std::string& path, const nlohmann::json& json) { write_text_atomic(path, json.dump(2) + "\n"); }

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

// Keeps only the listed classes, relabelled in the listed order.
void keep_classes(data::Dataset& ds, const std::vector<std::string>& keep) {
  if (keep.empty()) return;
  std::vector<int> new_label(ds.classes.size(), -1);
  for (size_t k = 0; k < keep.size(); ++k) {
    const auto it = std::find(ds.classes.begin(), ds.classes.end(), keep[k]);
    if (it == ds.classes.end()) {
      std::string known;
      for (const auto& c : ds.classes) known += (known.empty() ? "" : ", ") + c;
      throw Error(ErrorCode::InvalidArgument, "data.include_classes: '" + keep[k] + "' is not a class of " + ds.origin +
                                                  " (" + known + ")");
    }
    new_label[static_cast<size_t>(it - ds.classes.begin())] = static_cast<int>(k);
  }
  std::vector<data::Sample> kept;
  for (auto s : ds.samples) {
    if (new_label[static_cast<size_t>(s.label)] < 0) continue;
    s.label = new_label[static_cast<size_t>(s.label)];
    kept.push_back(s);
  }
  ds.samples = std::move(kept);
  ds.classes = keep;
}

// Keeps at most n images per class (seeded choice), for smoke runs on real data.
void limit_per_class(data::Dataset& ds, int n, uint64_t seed) {
  if (n <= 0) return;
  std::vector<std::vector<size_t>> by_class(ds.classes.size());
  for (size_t i = 0; i < ds.samples.size(); ++i) by_class[static_cast<size_t>(ds.samples[i].label)].push_back(i);
  std::vector<data::Sample> kept;
  for (auto& members : by_class) {
    const auto order = shuffled_order(members, seed, -1);
    for (size_t k = 0; k < order.size() && k < static_cast<size_t>(n); ++k) kept.push_back(ds.samples[order[k]]);
  }
  std::sort(kept.begin(), kept.end(), [](const data::Sample& a, const data::Sample& b) { return a.path < b.path; });
  ds.samples = std::move(kept);
}

// [SECTION] Checkpoints

struct TrainerState {
  int epochs_done = 0;
  std::vector<EpochRecord> history;
  nlohmann::json schedule;
  int best_epoch = 0;
  double best_value = 0;
  int epochs_without_improvement = 0;
  nlohmann::json loss_scaler;  // LossScaler::state(); null without loss scaling
  nlohmann::json to_json() const {
    nlohmann::json h = nlohmann::json::array();
    for (const auto& r : history) h.push_back(r.to_json());
    return {{"epochs_done", epochs_done}, {"history", h}, {"schedule", schedule}, {"best_epoch", best_epoch},
            {"best_value", best_value}, {"epochs_without_improvement", epochs_without_improvement},
            {"loss_scaler", loss_scaler}};
  }
  static TrainerState from_json(const nlohmann::json& j) {
    TrainerState s;
    s.epochs_done = j.at("epochs_done").get<int>();
    for (const auto& r : j.at("history")) s.history.push_back(EpochRecord::from_json(r));
    s.schedule = j.at("schedule");
    s.best_epoch = j.at("best_epoch").get<int>();
    s.best_value = j.at("best_value").get<double>();
    s.epochs_without_improvement = j.at("epochs_without_improvement").get<int>();
    s.loss_scaler = j.value("loss_scaler", nlohmann::json());  // absent in checkpoints before mixed precision
    return s;
  }
};

// tmp + rename: a crash or a full disk leaves the previous file intact.
void save_archive_atomic(torch::serialize::OutputArchive& archive, const std::string& path) {
  write_file_atomic(path, [&](const Sink& sink) { archive.save_to(sink); });
}

void save_checkpoint(const std::string& path, models::Classifier& model, torch::optim::Optimizer& optimizer,
                     const TrainerState& state) {
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("trainer_state", torch::IValue(state.to_json().dump()));
  save_archive_atomic(archive, path);
}

// Checkpoints record the device their tensors were on; they are loaded onto the model's device
// instead, so a run trained on a GPU can be resumed, evaluated or exported on a CPU-only machine.
torch::Device device_of(models::Classifier& model) {
  const auto parameters = model.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

TrainerState load_checkpoint(const std::string& path, models::Classifier& model, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive, model_archive, optimizer_archive;
  try {
    archive.load_from(path, device_of(model));
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    model.load(model_archive);
    optimizer.load(optimizer_archive);
    torch::IValue state;
    archive.read("trainer_state", state);
    return TrainerState::from_json(nlohmann::json::parse(state.toStringRef()));
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::Io, path + ": cannot resume from this checkpoint: " + e.what_without_backtrace());
  }
}

}  // namespace

data::Dataset load_run_dataset(const TrainConfig& config) {
  data::LoadOptions load_options;
  load_options.npz_class_names = config.class_names;
  data::Dataset dataset = data::load_dataset(config.data_path, load_options);
  keep_classes(dataset, config.include_classes);
  limit_per_class(dataset, config.max_per_class, config.seed);
  return dataset;
}

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

void save_model_file(models::Classifier& model, const std::string& path) {
  torch::serialize::OutputArchive archive;
  model.save(archive);
  save_archive_atomic(archive, path);
}

void load_model_file(models::Classifier& model, const std::string& path) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device_of(model));
    torch::serialize::InputArchive model_archive;
    if (archive.try_read("model", model_archive)) model.load(model_archive);  // a checkpoint
    else model.load(archive);                                                  // a plain model file
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::Io, path + ": cannot load weights: " + e.what_without_backtrace());
  }
}

// [SECTION] Prediction

Predictions predict(models::Classifier& model, const data::Dataset& dataset, const std::vector<size_t>& samples,
                    const PreprocessSpec& spec, const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  model.eval();
  LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.workers = options.workers;
  BatchLoader loader(dataset, samples, spec, loader_options);
  Predictions out;
  double loss_sum = 0;
  while (auto batch = loader.next()) {
    out.errors.insert(out.errors.end(), batch->errors.begin(), batch->errors.end());
    if (batch->samples.empty()) continue;
    torch::Tensor logits;
    {
      AutocastScope autocast(options.policy);
      logits = model.forward(batch_layout(batch->images.to(options.policy.device), options.policy));
    }
    logits = logits.to(torch::kCPU, torch::kFloat64);
    const torch::Tensor log_probs = torch::log_softmax(logits, 1);
    loss_sum += -log_probs.gather(1, batch->labels.unsqueeze(1)).sum().item<double>();
    const torch::Tensor probs = log_probs.exp().contiguous();
    const int64_t classes = probs.size(1);
    const double* p = probs.data_ptr<double>();
    for (size_t i = 0; i < batch->samples.size(); ++i) {
      out.samples.push_back(batch->samples[i]);
      out.labels.push_back(static_cast<int>(batch->labels[static_cast<int64_t>(i)].item<int64_t>()));
      out.probabilities.emplace_back(p + static_cast<int64_t>(i) * classes, p + (static_cast<int64_t>(i) + 1) * classes);
    }
  }
  out.mean_loss = out.samples.empty() ? 0.0 : loss_sum / double(out.samples.size());
  return out;
}

nlohmann::json evaluation_json(const Predictions& predictions, const std::vector<std::string>& classes) {
  const ClassificationReport report = classification_report(classes, predictions.probabilities, predictions.labels);
  ConfusionMatrix cm(classes);
  for (size_t i = 0; i < predictions.labels.size(); ++i) cm.add(predictions.labels[i], argmax(predictions.probabilities[i]));
  nlohmann::json j = report.to_json();
  j["log_loss"] = predictions.mean_loss;
  j["confusion_matrix"] = cm.to_json();
  j["report_text"] = report.to_text();
  j["unreadable"] = predictions.errors;
  return j;
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

RunResult run_training(const TrainConfig& config_in, const std::string& run_dir, const RunOptions& options) {
  TrainConfig config = config_in;
  fs::create_directories(fs::path(run_dir) / "checkpoints");
  RunLog log((fs::path(run_dir) / "log.txt").string());
  configure_threads(config.threads);
  const DevicePolicy policy = resolve_device_policy(resolve_device(config.device), config.precision, config.channels_last);
  const torch::Device device = policy.device;
  configure_backend(policy);
  log("run " + run_dir + ": " + config.name + " on " + policy.describe() + ", " + std::to_string(at::get_num_threads()) +
      " threads");

  // Data, split and balancing: written before training so a failed run can still be audited.
  data::Dataset dataset = load_run_dataset(config);
  if (!dataset.skipped.empty()) {
    log(std::to_string(dataset.skipped.size()) + " file(s) skipped (listed in dataset.json), e.g. " +
        dataset.skipped.front().path + ": " + dataset.skipped.front().reason);
  }
  write_json((fs::path(run_dir) / "dataset.json").string(), dataset.summary_json());
  const data::Split split = data::stratified_split(dataset, config.split);
  write_json((fs::path(run_dir) / "split.json").string(), split.to_json(dataset));
  const data::BalancedTraining balanced = data::balance_training(dataset, split.train, config.balancing, config.seed);
  write_json((fs::path(run_dir) / "balance.json").string(), balanced.to_json(dataset, config.balancing));
  log("data: " + std::to_string(dataset.samples.size()) + " images, " + std::to_string(dataset.classes.size()) +
      " classes; split train " + std::to_string(split.train.size()) + " / val " + std::to_string(split.val.size()) +
      " / test " + std::to_string(split.test.size()) + (split.from_dataset ? " (the data set's own split)" : "") +
      "; balancing " + data::to_string(config.balancing) + " -> " + std::to_string(balanced.indices.size()) +
      " training images");
  if (split.val.empty()) throw Error(ErrorCode::InvalidArgument, "split: no validation images (set split.val > 0)");

  config.model.num_classes = static_cast<int>(dataset.classes.size());
  write_json((fs::path(run_dir) / "config.json").string(), config.to_json());
  torch::manual_seed(config.seed);  // weight initialisation is part of the run's reproducibility
  auto model = models::create_model(config.model);
  if (!config.pretrained_path.empty()) {
    const models::PretrainedReport report = models::load_pretrained(*model, config.pretrained_path);
    log("pretrained: " + report.summary());
    // Folded batch norms give train-mode statistics far from the pretrained ones: re-express them
    // on up to 64 training images first (eval function unchanged), see pretrained.h.
    LoaderOptions calibration;
    calibration.batch_size = 64;
    calibration.workers = config.workers;
    std::vector<size_t> first(balanced.indices.begin(),
                              balanced.indices.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(64, balanced.indices.size())));
    BatchLoader loader(dataset, first, config.preprocess, calibration);
    if (auto batch = loader.next(); batch && batch->samples.size() >= 2) {
      torch::NoGradGuard no_grad;
      log("pretrained: " + std::to_string(models::calibrate_batchnorm(*model, batch->images)) +
          " batch norms calibrated on " + std::to_string(batch->samples.size()) + " training images");
    }
  }
  model->to(device);
  if (policy.channels_last) to_channels_last(*model);
  auto optimizer = make_optimizer(config.optimizer, model->parameters());
  LossScaler scaler(policy.loss_scaling());
  EvalOptions eval_options;  // validation after each epoch, then the selected model on val and test
  eval_options.batch_size = std::max(32, config.batch_size);
  eval_options.workers = config.workers;
  eval_options.policy = policy;
  LrSchedule schedule(config.schedule, config.optimizer.lr, config.epochs);
  const torch::Tensor class_weights =
      torch::tensor(balanced.class_weights, torch::kFloat32).to(device);

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
  std::ofstream history_csv;
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
    // Dropout and stochastic depth draw from torch's generator: reseeded per epoch so that a
    // resumed run continues exactly like an uninterrupted one.
    torch::manual_seed(mix(config.seed ^ mix(static_cast<uint64_t>(epoch))));
    model->train();

    LoaderOptions loader_options;
    loader_options.batch_size = config.batch_size;
    loader_options.workers = config.workers;
    loader_options.seed = config.seed;
    loader_options.epoch = epoch;
    if (config.augment.enabled()) loader_options.augment = config.augment;
    BatchLoader loader(dataset, shuffled_order(balanced.indices, config.seed, epoch), config.preprocess, loader_options);
    ProgressBar bar(options.progress, epoch + 1, config.epochs, loader.num_batches());
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    size_t done = 0;
    const int skipped_before = scaler.skipped_steps();
    int consecutive_nonfinite = 0;
    bool interrupted = false;
    while (auto batch = loader.next()) {
      for (const auto& e : batch->errors) log("unreadable during training, skipped: " + e);
      ++done;
      if (batch->samples.empty()) continue;
      const torch::Tensor labels = batch->labels.to(device);
      const StepResult step = train_step(*model, *optimizer, batch->images.to(device), labels, class_weights, policy, scaler);
      const double loss_value = step.loss;
      // With fp16 loss scaling an occasional overflowing batch is skipped, as PyTorch's AMP loop
      // does; a run that keeps overflowing (or any non-finite loss without scaling) stops.
      consecutive_nonfinite = std::isfinite(loss_value) ? 0 : consecutive_nonfinite + 1;
      if (consecutive_nonfinite > 0 && scaler.enabled() && consecutive_nonfinite < kMaxConsecutiveSkippedSteps) continue;
      if (!std::isfinite(loss_value)) {
        bar.finish();
        throw Error(ErrorCode::InvalidArgument,
                    "training stopped: the loss became " + std::to_string(loss_value) + " in epoch " +
                        std::to_string(epoch + 1) + ", batch " + std::to_string(done) +
                        (state.epochs_done > 0 ? "; the last good checkpoint (epoch " + std::to_string(state.epochs_done) +
                                                     ") is kept in " + last_path
                                               : "; no epoch had finished, so there is no checkpoint") +
                        ". Try a lower learning rate" +
                        (scaler.enabled() ? " or precision bf16/fp32 (fp16 overflowed in " +
                                                std::to_string(kMaxConsecutiveSkippedSteps) + " batches in a row)"
                                          : "") +
                        ".");
      }
      loss_sum += loss_value * double(batch->samples.size());
      correct += step.logits.argmax(1).eq(labels).sum().item<int64_t>();
      seen += static_cast<int64_t>(batch->samples.size());
      bar.update(done, loss_sum / double(seen), seen);
      if (options.interrupt && *options.interrupt) {
        interrupted = true;
        break;
      }
    }
    bar.finish();
    if (interrupted) {
      log("interrupted during epoch " + std::to_string(epoch + 1) + ": the last finished epoch (" +
          std::to_string(state.epochs_done) + ") is checkpointed; continue with --resume");
      result.interrupted = true;
      break;
    }
    const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    if (scaler.skipped_steps() > skipped_before) {
      log("loss scaling: " + std::to_string(scaler.skipped_steps() - skipped_before) +
          " step(s) skipped this epoch (fp16 overflow in the loss or gradients); scale now " + fixed(scaler.scale(), 0));
    }

    const Predictions val = predict(*model, dataset, split.val, config.preprocess, eval_options);
    const ClassificationReport val_report = classification_report(dataset.classes, val.probabilities, val.labels);

    EpochRecord record;
    record.epoch = epoch + 1;
    record.lr = lr;
    record.train_loss = seen ? loss_sum / double(seen) : 0.0;
    record.train_accuracy = seen ? double(correct) / double(seen) : 0.0;
    record.val_loss = val.mean_loss;
    record.val_accuracy = val_report.accuracy;
    record.val_balanced_accuracy = val_report.balanced_accuracy;
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    record.images_per_second = double(seen) / std::max(train_seconds, 1e-9);
    state.history.push_back(record);
    schedule.observe(record.val_loss);
    state.schedule = schedule.state();
    state.epochs_done = epoch + 1;
    if (scaler.enabled()) state.loss_scaler = scaler.state();

    const double value = metric_of(record, config.selection_metric);
    const bool improved = better(value, state.best_value, config.selection_metric);
    if (improved) {
      state.best_value = value;
      state.best_epoch = epoch + 1;
      saving(epoch + 1, [&] { save_model_file(*model, best_path); });
    }
    const double monitored = metric_of(record, config.early_stopping.monitor);
    // Early stopping tracks its own metric, with min_delta.
    if (state.history.size() == 1) state.epochs_without_improvement = 0;
    else {
      double best_monitored = metric_of(state.history.front(), config.early_stopping.monitor);
      for (size_t i = 0; i + 1 < state.history.size(); ++i) {
        const double v = metric_of(state.history[i], config.early_stopping.monitor);
        if (better(v, best_monitored, config.early_stopping.monitor)) best_monitored = v;
      }
      if (better(monitored, best_monitored, config.early_stopping.monitor, config.early_stopping.min_delta)) {
        state.epochs_without_improvement = 0;
      } else {
        ++state.epochs_without_improvement;
      }
    }
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

  // The reported model is the best epoch by the selection metric (Keras' restore_best_weights),
  // or the last epoch when early_stopping.restore_best is false.
  int selected_epoch = state.epochs_done;
  if (config.early_stopping.restore_best) {
    load_model_file(*model, best_path);
    selected_epoch = state.best_epoch;
  }
  nlohmann::json metrics = {{"selected_epoch", selected_epoch},
                            {"selection_metric", config.selection_metric},
                            {"selection_value", state.best_value},
                            {"split", {{"seed", config.split.seed}, {"train", split.train.size()}, {"val", split.val.size()},
                                       {"test", split.test.size()}, {"from_dataset", split.from_dataset}}}};
  result.val_report = evaluation_json(predict(*model, dataset, split.val, config.preprocess, eval_options), dataset.classes);
  metrics["val"] = result.val_report;
  if (options.evaluate_test && !split.test.empty()) {
    result.test_report =
        evaluation_json(predict(*model, dataset, split.test, config.preprocess, eval_options), dataset.classes);
    metrics["test"] = result.test_report;
    log("held-out test (" + std::to_string(split.test.size()) + " images), model of epoch " +
        std::to_string(selected_epoch) + ":\n" + result.test_report["report_text"].get<std::string>());
  }
  write_json((fs::path(run_dir) / "metrics.json").string(), metrics);
  write_run_report(run_dir, config, dataset, split, balanced, state.history, metrics);
  return result;
}

}  // namespace loupe::train
