// `loupe train`: train a classifier from a config, resumable after Ctrl-C or a kill.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

#include "commands.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;

namespace loupe::cli {

namespace {

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
    const train::TrainConfig config = load_config_with_overrides(config_path, opt->overrides);
    const std::string out = opt->out.empty() ? default_run_dir(config.name) : opt->out;
    if (!opt->resume && fs::exists(fs::path(out) / "checkpoints" / "last.pt")) {
      throw Error(ErrorCode::InvalidArgument, out + " already holds a run: use --resume to continue it, or another --out");
    }
    train::RunOptions run_options;
    run_options.resume = opt->resume;
    run_options.progress = !opt->quiet;
    run_options.interrupt = stop_on_ctrl_c();
    print_summary(train::run_grid(config, out, run_options));
  });
}

}  // namespace loupe::cli
