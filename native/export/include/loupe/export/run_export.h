// `loupe export --run DIR [--out model.onnx]`: a training run folder (native/train/trainer.h) to a
// verified ONNX file with its model card.
//
//   auto result = loupe::exporter::run_export("runs/seed004", "");   // -> runs/seed004/model.onnx
//   std::cout << result.parity.to_text();
//
// Reads RUN/config.json (model + preprocess + split seed), RUN/checkpoints/<weights>.pt,
// RUN/dataset.json (classes and counts), RUN/metrics.json (test report, optional). Writes the ONNX
// file (PATH.tmp, renamed into place only after the checker and the parity check pass) and the
// card as a sidecar next to it (model.onnx -> model.card.json). Parity: random inputs, plus up to
// `real_images` images of the run's data set when it is still at config.json's data.path.
// A grid's folder (leaderboard.json, no config.json) exports its winner (metrics.json "winner");
// the default output is then GRID/model.onnx.
//
// Calibration and out-of-distribution check (calibration.h), when the run has a validation split
// and its images can be read (else skipped, with a notice in `note`): the images of RUN/split.json
// are run through the checkpoint (CPU, the run's preprocessing, no augmentation) for their logits
// and embeddings: every validation and test image, and up to max_train_images training images
// (a stratified sample, seeded with the split's seed).
//   - temperature scaling fitted on the validation logits (loupe/calibration.h, the shared core's
//     fit); "probabilities" becomes softmax(logits / T); the card's "calibration" holds T and the
//     expected calibration error (15 bins) and NLL before/after on validation and test;
//     RUN/reliability.png draws them.
//   - the "ood_distance" output: Mahalanobis distance with a shared covariance fitted on the
//     training embeddings (PCA to <= 64 dims, Ledoit-Wolf shrinkage, ood_fit.h); the threshold is
//     split-conformal for a 5% false-alarm rate, on the training embeddings' cross-fitted
//     distances (10 folds of whole patient groups when the split has a group spec) and the
//     validation distances; the card's "ood" holds it with the stated false-alarm rate and its
//     interval, and the rates measured on validation and test (the test's with its Wilson interval).
// The figures also go to RUN/export.md and RUN/log.txt. The parity check covers both outputs.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "loupe/export/onnx_export.h"

namespace loupe::exporter {

struct RunExportOptions {
  std::string weights = "best";     // checkpoints/<weights>.pt
  std::string version = "1";        // the card's model version
  ExportOptions export_options;     // card fields from the run override export_options.card
  bool verify = true;
  ParityOptions parity;
  int real_images = 8;              // 0: random inputs only
  int threads = 0;                  // LibTorch and ONNX Runtime threads; 0 = all cores
  bool write_card_json = true;
  bool calibration = true;          // temperature scaling (needs a validation split)
  bool ood = true;                  // the ood_distance output (needs a validation split)
  int max_train_images = 2000;      // training images embedded for the out-of-distribution fit
  int ood_max_dims = 64;            // PCA dimensions (at most training images - 1)
  OodThresholdOptions ood_threshold;  // alpha (the stated false-alarm rate), cross-fitting folds
  int calibration_bins = 15;        // expected calibration error bins
  // Where the run's data set is now, if not at config.json's data.path as seen from the current
  // folder (see read_split_files).
  std::string data_root;
};

struct RunExportResult {
  std::string run_dir;              // the run exported (a grid's winner for a grid's folder)
  std::string onnx_path;
  std::string card_path;            // empty when not written
  ModelCard card;
  ParityReport parity;              // empty when verify is false
  SelfTestResult self_test;         // the card's self-test run with ONNX Runtime (when verify is true)
  int64_t file_bytes = 0;
  std::string note;                 // e.g. which grid run was exported, why real images were not compared,
                                    // why calibration / the OOD check were skipped
  nlohmann::json calibration;       // the card's entries; null when not done
  nlohmann::json ood;
  std::string reliability_png;      // RUN/reliability.png (empty when not calibrated)
  std::string report_path;          // RUN/export.md
  std::string summary;              // calibration and OOD figures, a few lines (what `loupe export` prints)
};

// The files of a run's split.json, by part, with their labels. Paths in split.json are as
// `loupe train` saw them: relative to the folder it ran from (e.g. "../shared/data/x/a.png").
// Each path that does not exist as given (from the current folder) is resolved
//   - with data_root: a path under config.json's data.path (RUN/config.json beside split.json)
//     gets that prefix replaced by data_root ("where the data set is now");
//   - else against the split file's folder and each of its parents, the first one where the
//     first missing file exists (a run trained from /work/main into /work/runs/x finds
//     ../shared/data relative to /work/runs).
// Throws Error(Io) naming the first file that still does not exist, and how to fix it (run from
// the folder training ran from, or give data_root); Error(Io/InvalidSpec) for a missing or
// malformed split file. Images inside an .npz ("file.npz:train_images[3]") are resolved by their
// file part.
struct SplitFiles {
  std::vector<std::string> classes;
  std::vector<std::pair<std::string, int>> train, val, test;
  std::string resolved_from;        // the folder relative paths were resolved against ("" = as given)
  const std::vector<std::pair<std::string, int>>& part(const std::string& name) const;  // "train", "val", "test"
};
SplitFiles read_split_files(const std::string& split_json, const std::string& data_root = "");

// The training files (of `files.train`, in its order) `loupe export` embeds for the
// out-of-distribution fit: all of them, or a stratified sample of max_train_images seeded with the
// split's seed (RunExportOptions::max_train_images).
std::vector<std::pair<std::string, int>> ood_fit_files(const SplitFiles& files, int max_train_images, uint64_t seed);

// out_path empty: RUN/model.onnx. Throws loupe::Error naming the missing or bad file, an
// unsupported model, or a failed parity check (with the report; nothing is left at out_path).
RunExportResult run_export(const std::string& run_dir, const std::string& out_path,
                           const RunExportOptions& options = {});

}  // namespace loupe::exporter
