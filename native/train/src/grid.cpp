// Hyperparameter grids (seed 004: optimizer x learning rate x epochs): every combination is a
// run of its own folder; ranking uses validation only, and only the winner ever sees the test split.
//
// Epochs as an axis: combinations that differ only in their epoch count are trained once, to the
// longest count, and the shorter ones are that run's state after their epoch (RunOptions::
// snapshots). It is the same computation as separate runs, at a fraction of the cost (seed 004's
// 20/30/50 epochs: 50 epochs instead of 100): data order and augmentation are seeded per epoch,
// the step and plateau schedules and early stopping look only at the epochs done. A cosine
// schedule looks at the total (it reaches its floor at the last epoch), so with it every count is
// trained on its own.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>

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
  struct Entry {
    int index;
    nlohmann::json params;
    RunResult result;
    std::string dir;
    TrainConfig config;
    const Entry* trained_in = nullptr;  // the longer run whose state after config.epochs this is
    std::map<int, std::string> snapshots;
  };
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
    entries.push_back({index, params, {}, (fs::path(run_dir) / "grid" / name).string(), sub, nullptr, {}});
    size_t k = keys.size();
    while (k > 0 && ++position[k - 1] == values[k - 1].size()) position[--k] = 0;
    if (k == 0) break;
  }
  const auto without_epochs = [](nlohmann::json params) {
    params.erase("epochs");
    return params;
  };
  for (auto& entry : entries) {
    if (!entry.params.contains("epochs") || entry.config.schedule.kind == "cosine") continue;
    const nlohmann::json others = without_epochs(entry.params);
    Entry* longest = &entry;
    for (auto& other : entries) {
      if (without_epochs(other.params) == others && other.config.schedule.kind != "cosine" &&
          other.config.epochs > longest->config.epochs) {
        longest = &other;
      }
    }
    if (longest == &entry) continue;
    entry.trained_in = longest;
    longest->snapshots[entry.config.epochs] = entry.dir;
  }
  const auto describe = [&](const Entry& entry) {
    std::string text = "grid " + std::to_string(entry.index + 1) + "/" + std::to_string(entries.size()) + ": " + entry.params.dump();
    if (entry.trained_in) {
      text += ", read from " + fs::path(entry.trained_in->dir).filename().string() + " after epoch " + std::to_string(entry.config.epochs);
    }
    return text;
  };

  // Several ranks train each combination together; rank 0 alone writes the leaderboard.
  const bool writes = options.distributed == nullptr || options.distributed->is_main();
  if (writes) {  // `loupe train --resume -o RUN_DIR` continues the grid from this file
    fs::create_directories(run_dir);
    write_json_atomic((fs::path(run_dir) / "grid_config.json").string(), config.to_json());
  }
  RunOptions sub_options = options;
  sub_options.evaluate_test = false;
  for (auto& entry : entries) {
    if (entry.trained_in) continue;  // read below, once the run it comes from has passed its epoch
    if (writes) std::fprintf(stderr, "%s\n", describe(entry).c_str());
    RunOptions training = sub_options;
    training.snapshots = entry.snapshots;
    entry.result = run_training(entry.config, entry.dir, training);
    if (entry.result.interrupted) {
      entry.result.run_dir = run_dir;  // resuming continues the grid, not only this combination
      return entry.result;
    }
    for (auto& shorter : entries) {
      if (shorter.trained_in != &entry) continue;
      if (writes) std::fprintf(stderr, "%s\n", describe(shorter).c_str());
      // The state after its epoch, or after the epoch early stopping ended the longer run.
      const int expected = std::min(shorter.config.epochs, entry.result.epochs_run);
      if (const int recorded = epochs_recorded(shorter.dir); recorded != expected) {
        throw Error(ErrorCode::Io, "grid combination " + shorter.params.dump() + ": " + shorter.dir +
                                       " does not hold the state of " + entry.dir + " after epoch " + std::to_string(expected) +
                                       " (it records " + std::to_string(std::max(0, recorded)) +
                                       " epochs); train that combination on its own, or remove " + entry.dir +
                                       " and rerun the grid");
      }
      RunOptions reading = sub_options;
      reading.evaluate_only = true;
      shorter.result = run_training(shorter.config, shorter.dir, reading);
    }
  }
  const bool higher = config.selection_metric != "val_loss";
  std::vector<Entry*> ranked;
  for (auto& e : entries) ranked.push_back(&e);
  // Ties (an accuracy of 1.0 on a few hundred validation images is common) go to the lower
  // validation loss of the selected model: still validation only.
  const auto val_loss = [](const Entry* e) {  // none (no epoch improved) or NaN ranks last
    const double loss = e->result.val_report.value("log_loss", std::numeric_limits<double>::infinity());
    return std::isnan(loss) ? std::numeric_limits<double>::infinity() : loss;
  };
  std::stable_sort(ranked.begin(), ranked.end(), [&](const Entry* a, const Entry* b) {
    if (a->result.best_value != b->result.best_value) {
      return higher ? a->result.best_value > b->result.best_value : a->result.best_value < b->result.best_value;
    }
    return val_loss(a) < val_loss(b);
  });
  const auto trained_in = [](const Entry& e) { return fs::path((e.trained_in ? e.trained_in : &e)->dir).filename().string(); };
  // How sure the ranking is: each validation accuracy with its 95% interval (Wilson's, from the
  // shared metrics), and how many combinations reach an accuracy inside the winner's.
  const auto val_interval = [](const Entry& e) {
    const std::optional<Interval> interval = accuracy_interval_of(e.result.val_report);
    return interval ? nlohmann::json::array({interval->low, interval->high}) : nlohmann::json(nullptr);
  };
  // The selection metric's best value is "best_<metric>": val_accuracy and val_loss are also
  // columns of their own (the selected model's), and a name must not appear twice.
  const std::string best_column = "best_" + config.selection_metric;
  std::string csv = "rank,run,";
  for (const auto& k : keys) csv += k + ",";
  csv += best_column + ",best_epoch,epochs_run,val_accuracy,val_accuracy_low,val_accuracy_high,val_loss,trained_in\n";
  nlohmann::json board = nlohmann::json::array();
  for (size_t r = 0; r < ranked.size(); ++r) {
    const Entry& e = *ranked[r];
    csv += std::to_string(r + 1) + "," + fs::path(e.dir).filename().string() + ",";
    for (const auto& k : keys) csv += e.params[k].dump() + ",";
    const double val_acc = e.result.val_report.value("accuracy", 0.0);
    csv += std::to_string(e.result.best_value) + "," + std::to_string(e.result.best_epoch) + "," +
           std::to_string(e.result.epochs_run) + "," + std::to_string(val_acc) + ",";
    const nlohmann::json interval = val_interval(e);
    csv += (!interval.is_null() ? std::to_string(interval[0].get<double>()) + "," + std::to_string(interval[1].get<double>())
                                 : std::string(",")) +
           "," + std::to_string(val_loss(&e)) + "," + trained_in(e) + "\n";
    board.push_back({{"rank", r + 1}, {"run", e.dir}, {"params", e.params}, {best_column, e.result.best_value},
                     {"best_epoch", e.result.best_epoch}, {"epochs_run", e.result.epochs_run},
                     {"stopped_early", e.result.stopped_early}, {"val_accuracy", val_acc}, {"val_accuracy_interval", interval}, {"val_loss", val_loss(&e)},
                     {"trained_in", trained_in(e)}});
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
  const nlohmann::json winner_interval = val_interval(winner);
  if (!winner_interval.is_null()) {
    const double low = winner_interval[0].get<double>(), high = winner_interval[1].get<double>();
    const auto inside = std::count_if(entries.begin(), entries.end(), [&](const Entry& e) {
      const double accuracy = e.result.val_report.value("accuracy", -1.0);
      return accuracy >= low && accuracy <= high;
    });
    summary["validation_within_noise"] = {{"winner_val_accuracy_interval", winner_interval}, {"combinations_inside", inside},
                                          {"combinations", entries.size()}};
    if (writes) {
      std::fprintf(stderr,
                   "grid: %d of %zu combinations reach a validation accuracy inside the winner's 95%% interval, %.4f "
                   "[%.3f, %.3f]: their order is within this validation split's noise\n",
                   static_cast<int>(inside), entries.size(), winner.result.val_report.value("accuracy", 0.0), low, high);
    }
  }
  if (writes) std::ofstream((fs::path(run_dir) / "metrics.json").string()) << summary.dump(2) << "\n";
  result.run_dir = winner.dir;
  return result;
}

}  // namespace loupe::train
