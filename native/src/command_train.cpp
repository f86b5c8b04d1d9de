// `loupe train` and `loupe eval`: the training backend's command-line face.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

#include "commands.h"
#include "baselines.h"
#include "trainer.h"

namespace fs = std::filesystem;

namespace loupe::cli {

namespace {

std::atomic<bool> g_interrupt{false};

extern "C" void on_interrupt(int) {
  // First Ctrl-C: finish cleanly (the last finished epoch is checkpointed). Second: default action.
  g_interrupt = true;
  std::signal(SIGINT, SIG_DFL);
}

// "--set optimizer.lr=0.001": the value is parsed as JSON when it is valid JSON, else kept as a string.
void apply_override(nlohmann::json& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error(ErrorCode::InvalidArgument, "--set '" + assignment + "': expected key=value, e.g. optimizer.lr=0.001");
  }
  const std::string value = assignment.substr(eq + 1);
  nlohmann::json parsed = nlohmann::json::parse(value, nullptr, false);
  train::set_dotted(config, assignment.substr(0, eq), parsed.is_discarded() ? nlohmann::json(value) : parsed);
}

std::string default_run_dir(const std::string& name) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return "runs/" + name + "-" + stamp;
}

void print_summary(const train::RunResult& r) {
  if (r.interrupted) {
    std::printf("interrupted after %d epoch(s); continue with: loupe train --resume --out %s\n", r.epochs_run,
                r.run_dir.c_str());
    return;
  }
  std::printf("run: %s (%d epoch(s)%s; selected epoch %d)\n", r.run_dir.c_str(), r.epochs_run,
              r.stopped_early ? ", stopped early" : "", r.best_epoch);
  if (!r.test_report.is_null()) {
    std::printf("held-out test: accuracy %.4f, balanced accuracy %.4f, macro F1 %.4f, log loss %.4f\n",
                r.test_report["accuracy"].get<double>(), r.test_report["balanced_accuracy"].get<double>(),
                r.test_report["macro_avg"]["f1"].get<double>(), r.test_report["log_loss"].get<double>());
  }
  std::printf("report: %s/report.md\n", r.run_dir.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  struct Options {
    std::string config, out;
    std::vector<std::string> overrides;
    bool resume = false, quiet = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("train", "Train a classifier from a config (models/configs/*.json)");
  cmd->add_option("-c,--config", opt->config, "Run configuration (JSON); with --resume, defaults to OUT/config.json");
  cmd->add_option("-o,--out", opt->out, "Run folder (default runs/<name>-<time>)");
  cmd->add_option("--set", opt->overrides, "Override a config key, e.g. --set epochs=5 --set optimizer.lr=3e-4");
  cmd->add_flag("--resume", opt->resume, "Continue the run in --out from its last checkpoint");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress bar");
  cmd->callback([opt] {
    if (opt->resume && opt->out.empty()) throw Error(ErrorCode::InvalidArgument, "--resume needs --out RUN_FOLDER");
    std::string config_path = opt->config;
    if (config_path.empty()) {
      if (!opt->resume) throw Error(ErrorCode::InvalidArgument, "--config is required (e.g. models/configs/seed001.json)");
      config_path = (fs::path(opt->out) / "config.json").string();
    }
    nlohmann::json doc = train::load_config_json(config_path);
    for (const auto& o : opt->overrides) apply_override(doc, o);
    train::TrainConfig config;
    try {
      config = train::TrainConfig::from_json(doc);
    } catch (const Error& e) {
      throw Error(e.code(), config_path + ": " + e.what());
    }
    const std::string out = opt->out.empty() ? default_run_dir(config.name) : opt->out;
    if (!opt->resume && fs::exists(fs::path(out) / "checkpoints" / "last.pt")) {
      throw Error(ErrorCode::InvalidArgument, out + " already holds a run: use --resume to continue it, or another --out");
    }
    std::signal(SIGINT, on_interrupt);
    train::RunOptions run_options;
    run_options.resume = opt->resume;
    run_options.progress = !opt->quiet;
    run_options.interrupt = &g_interrupt;
    print_summary(train::run_grid(config, out, run_options));
  });
}

void add_eval_command(CLI::App& app) {
  struct Options {
    std::string run, data, split = "test", weights = "best";
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a trained run on its split or on another labelled folder");
  cmd->add_option("-r,--run", opt->run, "Run folder written by loupe train")->required();
  cmd->add_option("--split", opt->split, "Which part of the run's split: test, val, train or all")
      ->check(CLI::IsMember({"test", "val", "train", "all"}));
  cmd->add_option("--data", opt->data, "Evaluate every image of this labelled folder/manifest instead");
  cmd->add_option("--weights", opt->weights, "best or last")->check(CLI::IsMember({"best", "last"}));
  cmd->callback([opt] {
    const train::TrainConfig config = train::load_config((fs::path(opt->run) / "config.json").string());
    train::configure_threads(config.threads);
    auto model = models::create_model(config.model);
    train::load_model_file(*model, (fs::path(opt->run) / "checkpoints" / (opt->weights + ".pt")).string());
    data::LoadOptions load_options;
    load_options.npz_class_names = config.class_names;
    std::vector<size_t> samples;
    data::Dataset dataset;
    std::string what;
    if (!opt->data.empty()) {
      dataset = data::load_dataset(opt->data, load_options);
      if (dataset.classes != model_classes(opt->run)) {
        throw Error(ErrorCode::InvalidArgument, opt->data + ": its classes do not match the model's (see " + opt->run +
                                                    "/dataset.json)");
      }
      for (size_t i = 0; i < dataset.samples.size(); ++i) samples.push_back(i);
      what = opt->data;
    } else {
      dataset = train::load_run_dataset(config);
      const data::Split split = data::stratified_split(dataset, config.split);
      samples = opt->split == "test" ? split.test : opt->split == "val" ? split.val : opt->split == "train" ? split.train
                                                                                                          : std::vector<size_t>{};
      if (opt->split == "all") {
        for (size_t i = 0; i < dataset.samples.size(); ++i) samples.push_back(i);
      }
      what = "the run's " + opt->split + " split";
    }
    train::EvalOptions eval_options;
    eval_options.workers = config.workers;
    const nlohmann::json result =
        train::evaluation_json(train::predict(*model, dataset, samples, config.preprocess, eval_options), dataset.classes);
    std::printf("%s (%zu images), %s weights\n%slog loss: %.4f\n", what.c_str(), samples.size(), opt->weights.c_str(),
                result["report_text"].get<std::string>().c_str(), result["log_loss"].get<double>());
    const std::string out = (fs::path(opt->run) / ("eval-" + (opt->data.empty() ? opt->split : std::string("data")) + ".json")).string();
    train::write_text_atomic(out, result.dump(2) + "\n");
    std::printf("written: %s\n", out.c_str());
  });
}

void add_baseline_command(CLI::App& app) {
  struct Options {
    std::string config, out;
    int side = 32, k = 5;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "baseline", "Classical baselines (seed 000): SVM and KNN on the same data, split and preprocessing as a config");
  cmd->add_option("-c,--config", opt->config, "Run configuration (JSON)")->required();
  cmd->add_option("-o,--out", opt->out, "Output folder (default runs/<name>-baselines)");
  cmd->add_option("--side", opt->side, "Feature image side (pixels, flattened)")->check(CLI::Range(4, 128));
  cmd->add_option("--k", opt->k, "KNN neighbours")->check(CLI::Range(1, 100));
  cmd->callback([opt] {
    const train::TrainConfig config = train::load_config(opt->config);
    const std::string out = opt->out.empty() ? "runs/" + config.name + "-baselines" : opt->out;
    train::BaselineOptions options;
    options.feature_side = opt->side;
    options.knn_k = opt->k;
    const nlohmann::json result = train::run_baselines(config, out, options);
    for (const char* name : {"svm", "knn"}) {
      std::printf("%s, held-out test:\n%s\n", name, result[name]["test"]["report_text"].get<std::string>().c_str());
    }
    std::printf("written: %s/baselines.json\n", out.c_str());
  });
}

std::vector<std::string> model_classes(const std::string& run_dir) {
  std::ifstream in((fs::path(run_dir) / "dataset.json").string());
  if (!in) throw Error(ErrorCode::Io, run_dir + "/dataset.json: missing; is this a run folder?");
  return nlohmann::json::parse(in).at("classes").get<std::vector<std::string>>();
}

}  // namespace loupe::cli
