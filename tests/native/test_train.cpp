// The training backend: Adamax against its published rule, schedules, configs, and real
// training runs on generated and (when present) real data.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)
#include "../core/skip.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "loupe/train/adamax.h"
#include "loupe/train/cross_validation.h"
#include "loupe/train/baselines.h"
#include "fixtures.h"
#include "loupe/train/optim.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::train;
using Catch::Matchers::Contains;

namespace {

nlohmann::json small_config(const fs::path& data, int epochs) {
  return {{"name", "unit"},
          {"data", {{"path", data.string()}}},
          {"split", {{"val", 0.2}, {"test", 0.2}, {"seed", 3}}},
          {"preprocess", {{"color", "rgb"}, {"size", 32}}},
          {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {8, 16}}, {"hidden_units", 32}, {"dropout", 0.1}}},
          {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}},
          {"augment", {{"horizontal_flip", 0.5}}},
          {"epochs", epochs},
          {"batch_size", 8},
          {"workers", 2},
          {"threads", 2},
          {"device", "cpu"}};  // bit-exact resume is a CPU property (GPU kernels may be nondeterministic)
}

RunOptions quiet() {
  RunOptions o;
  o.progress = false;
  return o;
}

std::vector<torch::Tensor> weights_of(const std::string& checkpoint, const TrainConfig& config) {
  auto model = models::create_model(config.model);
  load_model_file(*model, checkpoint);
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

TEST_CASE("Adamax follows the published update rule (Kingma & Ba 2015, Algorithm 2)", "[train][adamax]") {
  // Paper: m = b1 m + (1 - b1) g;  u = max(b2 u, |g|);  theta -= lr / (1 - b1^t) * m / u.
  // With eps = 0 PyTorch's variant is exactly the paper's rule.
  const double lr = 0.01, b1 = 0.9, b2 = 0.999;
  const std::vector<double> targets = {3.0, -2.0, 0.5};
  torch::Tensor theta = torch::tensor({0.5, 1.5, -1.0}, torch::kFloat64).requires_grad_(true);
  Adamax optimizer({theta}, AdamaxOptions(lr).betas({b1, b2}).eps(0.0));
  std::vector<double> ref = {0.5, 1.5, -1.0}, m(3, 0.0), u(3, 0.0);
  for (int t = 1; t <= 25; ++t) {
    optimizer.zero_grad();
    // loss = sum((theta - target)^2 * k) with a different curvature per coordinate
    const torch::Tensor loss = ((theta - torch::tensor(targets, torch::kFloat64)).pow(2) *
                                torch::tensor({1.0, 3.0, 0.2}, torch::kFloat64)).sum();
    loss.backward();
    optimizer.step();
    const double k[3] = {1.0, 3.0, 0.2};
    for (int i = 0; i < 3; ++i) {
      const double g = 2.0 * k[i] * (ref[i] - targets[i]);
      m[i] = b1 * m[i] + (1 - b1) * g;
      u[i] = std::max(b2 * u[i], std::abs(g));
      ref[i] -= lr / (1 - std::pow(b1, t)) * m[i] / u[i];
    }
  }
  for (int i = 0; i < 3; ++i) CHECK(theta[i].item<double>() == Approx(ref[i]).epsilon(1e-12));
}

TEST_CASE("Adamax state survives save/load: resuming equals not stopping", "[train][adamax]") {
  const auto run = [](int steps, torch::Tensor& w, Adamax& opt) {
    for (int s = 0; s < steps; ++s) {
      opt.zero_grad();
      (w * w).sum().backward();
      opt.step();
    }
  };
  torch::Tensor a = torch::ones({4}).requires_grad_(true);
  Adamax straight({a}, AdamaxOptions(0.1));
  run(10, a, straight);

  torch::Tensor b = torch::ones({4}).requires_grad_(true);
  Adamax first({b}, AdamaxOptions(0.1));
  run(5, b, first);
  torch::serialize::OutputArchive archive;
  first.save(archive);
  std::stringstream stream;
  archive.save_to(stream);
  torch::Tensor c = b.detach().clone().requires_grad_(true);
  Adamax second({c}, AdamaxOptions(0.1));
  torch::serialize::InputArchive in;
  in.load_from(stream);
  second.load(in);
  run(5, c, second);
  CHECK(torch::allclose(a, c, 0, 0));
}

TEST_CASE("learning-rate schedules", "[train][schedule]") {
  ScheduleConfig step;
  step.kind = "step";
  step.step_size = 2;
  step.gamma = 0.5;
  const LrSchedule s(step, 1.0, 10);
  CHECK(s.lr_for_epoch(0) == 1.0);
  CHECK(s.lr_for_epoch(2) == 0.5);
  CHECK(s.lr_for_epoch(5) == 0.25);

  ScheduleConfig cosine;
  cosine.kind = "cosine";
  const LrSchedule c(cosine, 1.0, 10);
  CHECK(c.lr_for_epoch(0) == Approx(1.0));
  CHECK(c.lr_for_epoch(5) == Approx(0.5));

  ScheduleConfig plateau;  // seed 002: ReduceLROnPlateau(patience=1)
  plateau.kind = "plateau";
  plateau.patience = 1;
  plateau.factor = 0.1;
  LrSchedule p(plateau, 1e-3, 10);
  p.observe(1.0);
  CHECK(p.lr_for_epoch(1) == Approx(1e-3));
  p.observe(1.1);  // no improvement for 1 epoch -> reduce
  CHECK(p.lr_for_epoch(2) == Approx(1e-4));
  LrSchedule restored(plateau, 1e-3, 10);
  restored.restore(p.state());
  CHECK(restored.lr_for_epoch(3) == Approx(1e-4));
}

TEST_CASE("configs: strict keys, consistent shapes", "[train][config]") {
  const test::TempDir dir;
  nlohmann::json good = small_config(dir.path, 1);
  CHECK_NOTHROW(TrainConfig::from_json(good));
  nlohmann::json bad = good;
  bad["optimizer"]["learning_rate"] = 0.1;
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(bad); }), Contains("optimizer.learning_rate"));
  bad = good;
  bad["optimizer"]["name"] = "lion";
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(bad); }), Contains("optimizer.name") && Contains("'lion'"));
  bad = good;
  bad["model"] = {{"architecture", "resnet1000"}};
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(bad); }), Contains("resnet18"));
  bad = good;
  bad["model"]["in_channels"] = 1;
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(bad); }), Contains("model.in_channels"));
  bad = good;
  bad["epochs"] = "ten";
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(bad); }), Contains("epochs"));
  bad = good;
  bad["batchsize"] = 8;
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(bad); }), Contains("batchsize: unknown key"));
  bad = good;
  bad.erase("data");
  CHECK_THAT(test::error_of([&] { TrainConfig::from_json(bad); }), Contains("data.path"));

  // "extends" merges onto a base file; set_dotted is what grids and --set use.
  std::ofstream(dir.path / "base.json") << good.dump();
  std::ofstream(dir.path / "smoke.json") << R"({"extends": "base.json", "epochs": 3, "optimizer": {"lr": 0.01}})";
  const TrainConfig smoke = load_config((dir.path / "smoke.json").string());
  CHECK(smoke.epochs == 3);
  CHECK(smoke.optimizer.lr == 0.01);
  CHECK(smoke.optimizer.name == "adam");
  // A loop of "extends" is an error naming it (it once recursed until the stack ran out).
  std::ofstream(dir.path / "loop-a.json") << R"({"extends": "loop-b.json", "epochs": 3})";
  std::ofstream(dir.path / "loop-b.json") << R"({"extends": "./loop-a.json"})";
  std::ofstream(dir.path / "self.json") << R"({"extends": "self.json"})";
  CHECK_THAT(test::error_of([&] { load_config((dir.path / "loop-a.json").string()); }),
             Contains("\"extends\" makes a loop") && Contains("loop-b.json -> ") && Contains("loop-a.json"));
  CHECK_THAT(test::error_of([&] { load_config((dir.path / "self.json").string()); }), Contains("makes a loop"));
  nlohmann::json doc = good;
  set_dotted(doc, "optimizer.lr", 0.5);
  CHECK(TrainConfig::from_json(doc).optimizer.lr == 0.5);
}

TEST_CASE("training on generated data beats chance and leaves a complete run folder", "[train][run]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 30, 32);
  const TrainConfig config = TrainConfig::from_json(small_config(dir.path / "data", 10));
  const std::string run = (dir.path / "run").string();
  const RunResult result = run_training(config, run, quiet());
  CHECK(result.epochs_run == 10);
  REQUIRE(result.test_report.is_object());
  CHECK(result.test_report["accuracy"].get<double>() > 0.6);  // chance is 1/3
  for (const char* file : {"config.json", "dataset.json", "split.json", "balance.json", "history.csv", "history.json",
                           "metrics.json", "report.md", "curves.png", "confusion_test.png", "log.txt",
                           "checkpoints/last.pt", "checkpoints/best.pt"}) {
    CAPTURE(file);
    CHECK(fs::exists(fs::path(run) / file));
  }
  std::ifstream split_file(fs::path(run) / "split.json");
  const auto split = nlohmann::json::parse(split_file);
  CHECK(split["class_counts"]["test"] == nlohmann::json({6, 6, 6}));
  std::ifstream report(fs::path(run) / "report.md");
  const std::string text((std::istreambuf_iterator<char>(report)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Contains("Not a diagnostic device") && Contains("Held-out test"));
}

TEST_CASE("resuming after a stop gives the same model as an uninterrupted run", "[train][resume]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square"}, 12, 32);
  const TrainConfig three = TrainConfig::from_json(small_config(dir.path / "data", 3));
  run_training(three, (dir.path / "straight").string(), quiet());

  // The same run stopped after epoch 1 (as after a kill), then resumed to epoch 3.
  TrainConfig one = three;
  one.epochs = 1;
  run_training(one, (dir.path / "resumed").string(), quiet());
  RunOptions resume = quiet();
  resume.resume = true;
  run_training(three, (dir.path / "resumed").string(), resume);

  const auto a = weights_of((dir.path / "straight" / "checkpoints" / "last.pt").string(), three);
  const auto b = weights_of((dir.path / "resumed" / "checkpoints" / "last.pt").string(), three);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(torch::equal(a[i], b[i]));
}

TEST_CASE("Ctrl-C between two epochs stops the run as interrupted, not as finished", "[train][resume]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square"}, 10, 32);
  TrainConfig config = TrainConfig::from_json(small_config(dir.path / "data", 1));
  const std::string run = (dir.path / "run").string();
  run_training(config, run, quiet());
  fs::remove(fs::path(run) / "metrics.json");
  // The signal arrives after epoch 1's checkpoint, before epoch 2 starts.
  config.epochs = 3;
  std::atomic<bool> interrupt{true};
  RunOptions options = quiet();
  options.resume = true;
  options.interrupt = &interrupt;
  const RunResult result = run_training(config, run, options);
  CHECK(result.interrupted);
  CHECK(result.epochs_run == 1);
  CHECK_FALSE(fs::exists(fs::path(run) / "metrics.json"));  // not evaluated as if training had ended
  CHECK_THAT(test::read_text(fs::path(run) / "log.txt"), Contains("interrupted after epoch 1"));
}

TEST_CASE("a diverging run stops with a reason and keeps nothing half-written", "[train][bad-input]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square"}, 10, 32);
  nlohmann::json doc = small_config(dir.path / "data", 2);
  // Inputs of 1e30 and plain SGD at lr 10: the first step throws the weights to ~1e31, the next
  // forward pass overflows and the loss is no longer finite.
  doc["preprocess"]["std"] = 1e-30;
  doc["optimizer"] = {{"name", "sgd"}, {"lr", 10.0}, {"momentum", 0.0}};
  const TrainConfig config = TrainConfig::from_json(doc);
  const std::string message = test::error_of([&] { run_training(config, (dir.path / "run").string(), quiet()); });
  CHECK_THAT(message, Contains("loss became") && Contains("lower learning rate"));
  CHECK_FALSE(fs::exists(dir.path / "run" / "checkpoints" / "last.pt.tmp"));
}

TEST_CASE("a full disk while saving: a clear error, the previous file intact, no temporary file", "[train][bad-input]") {
  REQUIRE(fs::exists("/dev/full"));  // Linux always has it
  const test::TempDir dir;
  models::ModelConfig small;
  small.architecture = "simple_cnn";
  small.input_size = 32;
  small.conv_channels = {8};
  small.hidden_units = 16;
  auto model = models::create_model(small);
  const std::string checkpoint = (dir.path / "best.pt").string(), text = (dir.path / "history.json").string();
  save_model_file(*model, checkpoint);
  write_text_atomic(text, "[]\n");
  const auto size = fs::file_size(checkpoint);
  for (const std::string& path : {checkpoint, text}) {
    // The temporary file is /dev/full: every write fails with ENOSPC, as on a full disk. LibTorch's
    // zip writer must not abort the process on it.
    fs::create_symlink("/dev/full", path + ".tmp");
    const std::string message = test::error_of([&] {
      if (path == checkpoint) save_model_file(*model, path);
      else write_text_atomic(path, "[1, 2]\n");
    });
    CHECK_THAT(message, Contains(path) && Contains("No space left on device") && Contains("is kept"));
    CHECK_FALSE(fs::exists(fs::symlink_status(path + ".tmp")));
  }
  CHECK(fs::file_size(checkpoint) == size);
  load_model_file(*model, checkpoint);
  std::ifstream in(text);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == "[]\n");
}

namespace {

std::string text_of(const fs::path& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("a grid trains every combination, ranks on validation, tests only the winner", "[train][grid]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square"}, 10, 32);
  nlohmann::json doc = small_config(dir.path / "data", 1);
  doc["grid"] = {{"optimizer.name", {"adam", "rmsprop"}}, {"optimizer.lr", {1e-3, 3e-3}}};
  const TrainConfig config = TrainConfig::from_json(doc);
  const RunResult result = run_grid(config, (dir.path / "grid").string(), quiet());
  // One column per name: the selection metric's best is "best_<metric>", apart from the selected
  // model's val_accuracy and val_loss.
  std::string header = text_of(dir.path / "grid" / "leaderboard.csv");
  header = header.substr(0, header.find('\n'));
  std::vector<std::string> columns;
  for (size_t start = 0, comma; start <= header.size(); start = comma + 1) {
    comma = std::min(header.find(',', start), header.size());
    columns.push_back(header.substr(start, comma - start));
  }
  CHECK(std::set<std::string>(columns.begin(), columns.end()).size() == columns.size());
  CHECK(std::count(columns.begin(), columns.end(), "best_" + config.selection_metric) == 1);
  int with_test = 0;
  for (int i = 0; i < 4; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "%03d", i);
    std::ifstream in(dir.path / "grid" / "grid" / name / "metrics.json");
    REQUIRE(in);
    if (nlohmann::json::parse(in).contains("test")) ++with_test;
  }
  CHECK(with_test == 1);
  CHECK(result.test_report.is_object());
}

namespace {

// Two run folders hold the same model (parameters and batch-norm buffers) and the same history.
void check_same_run(const fs::path& a, const fs::path& b, const TrainConfig& config) {
  for (const char* checkpoint : {"checkpoints/last.pt", "checkpoints/best.pt"}) {
    CAPTURE(a, b, checkpoint);
    auto model_a = models::create_model(config.model), model_b = models::create_model(config.model);
    load_model_file(*model_a, (a / checkpoint).string());
    load_model_file(*model_b, (b / checkpoint).string());
    const auto pa = model_a->named_parameters(), pb = model_b->named_parameters();
    REQUIRE(pa.size() == pb.size());
    for (const auto& item : pa) CHECK(torch::equal(item.value(), pb[item.key()]));
    const auto ba = model_a->named_buffers(), bb = model_b->named_buffers();
    REQUIRE(ba.size() == bb.size());
    for (const auto& item : ba) CHECK(torch::equal(item.value(), bb[item.key()]));
  }
  const auto ha = nlohmann::json::parse(text_of(a / "history.json")), hb = nlohmann::json::parse(text_of(b / "history.json"));
  REQUIRE(ha.size() == hb.size());
  for (size_t i = 0; i < ha.size(); ++i) {
    for (const char* key : {"lr", "train_loss", "val_loss", "val_accuracy"}) CHECK(ha[i][key] == hb[i][key]);
  }
}

}  // namespace

TEST_CASE("a grid over epochs trains each combination once and reads the shorter counts from it, as separate runs give",
          "[train][grid]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square"}, 12, 32);
  nlohmann::json doc = small_config(dir.path / "data", 3);
  doc["schedule"] = {{"kind", "step"}, {"step_size", 1}, {"gamma", 0.5}};  // a rate that changes every epoch
  doc["grid"] = {{"epochs", {2, 3}}, {"optimizer.lr", {1e-3, 3e-3}}};
  run_grid(TrainConfig::from_json(doc), (dir.path / "grid").string(), quiet());
  const fs::path runs = dir.path / "grid" / "grid";  // 000, 001: 2 epochs; 002, 003: 3 epochs (keys sorted)
  // 000 was not trained again: its log is 002's first two epochs, then the note.
  CHECK_THAT(text_of(runs / "000" / "log.txt"),
             Contains("epoch 2/3") && !Contains("epoch 3/3") && Contains("above were trained in") && Contains("002"));
  CHECK_THAT(text_of(runs / "002" / "log.txt"), Contains("epoch 3/3"));
  CHECK(epochs_recorded((runs / "000").string()) == 2);
  const auto board = nlohmann::json::parse(text_of(dir.path / "grid" / "leaderboard.json"));
  REQUIRE(board.size() == 4);
  for (const auto& row : board) {
    const int epochs = row["params"]["epochs"].get<int>();
    CHECK(row["trained_in"].get<std::string>() == (row["params"]["optimizer.lr"].get<double>() == 1e-3 ? "002" : "003"));
    CHECK(row["best_epoch"].get<int>() <= epochs);
    // Wilson's interval on the validation split's size (4 images here), around the accuracy.
    const auto interval = row["val_accuracy_interval"];
    REQUIRE(interval.size() == 2);
    const double accuracy = row["val_accuracy"].get<double>();
    const auto expected = wilson_interval(static_cast<int64_t>(std::lround(accuracy * 4)), 4);
    CHECK(interval[0].get<double>() == Approx(expected.low));
    CHECK(interval[1].get<double>() == Approx(expected.high));
  }
  const auto summary = nlohmann::json::parse(text_of(dir.path / "grid" / "metrics.json"));
  CHECK(summary["validation_within_noise"]["combinations"] == 4);
  CHECK(summary["validation_within_noise"]["combinations_inside"].get<int>() >= 1);  // the winner itself
  // Ranked by the selection metric, ties by validation loss (lower first).
  const std::string metric = TrainConfig::from_json(doc).selection_metric;
  const double sign = metric == "val_loss" ? -1.0 : 1.0;
  for (size_t r = 1; r < board.size(); ++r) {
    const double before = sign * board[r - 1]["best_" + metric].get<double>(), after = sign * board[r]["best_" + metric].get<double>();
    CHECK(before >= after);
    if (before == after) CHECK(board[r - 1]["val_loss"].get<double>() <= board[r]["val_loss"].get<double>());
  }

  // The same combination trained on its own for 2 epochs: the same model, history and validation figures.
  nlohmann::json alone_doc = doc;
  alone_doc.erase("grid");
  alone_doc["epochs"] = 2;
  alone_doc["optimizer"]["lr"] = 1e-3;
  const TrainConfig alone = TrainConfig::from_json(alone_doc);
  run_training(alone, (dir.path / "alone").string(), quiet());
  check_same_run(dir.path / "alone", runs / "000", alone);
  const auto metrics_alone = nlohmann::json::parse(text_of(dir.path / "alone" / "metrics.json"));
  const auto metrics_read = nlohmann::json::parse(text_of(runs / "000" / "metrics.json"));
  CHECK(metrics_read["selected_epoch"] == metrics_alone["selected_epoch"]);
  CHECK(metrics_read["val"]["accuracy"] == metrics_alone["val"]["accuracy"]);
  CHECK(metrics_read["val"]["log_loss"] == metrics_alone["val"]["log_loss"]);

  // A grid stopped by Ctrl-C names its own folder to resume (with the config kept there), not a combination's.
  CHECK(nlohmann::json::parse(text_of(dir.path / "grid" / "grid_config.json")).contains("grid"));
  std::atomic<bool> stop{true};
  RunOptions stopping = quiet();
  stopping.interrupt = &stop;
  const RunResult stopped = run_grid(TrainConfig::from_json(doc), (dir.path / "stopped").string(), stopping);
  CHECK(stopped.interrupted);
  CHECK(stopped.run_dir == (dir.path / "stopped").string());

  // A cosine schedule depends on the total: every count is trained on its own.
  nlohmann::json cosine = small_config(dir.path / "data", 2);
  cosine["schedule"] = {{"kind", "cosine"}};
  cosine["grid"] = {{"epochs", {1, 2}}};
  run_grid(TrainConfig::from_json(cosine), (dir.path / "cosine").string(), quiet());
  CHECK_THAT(text_of(dir.path / "cosine" / "grid" / "000" / "log.txt"), Contains("epoch 1/1") && !Contains("trained in"));
}

TEST_CASE("grid snapshots under early stopping and resume: the state a separate run would leave", "[train][grid][resume]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square"}, 12, 32);
  // Validation loss never improves by 1e6: early stopping ends every run after epoch 2.
  nlohmann::json doc = small_config(dir.path / "data", 5);
  doc["early_stopping"] = {{"patience", 1}, {"min_delta", 1e6}, {"monitor", "val_loss"}};
  doc["grid"] = {{"epochs", {3, 5}}};
  run_grid(TrainConfig::from_json(doc), (dir.path / "grid").string(), quiet());
  const fs::path runs = dir.path / "grid" / "grid";
  CHECK(epochs_recorded((runs / "001").string()) == 2);
  CHECK(epochs_recorded((runs / "000").string()) == 2);  // a 3-epoch run stops after epoch 2 too
  for (const auto& row : nlohmann::json::parse(text_of(dir.path / "grid" / "leaderboard.json"))) {
    CHECK(row["epochs_run"] == 2);
    CHECK(row["stopped_early"] == true);  // 000 too, though it was read from 001, not trained
  }
  nlohmann::json three = doc;
  three.erase("grid");
  three["epochs"] = 3;
  const TrainConfig alone = TrainConfig::from_json(three);
  const RunResult alone_result = run_training(alone, (dir.path / "alone").string(), quiet());
  CHECK(alone_result.stopped_early);
  check_same_run(dir.path / "alone", runs / "000", alone);

  // Resuming a run that early stopping ended trains nothing more.
  RunOptions resume = quiet();
  resume.resume = true;
  const RunResult resumed = run_training(alone, (dir.path / "alone").string(), resume);
  CHECK(resumed.stopped_early);
  CHECK(resumed.epochs_run == 2);
  CHECK(epochs_recorded((dir.path / "alone").string()) == 2);
  CHECK_THAT(text_of(dir.path / "alone" / "log.txt"), Contains("nothing to continue"));

  // A snapshot lost between the checkpoint and the copy (a kill, a full disk) is written on resume.
  nlohmann::json two = small_config(dir.path / "data", 2);
  const TrainConfig config = TrainConfig::from_json(two);
  RunOptions with_snapshot = quiet();
  with_snapshot.snapshots[2] = (dir.path / "snapshot").string();
  run_training(config, (dir.path / "run").string(), with_snapshot);
  CHECK(epochs_recorded((dir.path / "snapshot").string()) == 2);
  fs::remove_all(dir.path / "snapshot");
  with_snapshot.resume = true;
  run_training(config, (dir.path / "run").string(), with_snapshot);
  CHECK(epochs_recorded((dir.path / "snapshot").string()) == 2);
  check_same_run(dir.path / "run", dir.path / "snapshot", config);
}

TEST_CASE("smoke training on real data (ALL leukemia) beats chance", "[train][real-data]") {
  const char* env = std::getenv("LOUPE_DATA_DIR");
  const fs::path data = fs::path(env ? env : LOUPE_DEFAULT_DATA_DIR) / "all-leukemia";
  if (!fs::exists(data)) LOUPE_SKIP("no " << data);
  const test::TempDir dir;
  nlohmann::json doc = small_config(data, 12);
  doc["data"]["max_per_class"] = 60;
  doc["preprocess"]["size"] = 48;
  doc["split"] = {{"val", 0.15}, {"test", 0.25}, {"seed", 1}};
  const RunResult result = run_training(TrainConfig::from_json(doc), (dir.path / "run").string(), quiet());
  const double accuracy = result.test_report["accuracy"].get<double>();
  INFO("held-out test accuracy " << accuracy << " on 60 images (4 classes, chance 0.25)");
  CHECK(accuracy > 0.4);
}

TEST_CASE("classical baselines (SVM, KNN) on the run's split, in the report format", "[train][baselines]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 20, 32);
  const TrainConfig config = TrainConfig::from_json(small_config(dir.path / "data", 1));
  BaselineOptions options;
  options.feature_side = 16;
  const nlohmann::json result = run_baselines(config, (dir.path / "baselines").string(), options);
  CHECK(result["svm"]["test"]["accuracy"].get<double>() > 0.6);  // chance 1/3
  CHECK(result["knn"]["test"]["accuracy"].get<double>() > 0.5);
  CHECK(result["svm"]["test"]["total"] == 12);
  CHECK(fs::exists(dir.path / "baselines" / "baseline_svm.txt"));
}

TEST_CASE("ImageNet-pretrained MobileNetV2 beats training from scratch at equal epochs", "[train][real-data][transfer]") {
  const char* env = std::getenv("LOUPE_DATA_DIR");
  const fs::path root = env ? env : LOUPE_DEFAULT_DATA_DIR;
  const fs::path weights = root / "pretrained" / "mobilenet_v2_1.0_224_quant.tflite";
  if (!fs::exists(weights) || !fs::exists(root / "all-leukemia")) LOUPE_SKIP("no " << weights << " or all-leukemia under " << root);
  const test::TempDir dir;
  nlohmann::json doc = {{"name", "transfer"},
                        {"data", {{"path", (root / "all-leukemia").string()}, {"max_per_class", 40}}},
                        {"split", {{"val", 0.2}, {"test", 0.25}, {"seed", 5}}},
                        {"preprocess", {{"color", "rgb"}, {"size", 64}, {"mean", {0.5}}, {"std", {0.5}}}},
                        {"model", {{"architecture", "mobilenet_v2"}}},
                        {"pretrained", {{"path", weights.string()}}},
                        {"optimizer", {{"name", "adam"}, {"lr", 3e-4}}},
                        {"epochs", 2}, {"batch_size", 16}, {"threads", 2}};
  const double pretrained = run_training(TrainConfig::from_json(doc), (dir.path / "pre").string(), quiet())
                                .test_report["accuracy"].get<double>();
  doc["pretrained"]["path"] = "";
  const double scratch = run_training(TrainConfig::from_json(doc), (dir.path / "scratch").string(), quiet())
                             .test_report["accuracy"].get<double>();
  INFO("held-out test accuracy: pretrained " << pretrained << ", scratch " << scratch << " (40 test images, chance 0.25)");
  CHECK(pretrained > scratch + 0.15);
  CHECK(pretrained > 0.6);
}

TEST_CASE("k-fold cross-validation: every image tested once, per-fold runs kept, mean and spread", "[train][cv]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 9, 32);
  const TrainConfig config = TrainConfig::from_json(small_config(dir.path / "data", 2));
  const CrossValidation cv = run_cross_validation(config, (dir.path / "cv").string(), 3, quiet());
  REQUIRE(cv.folds.size() == 3);
  CHECK_FALSE(cv.interrupted);
  // The three folds' test splits are disjoint and together hold every image.
  std::multiset<std::string> tested;
  for (int fold = 0; fold < 3; ++fold) {
    std::ifstream in(dir.path / "cv" / ("fold-" + std::to_string(fold)) / "split.json");
    REQUIRE(in);
    const nlohmann::json split = nlohmann::json::parse(in);
    CHECK(split["spec"]["folds"] == 3);
    CHECK(split["spec"]["fold"] == fold);
    CHECK(split["class_counts"]["test"] == nlohmann::json({3, 3, 3}));
    for (const auto& file : split["files"]["test"]) tested.insert(file[0].get<std::string>());
  }
  CHECK(tested.size() == 27);
  CHECK(std::set<std::string>(tested.begin(), tested.end()).size() == 27);
  // The summary is the mean and sample standard deviation of the folds' test figures.
  const nlohmann::json& s = cv.summary["summary"]["accuracy"];
  std::vector<double> accuracy;
  for (const auto& f : cv.summary["per_fold"]) accuracy.push_back(f["test"]["accuracy"].get<double>());
  const double mean = (accuracy[0] + accuracy[1] + accuracy[2]) / 3;
  CHECK(s["mean"].get<double>() == Approx(mean));
  double var = 0;
  for (double a : accuracy) var += (a - mean) * (a - mean);
  CHECK(s["sd"].get<double>() == Approx(std::sqrt(var / 2)).margin(1e-12));
  CHECK(fs::exists(dir.path / "cv" / "cv.md"));
  // A second run keeps the finished folds (nothing retrained).
  const auto written = fs::last_write_time(dir.path / "cv" / "fold-1" / "metrics.json");
  const CrossValidation again = run_cross_validation(config, (dir.path / "cv").string(), 3, quiet());
  CHECK(fs::last_write_time(dir.path / "cv" / "fold-1" / "metrics.json") == written);
  CHECK(again.summary["summary"]["accuracy"]["mean"] == s["mean"]);
  CHECK_THAT(test::error_of([&] { run_cross_validation(config, (dir.path / "cv1").string(), 1, quiet()); }), Contains("at least 2"));
}
