// Classical baselines (seed 000 compares its CNN with SVM and KNN): OpenCV's ml module on the
// same data set, split and preprocessing as a training run, reported in the same format.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "loupe/train/train_config.h"

namespace loupe::train {

struct BaselineOptions {
  int feature_side = 32;  // images are preprocessed to this square size and flattened
  int knn_k = 5;
};

// Trains SVM (RBF kernel, C and gamma chosen on the validation split) and KNN on the training
// split, evaluates both on validation and held-out test, and writes
// out_dir/baselines.json (+ baseline_<name>.txt reports). Returns the JSON.
nlohmann::json run_baselines(const TrainConfig& config, const std::string& out_dir, const BaselineOptions& options);

}  // namespace loupe::train
