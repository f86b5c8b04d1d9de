// What a run leaves for people: history tables, a readable report and pictures (training curves,
// confusion matrix heat map) drawn with OpenCV.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/data/balance.h"
#include "loupe/data/dataset.h"
#include "loupe/metrics.h"
#include "loupe/train/train_config.h"

namespace loupe::train {

struct EpochRecord;

// history.csv and history.json in run_dir.
void write_history(const std::string& run_dir, const std::vector<EpochRecord>& history);

// Loss and accuracy curves (train vs validation), one PNG.
void draw_training_curves(const std::vector<EpochRecord>& history, const std::string& png_path);

// Confusion matrix heat map with counts and row-normalised shading, one PNG.
void draw_confusion_matrix(const ConfusionMatrix& matrix, const std::string& title, const std::string& png_path);

// One reliability diagram panel: per equal-width confidence bin, the accuracy and the mean
// confidence of its images (calibration; loupe export draws them before and after temperature
// scaling).
struct ReliabilityPanel {
  std::string title;                 // e.g. "validation, before\nECE 0.052" (lines split at '\n')
  std::vector<int64_t> count;        // images per bin
  std::vector<double> confidence;    // mean top-class probability per bin
  std::vector<double> accuracy;      // share correct per bin
};

// Panels side by side, `columns` per row: accuracy bars per bin against the diagonal (perfect
// calibration), the gap to the mean confidence shaded, counts under the bars. One PNG.
void draw_reliability_diagram(const std::vector<ReliabilityPanel>& panels, int columns, const std::string& png_path);

// report.md + curves.png + confusion_<split>.png.
void write_run_report(const std::string& run_dir, const TrainConfig& config, const data::Dataset& dataset,
                      const data::Split& split, const data::BalancedTraining& balanced,
                      const std::vector<EpochRecord>& history, const nlohmann::json& metrics);

}  // namespace loupe::train
