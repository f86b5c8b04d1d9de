// Subcommands of the `loupe` CLI. Each registers its options on the app and runs when chosen.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace loupe::cli {

void add_info_command(CLI::App& app);
void add_preprocess_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_baseline_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_predict_command(CLI::App& app);

// Class names a run was trained with (from RUN/dataset.json).
std::vector<std::string> model_classes(const std::string& run_dir);

}  // namespace loupe::cli
