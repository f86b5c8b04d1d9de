// `loupe train`: train a classifier from a config, resumable after Ctrl-C or a kill; on several
// ranks when a launcher sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, or with --nproc N
// (loupe/train/distributed.h, local_launch.h).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

#include "commands.h"
#include "loupe/train/distributed.h"
#include "loupe/train/local_launch.h"
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

// The command line each local rank runs: this one without --nproc, with the run folder fixed
// (one timestamp for all ranks).
std::vector<std::string> rank_arguments(const std::string& config, const std::string& out,
                                        const std::vector<std::string>& overrides, bool resume, bool quiet) {
  std::vector<std::string> args{"train", "--config", config, "--out", out};
  for (const auto& o : overrides) {
    args.push_back("--set");
    args.push_back(o);
  }
  if (resume) args.push_back("--resume");
  if (quiet) args.push_back("--quiet");
  return args;
}

}  // namespace

void add_train_command(CLI::App& app) {
  struct Options {
    std::string config, out;
    std::vector<std::string> overrides;
    bool resume = false, quiet = false;
    int nproc = 0;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("train", "Train a classifier from a config (models/configs/*.json)");
  cmd->add_option("-c,--config", opt->config, "Run configuration (JSON); with --resume, defaults to OUT/config.json (a grid's: OUT/grid_config.json)");
  cmd->add_option("-o,--out", opt->out, "Run folder (default runs/<name>-<time>)");
  cmd->add_option("--set", opt->overrides, "Override a config key, e.g. --set epochs=5 --set optimizer.lr=3e-4");
  cmd->add_flag("--resume", opt->resume, "Continue the run in --out from its last checkpoint");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress bar");
  cmd->add_option("--nproc", opt->nproc,
                  "Train on N ranks on this machine (data parallel; a launcher's RANK/WORLD_SIZE/MASTER_ADDR/"
                  "MASTER_PORT do the same across machines)")
      ->check(CLI::Range(1, 1024));
  cmd->callback([opt] {
    if (opt->resume && opt->out.empty()) throw Error(ErrorCode::InvalidArgument, "--resume needs --out RUN_FOLDER");
    std::string config_path = opt->config;
    if (config_path.empty()) {
      if (!opt->resume) throw Error(ErrorCode::InvalidArgument, "--config is required (e.g. models/configs/seed001.json)");
      config_path = (fs::path(opt->out) / "config.json").string();
      const fs::path grid_config = fs::path(opt->out) / "grid_config.json";  // a grid's folder (grid.cpp)
      if (!fs::exists(config_path) && fs::exists(grid_config)) config_path = grid_config.string();
    }
    const train::TrainConfig config = load_config_with_overrides(config_path, opt->overrides);
    const auto refuse_existing_run = [&](const std::string& out) {
      if (!opt->resume && fs::exists(fs::path(out) / "checkpoints" / "last.pt")) {
        throw Error(ErrorCode::InvalidArgument, out + " already holds a run: use --resume to continue it, or another --out");
      }
    };
    const train::LaunchEnvironment env = train::launch_environment_from_env();
    if (opt->nproc > 0) {  // the launcher: starts the ranks, waits, names the ones that failed
      train::check_distributed_config(config, opt->nproc);
      const std::string out = opt->out.empty() ? default_run_dir(config.name) : opt->out;
      refuse_existing_run(out);
      const int code = train::launch_local_ranks(
          "loupe train", opt->nproc, rank_arguments(config_path, out, opt->overrides, opt->resume, opt->quiet),
          config.distributed.timeout_s + 15);
      std::fflush(nullptr);
      if (code != 0) std::exit(code);
      return;
    }
    train::RunOptions run_options;
    run_options.resume = opt->resume;
    run_options.progress = !opt->quiet;
    run_options.interrupt = stop_on_ctrl_c();
    if (!env.distributed()) {
      const std::string out = opt->out.empty() ? default_run_dir(config.name) : opt->out;
      refuse_existing_run(out);
      print_summary(train::run_grid(config, out, run_options));
      return;
    }
    // One rank of several: checks that need no other rank first, then the rendezvous; from then
    // on a failure here is announced to the other ranks, which stop naming this one.
    train::stop_with_local_launcher();
    train::check_distributed_config(config, env.world_size);
    const auto group = train::DistributedGroup::join(env, config, train::rank_device(config.device, env));
    const std::string out = group->main_text(opt->out.empty() ? default_run_dir(config.name) : opt->out);
    run_options.distributed = group.get();
    try {
      refuse_existing_run(out);
      const train::RunResult result = train::run_grid(config, out, run_options);
      if (group->is_main()) print_summary(result);
    } catch (const Error& e) {
      group->announce_failure(e.what());
      std::string message = e.what();
      if (message.rfind("rank ", 0) != 0) message = "rank " + std::to_string(env.rank) + ": " + message;
      if (message.find("--resume") == std::string::npos && fs::exists(fs::path(out) / "checkpoints" / "last.pt")) {
        message += ". The last checkpoint is intact: continue with loupe train --resume -o " + out;
      }
      throw Error(e.code(), message);
    }
  });
}

}  // namespace loupe::cli
