// What a run leaves for people: history tables, a readable report and pictures (training curves,
// confusion matrix heat map) drawn with OpenCV.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "balance.h"
#include "dataset.h"
#include "loupe/metrics.h"
#include "train_config.h"

namespace loupe::train {

struct EpochRecord;

// history.csv and history.json in run_dir.
void write_history(const std::string& run_dir, const std::vector<EpochRecord>& history);

// Loss and accuracy curves (train vs validation), one PNG.
void draw_training_curves(const std::vector<EpochRecord>& history, const std::string& png_path);

// Confusion matrix heat map with counts and row-normalised shading, one PNG.
void draw_confusion_matrix(const ConfusionMatrix& matrix, const std::string& title, const std::string& png_path);

// report.md + curves.png + confusion_<split>.png.
void write_run_report(const std::string& run_dir, const TrainConfig& config, const data::Dataset& dataset,
                      const data::Split& split, const data::BalancedTraining& balanced,
                      const std::vector<EpochRecord>& history, const nlohmann::json& metrics);

}  // namespace loupe::train
