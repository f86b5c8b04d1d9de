// `loupe cv`: k-fold cross-validation of a training config (native/train cross_validation.h).
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "loupe/train/cross_validation.h"

namespace fs = std::filesystem;

namespace loupe::cli {

void add_cv_command(CLI::App& app) {
  struct Options {
    std::string config, out;
    std::vector<std::string> overrides;
    int folds = 5;
    bool resume = false, quiet = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "cv", "k-fold cross-validation: train once per fold, every image tested once; mean and spread of every figure");
  cmd->add_option("-c,--config", opt->config, "Run configuration (JSON)")->required();
  cmd->add_option("-o,--out", opt->out, "Output folder (default runs/<name>-cv<K>)");
  cmd->add_option("--folds", opt->folds, "Number of folds")->check(CLI::Range(2, 100));
  cmd->add_option("--set", opt->overrides, "Override a config key, e.g. --set epochs=5");
  cmd->add_flag("--resume", opt->resume, "Keep finished folds, continue an interrupted one");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress bar");
  cmd->callback([opt] {
    const train::TrainConfig config = load_config_with_overrides(opt->config, opt->overrides);
    const std::string out = opt->out.empty() ? "runs/" + config.name + "-cv" + std::to_string(opt->folds) : opt->out;
    train::RunOptions options;
    options.resume = opt->resume;
    options.progress = !opt->quiet;
    options.interrupt = stop_on_ctrl_c();
    const train::CrossValidation cv = train::run_cross_validation(config, out, opt->folds, options);
    if (cv.interrupted) {
      std::printf("interrupted in fold %zu; continue with: loupe cv --resume -c %s --folds %d -o %s\n", cv.folds.size(),
                  opt->config.c_str(), opt->folds, out.c_str());
      return;
    }
    std::printf("%d-fold cross-validation of %s (every image tested once):\n", opt->folds, config.name.c_str());
    for (const auto& [name, s] : cv.summary["summary"].items()) {
      std::printf("  %-28s %.4f +- %.4f (min %.4f, max %.4f)\n", name.c_str(), s["mean"].get<double>(),
                  s["sd"].get<double>(), s["min"].get<double>(), s["max"].get<double>());
    }
    std::printf("written: %s/cv.json, %s/cv.md\n", out.c_str(), out.c_str());
  });
}

}  // namespace loupe::cli
