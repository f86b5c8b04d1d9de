// `loupe baseline`: classical baselines (SVM, KNN) on a config's data, split and preprocessing.
#include <cstdio>
#include <memory>

#include "loupe/train/baselines.h"
#include "commands.h"
#include "loupe/train/trainer.h"

namespace loupe::cli {

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

}  // namespace loupe::cli
