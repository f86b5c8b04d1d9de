// Predictions over many images: which class a file's folder names, the results table (CSV and
// JSON, one column set) and the evaluation of a labelled folder. `loupe predict` and the web page
// both write their results and reports with this code, so the same folder gives the same file.
//
//   std::vector<loupe::ResultRow> rows;
//   for (each image) {
//     loupe::ResultRow row;
//     row.path = "chest-xray/Covid-19/img1.png";              // as the user opened it
//     row.label = loupe::folder_label(row.path, card.class_names);
//     row.prediction = loupe::interpret_outputs(card, outputs);  // prediction.h
//     row.status = loupe::ResultStatus::ok;
//     rows.push_back(row);
//   }
//   std::string csv = loupe::results_csv(rows, card);
//   loupe::Evaluation e = loupe::evaluate(rows, card.class_names);   // e.report->to_text()
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loupe/metrics.h"
#include "loupe/model_card.h"
#include "loupe/prediction.h"

namespace loupe {

// The class a file's folders name, or -1. `path` is relative to where the user opened it, with
// '/' separators (the browser's webkitRelativePath; `loupe predict FOLDER` uses FOLDER's name and
// what lies below it, so both see "FOLDER/class/.../file.png"). The folders are tried from the
// file's own folder upwards and the first one that names a class wins, so class folders may hold
// sub-folders (patients, dates) and the opened folder may sit above the class folders. Names match
// ignoring case and treating '_', '-' and ' ' alike ("No_findings" = "no findings").
int folder_label(const std::string& path, const std::vector<std::string>& class_names);

enum class ResultStatus {
  ok,          // predicted
  unreadable,  // the file could not be read or decoded
  failed,      // decoded, but preprocessing or the model failed
  not_run,     // not classified (yet): a cancelled or unfinished batch
};
const char* to_string(ResultStatus status);  // "ok", "unreadable", "failed", "not run"

struct ResultRow {
  std::string path;
  int label = -1;  // the true class (folder_label, or a split file's), -1 when unknown
  ResultStatus status = ResultStatus::not_run;
  std::string error;      // why, when unreadable or failed
  Prediction prediction;  // valid when status == ok
  // A DICOM file whose Modality, Body Part Examined or View Position contradicts the card's
  // intended_images: IntendedImages::contradiction(), shown before any probability. "" otherwise.
  std::string intended_use_warning;
  // A multi-frame DICOM file: the frame classified (0-based) of how many; frames 0 otherwise.
  int frame = 0, frames = 0;
};

// One row per entry, in the order given:
//   path,label,predicted,confidence,p_<class>...,[op_<class>...,][ood_distance,out_of_distribution,]
//   [intended_use_warning,][frame,]status,error
// label is the true class's name ("" when unknown); predicted is Prediction::top (the largest
// probability, or the operating points' rule, prediction.h) and confidence its probability;
// op_<class> (one column per operating point of the calibration in use, in the card's order) is
// true when that class's probability reaches its threshold; numbers are printed with 9 significant digits
// (a float's full precision: the file carries what the model computed); fields are quoted as
// RFC 4180 says (comma, quote, CR or LF inside); lines end with LF. The ood columns are there when
// the card has an out-of-distribution check, intended_use_warning when the card has
// intended_images, and frame ("1 of 3", 1-based) when a row is a multi-frame DICOM file.
std::string results_csv(const std::vector<ResultRow>& rows, const ModelCard& card);

// The same rows as JSON objects with the same names: {"path", "label", "predicted", "confidence",
// "probabilities": [p per class, in class_names order], "at_operating_point": {class: true/false}
// (with operating points), "ood_distance", "out_of_distribution", "intended_use_warning", "frame"
// (1-based), "frames", "status", "error"}; keys without a value are left out.
nlohmann::json results_json(const std::vector<ResultRow>& rows, const ModelCard& card);

// The confusion-matrix cell a row counts in, as evaluate() counts it: {true class, predicted
// class (Prediction::top)}; nullopt for a row the matrix leaves out (no label, not read, failed,
// not predicted). The page filters its table by a clicked cell with this, so that a cell's count
// and the rows shown for it are the same rule.
struct MatrixCell {
  int true_class = -1, predicted_class = -1;
  bool operator==(const MatrixCell& other) const {
    return true_class == other.true_class && predicted_class == other.predicted_class;
  }
  bool operator!=(const MatrixCell& other) const { return !(*this == other); }
};
std::optional<MatrixCell> evaluation_cell(const ResultRow& row, size_t classes);

// A labelled folder's evaluation: every row with a label and a prediction.
struct Evaluation {
  int labelled = 0;             // rows counted in the report
  int out_of_distribution = 0;  // of those, flagged by the model's out-of-distribution check
  int unlabelled = 0;           // predicted rows without a label
  int failed = 0;               // labelled rows that could not be read or classified
  std::optional<ClassificationReport> report;  // absent when no row is labelled and predicted
  std::optional<ConfusionMatrix> matrix;
  nlohmann::json to_json() const;  // {"labelled", ..., "report", "confusion_matrix"}
};
// With `intervals`, the report carries its confidence intervals (report_intervals(), metrics.h).
Evaluation evaluate(const std::vector<ResultRow>& rows, const std::vector<std::string>& class_names,
                    const std::optional<BootstrapOptions>& intervals = std::nullopt);

}  // namespace loupe
