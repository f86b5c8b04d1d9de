// `loupe split`: the data set and the split a config would train on, without training: class
// counts per split and, with a group spec, how patients fall on it (the leakage of a split).
#include <cstdio>
#include <memory>

#include "commands.h"
#include "loupe/train/atomic_file.h"
#include "loupe/train/trainer.h"

namespace loupe::cli {

void add_split_command(CLI::App& app) {
  struct Options {
    std::string config, out;
    std::vector<std::string> overrides;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "split", "Show (and optionally write) the split a config would train on, with its groups, without training");
  cmd->add_option("-c,--config", opt->config, "Run configuration (JSON)")->required();
  cmd->add_option("--set", opt->overrides,
                  "Override a config key, e.g. --set 'split.group={\"file_name_pattern\": \"^(\\\\d{8})_\"}'");
  cmd->add_option("-o,--out", opt->out, "Write split.json here (what a run writes)");
  cmd->callback([opt] {
    const train::TrainConfig config = load_config_with_overrides(opt->config, opt->overrides);
    const data::Dataset dataset = train::load_run_dataset(config);
    const data::Split split = data::stratified_split(dataset, config.split);
    const nlohmann::json recorded = split.to_json(dataset);
    std::printf("%s: %zu images, %zu classes, %zu skipped\n", dataset.origin.c_str(), dataset.samples.size(),
                dataset.classes.size(), dataset.skipped.size());
    for (const char* part : {"train", "val", "test"}) {
      std::printf("  %-5s %s\n", part, recorded["class_counts"][part].dump().c_str());
    }
    std::printf("  classes %s\n", nlohmann::json(dataset.classes).dump().c_str());
    if (split.groups) {
      const data::GroupReport& g = *split.groups;
      std::printf("groups (%s): %zu, of which %zu files without a group id; %zu groups on more than one side; %zu test "
                  "images share a group with training%s\n",
                  config.split.group.to_json().dump().c_str(), g.groups, g.ungrouped_files, g.groups_crossing,
                  g.test_sharing_train, config.split.group.keep_together ? "" : " (image-level split)");
    }
    if (!opt->out.empty()) {
      train::write_json_atomic(opt->out, recorded);
      std::printf("written: %s\n", opt->out.c_str());
    }
  });
}

}  // namespace loupe::cli
