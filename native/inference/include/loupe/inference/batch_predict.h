// Classifying image files natively: the batch loop behind `loupe predict` (and `loupe eval` on a
// run's split files). Decoding and preprocessing are the shared core's, done on several threads;
// ONNX Runtime runs the images in batches; the meaning of the outputs is the shared core's
// (loupe/prediction.h), so the results equal the web page's on the same files.
//
//   const loupe::ModelCard card = ...;                        // read_onnx_file(path).card
//   const loupe::inference::OrtSession session("model.onnx");
//   std::vector<loupe::ResultRow> rows = loupe::inference::list_images({"chest-xray"}, card.class_names);
//   loupe::inference::predict_rows(session, card, rows);
//   std::string csv = loupe::results_csv(rows, card);         // loupe/results.h
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "loupe/inference/ort_session.h"
#include "loupe/model_card.h"
#include "loupe/results.h"

namespace loupe::inference {

// One row per file: files as given, folders walked recursively, sorted by path. As in the web page,
// every file of a folder is a row (one that is not an image is reported unreadable, with the
// decoder's reason), except hidden ones (a name below the folder starting with '.'). Each row's
// label is folder_label() of its path from the opened folder's parent down ("FOLDER/class/file.png",
// what the browser sees when that folder is opened). A path that does not exist is a row with
// status unreadable and the reason.
std::vector<ResultRow> list_images(const std::vector<std::string>& paths, const std::vector<std::string>& class_names);

struct BatchOptions {
  int batch = 16;   // images per ONNX Runtime call
  int threads = 0;  // decoding threads; 0 = every core
  std::function<void(size_t done, size_t total)> progress;  // after every batch
};

// Classifies every row whose status is not_run: decoded and preprocessed as the card says, run in
// batches, read by interpret_outputs(). A file that cannot be read or decoded becomes unreadable,
// a failed preprocessing or run failed, each with the reason; the other rows go on.
void predict_rows(const OrtSession& session, const ModelCard& card, std::vector<ResultRow>& rows,
                  const BatchOptions& options = {});

// Runs image files through the model for any of its outputs (e.g. "embedding", "ood_distance"),
// decoded and preprocessed as predict_rows does, in batches: output name -> tensor whose first
// dimension is the file's index. Throws Error naming the first file that cannot be read or run
// (nothing is skipped: what these outputs feed, a fit, must see every file it was asked to).
std::map<std::string, Tensor> run_files(const OrtSession& session, const ModelCard& card,
                                        const std::vector<std::string>& paths, const std::vector<std::string>& outputs,
                                        const BatchOptions& options = {});

}  // namespace loupe::inference
