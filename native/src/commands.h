// Subcommands of the `loupe` CLI. Each registers its options on the app and runs when chosen.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/train/train_config.h"

namespace loupe::cli {

void add_info_command(CLI::App& app);
void add_preprocess_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_baseline_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_cv_command(CLI::App& app);
void add_split_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_calibrate_command(CLI::App& app);
void add_ood_threshold_command(CLI::App& app);

// "--set optimizer.lr=0.001": each value is parsed as JSON when it is valid JSON, else kept as a
// string (config_overrides.cpp).
void apply_overrides(nlohmann::json& config, const std::vector<std::string>& assignments);
// Installs the Ctrl-C handler: the first Ctrl-C sets the returned flag (RunOptions::interrupt: the
// run finishes its checkpoint and stops), a second one kills.
std::atomic<bool>* stop_on_ctrl_c();
// load_config_json + the overrides + TrainConfig::from_json; errors name the file.
train::TrainConfig load_config_with_overrides(const std::string& path, const std::vector<std::string>& assignments);

// Class names a run was trained with (from RUN/dataset.json).
std::vector<std::string> model_classes(const std::string& run_dir);

}  // namespace loupe::cli
