// k-fold cross-validation (cross_validation.h).
#include "loupe/train/cross_validation.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "loupe/error.h"
#include "loupe/train/atomic_file.h"

namespace fs = std::filesystem;

namespace loupe::train {

namespace {

// The figures of a test report worth comparing across folds (null when a fold lacks one).
nlohmann::json figures(const nlohmann::json& report, const std::vector<std::string>& classes) {
  const auto at = [&](const nlohmann::json& j, const char* key) { return j.is_object() && j.contains(key) ? j.at(key) : nlohmann::json(); };
  nlohmann::json out = {{"accuracy", at(report, "accuracy")},
                        {"balanced_accuracy", at(report, "balanced_accuracy")},
                        {"macro_f1", at(at(report, "macro_avg"), "f1")},
                        {"macro_roc_auc", at(report, "macro_roc_auc")},
                        {"log_loss", at(report, "log_loss")},
                        {"ece", at(report, "ece")}};
  const nlohmann::json per_class = at(report, "classes");
  for (size_t c = 0; c < classes.size(); ++c) {
    out["recall_" + classes[c]] = per_class.is_array() && c < per_class.size() ? at(per_class[c], "recall") : nlohmann::json();
  }
  return out;
}

}  // namespace

CrossValidation run_cross_validation(const TrainConfig& config, const std::string& run_dir, int folds,
                                     const RunOptions& options) {
  if (folds < 2) throw Error(ErrorCode::InvalidArgument, "--folds: at least 2");
  if (!config.grid.is_null() && !config.grid.empty()) {
    throw Error(ErrorCode::InvalidArgument, "cross-validation of a grid is not supported: choose the grid's winner first");
  }
  fs::create_directories(run_dir);
  CrossValidation cv;
  std::vector<std::string> classes;
  nlohmann::json per_fold = nlohmann::json::array();
  for (int fold = 0; fold < folds; ++fold) {
    TrainConfig fold_config = config;
    fold_config.split.folds = folds;
    fold_config.split.fold = fold;
    fold_config.name = config.name + " fold " + std::to_string(fold + 1) + "/" + std::to_string(folds);
    const std::string dir = (fs::path(run_dir) / ("fold-" + std::to_string(fold))).string();
    RunResult result;
    if (fs::exists(fs::path(dir) / "metrics.json")) {  // finished before: read it back
      std::ifstream in(fs::path(dir) / "metrics.json");
      const nlohmann::json metrics = nlohmann::json::parse(in);
      result.run_dir = dir;
      result.val_report = metrics.value("val", nlohmann::json());
      result.test_report = metrics.value("test", nlohmann::json());
      result.best_epoch = metrics.value("selected_epoch", 0);
      std::fprintf(stderr, "cv: fold %d/%d already finished in %s\n", fold + 1, folds, dir.c_str());
    } else {
      std::fprintf(stderr, "cv: fold %d/%d -> %s\n", fold + 1, folds, dir.c_str());
      RunOptions fold_options = options;
      fold_options.resume = options.resume && fs::exists(fs::path(dir) / "checkpoints" / "last.pt");
      result = run_training(fold_config, dir, fold_options);
      if (result.interrupted) {
        cv.interrupted = true;
        cv.folds.push_back(result);
        return cv;
      }
    }
    if (classes.empty()) {
      std::ifstream in(fs::path(dir) / "dataset.json");
      classes = nlohmann::json::parse(in).at("classes").get<std::vector<std::string>>();
    }
    per_fold.push_back({{"fold", fold}, {"run", dir}, {"test_images", result.test_report.value("total", 0)},
                        {"test", figures(result.test_report, classes)}});
    cv.folds.push_back(result);
  }
  // Mean, sample standard deviation, min and max of every figure over the folds that have it.
  nlohmann::json summary = nlohmann::json::object();
  for (const auto& [name, unused] : per_fold[0]["test"].items()) {
    std::vector<double> v;
    for (const auto& f : per_fold) {
      if (f["test"][name].is_number()) v.push_back(f["test"][name].get<double>());
    }
    if (v.empty()) continue;
    double mean = 0;
    for (double x : v) mean += x / static_cast<double>(v.size());
    double var = 0;
    for (double x : v) var += (x - mean) * (x - mean);
    const double sd = v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : 0.0;
    summary[name] = {{"mean", mean}, {"sd", sd}, {"min", *std::min_element(v.begin(), v.end())},
                     {"max", *std::max_element(v.begin(), v.end())}, {"folds", v.size()}};
  }
  cv.summary = {{"name", config.name}, {"folds", folds}, {"seed", config.split.seed},
                {"group", config.split.group.enabled() ? config.split.group.to_json() : nlohmann::json()},
                {"classes", classes}, {"per_fold", per_fold}, {"summary", summary},
                {"note", "each image is in exactly one fold's test split; sd is the sample standard deviation over folds"}};
  write_json_atomic((fs::path(run_dir) / "cv.json").string(), cv.summary);
  std::string md = "# Cross-validation: " + config.name + "\n\n> Research use only. **Not a diagnostic device.**\n\n" +
                   std::to_string(folds) + " folds, stratified" + (config.split.group.enabled() ? " and group-aware" : "") +
                   ", seed " + std::to_string(config.split.seed) + "; every image is tested once.\n\n| figure | mean | sd | min | max |\n|---|---|---|---|---|\n";
  char line[256];
  for (const auto& [name, s] : summary.items()) {
    std::snprintf(line, sizeof line, "| %s | %.4f | %.4f | %.4f | %.4f |\n", name.c_str(), s["mean"].get<double>(),
                  s["sd"].get<double>(), s["min"].get<double>(), s["max"].get<double>());
    md += line;
  }
  md += "\nPer fold: `fold-<i>/report.md`.\n";
  write_text_atomic((fs::path(run_dir) / "cv.md").string(), md);
  return cv;
}

}  // namespace loupe::train
