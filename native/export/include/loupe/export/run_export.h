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
#pragma once

#include <string>

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
};

struct RunExportResult {
  std::string onnx_path;
  std::string card_path;            // empty when not written
  ModelCard card;
  ParityReport parity;              // empty when verify is false
  int64_t file_bytes = 0;
  std::string note;                 // e.g. which grid run was exported, why real images were not compared
};

// out_path empty: RUN/model.onnx. Throws loupe::Error naming the missing or bad file, an
// unsupported model, or a failed parity check (with the report; nothing is left at out_path).
RunExportResult run_export(const std::string& run_dir, const std::string& out_path,
                           const RunExportOptions& options = {});

}  // namespace loupe::exporter
