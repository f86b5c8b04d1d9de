// What the app makes of a model's outputs: probabilities, the evaluation view's report, and the
// CSV export. Plain C++ over loupe::core (no ImGui, no browser): the evaluation uses the same
// metrics code as `loupe eval`, and all of this is unit-tested natively (tests/web/).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "image_batch.h"
#include "loupe/metrics.h"

namespace loupe_web {

// Softmax of `count` logits, computed in double and stable for large logits.
std::vector<float> softmax(const float* logits, size_t count);

// A finished prediction from one image's class probabilities.
Prediction make_prediction(int model_id, std::vector<float> probabilities);

// The true class of an image opened from a folder laid out as ROOT/<class>/<file>: the index in
// `class_names` of the file's parent folder name, or -1 when it has none or it names no class.
// Names match ignoring case and treating '_', '-' and ' ' alike ("No_findings" = "no findings").
int label_from_path(const std::string& path, const std::vector<std::string>& class_names);

// The evaluation view: every image with a prediction of `model_id` and a label from its folder.
struct Evaluation {
  int labelled = 0;        // images counted in the report
  int out_of_distribution = 0;  // of those, flagged by the model's out-of-distribution check
  int unlabelled = 0;      // predicted images whose folder names no class
  int failed = 0;          // labelled images that could not be decoded or run
  std::optional<loupe::ClassificationReport> report;  // absent when no image is labelled
  std::optional<loupe::ConfusionMatrix> matrix;
};
Evaluation evaluate(const std::vector<ImageEntry>& entries, const std::vector<std::string>& class_names, int model_id);

// Every entry as one CSV row, in the order given (the table's):
//   path,label,predicted,confidence,p_<class>...,[ood_distance,out_of_distribution,]status,error
// label is the folder's class ("" when none); probabilities print with 9 significant digits so
// the file carries what the model computed. Fields are quoted when needed (RFC 4180).
// The ood columns are written when `with_ood` (the model has an out-of-distribution check).
std::string results_csv(const std::vector<ImageEntry>& entries, const std::vector<int>& order,
                        const std::vector<std::string>& class_names, int model_id, bool with_ood = false);

}  // namespace loupe_web
