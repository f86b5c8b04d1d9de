// `loupe ood-threshold`: the out-of-distribution threshold of an exported model, re-estimated from
// the file alone (no checkpoint, no LibTorch forward pass) so that the false-alarm rate its card
// states holds: split-conformal over cross-fitted training distances and the validation distances
// (ood_fit.h), the threshold `loupe export` now sets itself.
//
//   loupe::exporter::RethresholdOptions options;
//   options.split_file = "runs/chest/split.json";     // or rebuilt: loupe split -c CONFIG -o split.json
//   auto result = loupe::exporter::rethreshold_ood("models/shipped/chest-xray-mobilenet_v2.onnx", options);
//   std::cout << result.to_text();
//   // result.onnx: the same file with the card's "ood" updated (onnx_model.h with_model_card)
//
// How: the model runs (ONNX Runtime) on the training images its out-of-distribution fit used
// (ood_fit_files: all of the split's training images, or export's stratified sample), for its
// "embedding" output, and on the validation and test images for "embedding" and the distance. The
// Mahalanobis fit is refitted from those embeddings exactly as export fitted it, and must give the
// graph's own distances on the validation images (max relative difference <= the tolerance;
// otherwise the split or the sample is not the export's and nothing is written). Then each
// training image's distance under a fit on the other folds (whole patient groups per fold, from the
// split's group spec) joins the validation distances, and the threshold is their split-conformal
// quantile. Only the card changes: the graph, its weights (the weights hash) and the self-test stay.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/export/ood_fit.h"
#include "loupe/model_card.h"

namespace loupe::exporter {

struct RethresholdOptions {
  std::string split_file;        // the run's split.json (or `loupe split -c CONFIG -o FILE`)
  std::string data_root;         // where the data set is now (read_split_files)
  int max_train_images = 2000;   // export's RunExportOptions::max_train_images when the model was exported
  OodThresholdOptions threshold; // alpha and folds; the seed is the card's split seed
  int threads = 0, batch = 16;
  double reproduce_tolerance = 1e-3;  // relative, between the refitted and the graph's distances
  std::string created_utc;       // recorded with the new threshold
  std::function<void(const std::string&)> progress;  // a line per step
};

struct RethresholdResult {
  OodThresholdEstimate estimate;
  int64_t fit_images = 0, val_images = 0, test_images = 0;
  double reproduced_difference = 0;  // max relative difference, refitted vs the graph's distances
  double old_threshold = 0;
  int64_t val_flagged_before = 0, val_flagged_after = 0, test_flagged_before = 0, test_flagged_after = 0;
  nlohmann::json ood;                // the card's new "ood"
  std::vector<uint8_t> onnx;         // the model file with it
  ModelCard card;                    // its card
  std::string to_text() const;       // what the command prints
};

// Throws Error naming the problem: a model without an OOD check or without an "embedding" output,
// a split whose classes differ, a file that cannot be read, a fit that does not reproduce the
// graph's (with the difference), too few distances for alpha.
RethresholdResult rethreshold_ood(const std::string& model_path, const RethresholdOptions& options);

}  // namespace loupe::exporter
