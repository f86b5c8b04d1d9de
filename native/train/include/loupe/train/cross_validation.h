// k-fold cross-validation (`loupe cv`): the right tool for data sets of a few hundred images,
// where one held-out test split is too small to tell 0.81 from 0.91.
//
//   loupe::train::CrossValidation cv = loupe::train::run_cross_validation(config, "runs/cv", 5, options);
//   // runs/cv/fold-0 ... fold-4: complete runs (each with its split.json, metrics.json, report.md)
//   // runs/cv/cv.json, cv.md: per fold test metrics; per metric mean, standard deviation, min, max
//
// Fold i's test split is the i-th of `folds` stratified parts of the data set (whole groups when
// the config's split has a group spec, so no patient is in two folds' test sets); its validation
// split is split.val of the rest (model selection and early stopping see only that). Every image
// is in exactly one fold's test split.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/train/trainer.h"

namespace loupe::train {

struct CrossValidation {
  std::vector<RunResult> folds;
  nlohmann::json summary;  // what cv.json holds
  bool interrupted = false;
};

// Folds whose run folder already holds metrics.json are not trained again (a resumed cv).
CrossValidation run_cross_validation(const TrainConfig& config, const std::string& run_dir, int folds,
                                     const RunOptions& options);

}  // namespace loupe::train
