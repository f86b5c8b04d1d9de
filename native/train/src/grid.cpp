// Hyperparameter grids (seed 004: optimizer x learning rate x epochs): every combination is a
// full run; ranking uses validation only, and only the winner ever sees the test split.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "loupe/train/distributed.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;

namespace loupe::train {

RunResult run_grid(const TrainConfig& config, const std::string& run_dir, const RunOptions& options) {
  if (config.grid.is_null() || config.grid.empty()) return run_training(config, run_dir, options);
  std::vector<std::string> keys;
  std::vector<std::vector<nlohmann::json>> values;
  for (const auto& [key, list] : config.grid.items()) {
    keys.push_back(key);
    values.emplace_back(list.begin(), list.end());
  }
  nlohmann::json base = config.to_json();
  base.erase("grid");
  // Cartesian product, last key varying fastest.
  std::vector<size_t> position(keys.size(), 0);
  struct Entry { int index; nlohmann::json params; RunResult result; std::string dir; TrainConfig config; };
  std::vector<Entry> entries;
  for (int index = 0;; ++index) {
    nlohmann::json doc = base, params = nlohmann::json::object();
    for (size_t k = 0; k < keys.size(); ++k) {
      set_dotted(doc, keys[k], values[k][position[k]]);
      params[keys[k]] = values[k][position[k]];
    }
    TrainConfig sub;
    try {
      sub = TrainConfig::from_json(doc);
    } catch (const Error& e) {
      throw Error(e.code(), "grid combination " + params.dump() + ": " + e.what());
    }
    char name[16];
    std::snprintf(name, sizeof name, "%03d", index);
    sub.name = config.name + " #" + name;
    entries.push_back({index, params, {}, (fs::path(run_dir) / "grid" / name).string(), sub});
    size_t k = keys.size();
    while (k > 0 && ++position[k - 1] == values[k - 1].size()) position[--k] = 0;
    if (k == 0) break;
  }
  // Several ranks train each combination together; rank 0 alone writes the leaderboard.
  const bool writes = options.distributed == nullptr || options.distributed->is_main();
  if (writes) fs::create_directories(run_dir);
  RunOptions sub_options = options;
  sub_options.evaluate_test = false;
  for (auto& entry : entries) {
    if (writes) std::fprintf(stderr, "grid %d/%zu: %s\n", entry.index + 1, entries.size(), entry.params.dump().c_str());
    entry.result = run_training(entry.config, entry.dir, sub_options);
    if (entry.result.interrupted) return entry.result;
  }
  const bool higher = config.selection_metric != "val_loss";
  std::vector<Entry*> ranked;
  for (auto& e : entries) ranked.push_back(&e);
  std::stable_sort(ranked.begin(), ranked.end(), [&](const Entry* a, const Entry* b) {
    return higher ? a->result.best_value > b->result.best_value : a->result.best_value < b->result.best_value;
  });
  std::string csv = "rank,run,";
  for (const auto& k : keys) csv += k + ",";
  csv += config.selection_metric + ",best_epoch,epochs_run,val_accuracy\n";
  nlohmann::json board = nlohmann::json::array();
  for (size_t r = 0; r < ranked.size(); ++r) {
    const Entry& e = *ranked[r];
    csv += std::to_string(r + 1) + "," + fs::path(e.dir).filename().string() + ",";
    for (const auto& k : keys) csv += e.params[k].dump() + ",";
    const double val_acc = e.result.val_report.value("accuracy", 0.0);
    csv += std::to_string(e.result.best_value) + "," + std::to_string(e.result.best_epoch) + "," +
           std::to_string(e.result.epochs_run) + "," + std::to_string(val_acc) + "\n";
    board.push_back({{"rank", r + 1}, {"run", e.dir}, {"params", e.params}, {config.selection_metric, e.result.best_value},
                     {"best_epoch", e.result.best_epoch}, {"val_accuracy", val_acc}});
  }
  if (writes) {
    std::ofstream((fs::path(run_dir) / "leaderboard.csv").string()) << csv;
    std::ofstream((fs::path(run_dir) / "leaderboard.json").string()) << board.dump(2) << "\n";
  }

  // Only the winner is evaluated on test.
  Entry& winner = *ranked.front();
  RunOptions final_options = options;
  final_options.evaluate_only = true;
  RunResult result = run_training(winner.config, winner.dir, final_options);
  nlohmann::json summary = {{"winner", winner.dir}, {"params", winner.params}, {"leaderboard", board},
                            {"test", result.test_report}};
  if (writes) std::ofstream((fs::path(run_dir) / "metrics.json").string()) << summary.dump(2) << "\n";
  result.run_dir = winner.dir;
  return result;
}

}  // namespace loupe::train
