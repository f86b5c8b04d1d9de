// `loupe eval`: a trained run's checkpoint on its held-out split, or on another labelled folder.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "commands.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;

namespace loupe::cli {

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

std::vector<std::string> model_classes(const std::string& run_dir) {
  std::ifstream in((fs::path(run_dir) / "dataset.json").string());
  if (!in) throw Error(ErrorCode::Io, run_dir + "/dataset.json: missing; is this a run folder?");
  return nlohmann::json::parse(in).at("classes").get<std::vector<std::string>>();
}

}  // namespace loupe::cli
