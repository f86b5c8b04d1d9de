// Folder labels, the results table and the evaluation (results.h).
#include "loupe/results.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace loupe {

namespace {

std::string folded(const std::string& name) {
  std::string out;
  for (const unsigned char c : name) out += (c == '_' || c == '-') ? ' ' : static_cast<char>(std::tolower(c));
  return out;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (const char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

std::string frame_text(const ResultRow& row) {
  return std::to_string(row.frame + 1) + " of " + std::to_string(row.frames);
}

bool predicted(const ResultRow& row, size_t classes) {
  return row.status == ResultStatus::ok && row.prediction.probabilities.size() == classes && row.prediction.top >= 0;
}

}  // namespace

int folder_label(const std::string& path, const std::vector<std::string>& class_names) {
  std::vector<std::string> names;
  names.reserve(class_names.size());
  for (const auto& name : class_names) names.push_back(folded(name));
  // Folders from the file's own one upwards: [start, end) of each component before the file name.
  size_t end = path.find_last_of('/');
  while (end != std::string::npos && end > 0) {
    const size_t slash = path.find_last_of('/', end - 1);
    const size_t start = slash == std::string::npos ? 0 : slash + 1;
    const std::string folder = folded(path.substr(start, end - start));
    for (size_t i = 0; i < names.size(); ++i) {
      if (!folder.empty() && names[i] == folder) return static_cast<int>(i);
    }
    end = slash;
  }
  return -1;
}

const char* to_string(ResultStatus status) {
  switch (status) {
    case ResultStatus::ok: return "ok";
    case ResultStatus::unreadable: return "unreadable";
    case ResultStatus::failed: return "failed";
    case ResultStatus::not_run: return "not run";
  }
  return "unknown";
}

namespace {

// The card's operating points (a site calibration's), in card order; empty when it sets none.
const std::vector<OperatingPointRule>& operating_points(const ModelCard& card) {
  static const std::vector<OperatingPointRule> kNone;
  return card.site_calibration ? card.site_calibration->operating_points : kNone;
}

bool reached(const Prediction& p, const OperatingPointRule& rule) {
  const auto c = static_cast<size_t>(rule.class_index);
  return c < p.at_operating_point.size() && p.at_operating_point[c] != 0;
}

}  // namespace

std::string results_csv(const std::vector<ResultRow>& rows, const ModelCard& card) {
  const std::vector<std::string>& classes = card.class_names;
  const bool with_ood = card.ood.has_value();
  const bool with_intended = card.intended_images.has_value();
  const bool with_frame = std::any_of(rows.begin(), rows.end(), [](const ResultRow& r) { return r.frames > 1; });
  const std::vector<OperatingPointRule>& points = operating_points(card);
  std::string csv = "path,label,predicted,confidence";
  for (const std::string& name : classes) csv += "," + csv_field("p_" + name);
  for (const OperatingPointRule& rule : points) csv += "," + csv_field("op_" + rule.class_name);
  if (with_ood) csv += ",ood_distance,out_of_distribution";
  if (with_intended) csv += ",intended_use_warning";
  if (with_frame) csv += ",frame";
  csv += ",status,error\n";
  for (const ResultRow& row : rows) {
    const bool done = predicted(row, classes.size());
    const Prediction& p = row.prediction;
    const bool labelled = row.label >= 0 && static_cast<size_t>(row.label) < classes.size();
    csv += csv_field(row.path) + "," + (labelled ? csv_field(classes[static_cast<size_t>(row.label)]) : "") + ",";
    csv += done ? csv_field(classes[static_cast<size_t>(p.top)]) + "," + number(p.confidence) : ",";
    for (size_t c = 0; c < classes.size(); ++c) csv += "," + (done ? number(p.probabilities[c]) : std::string());
    for (const OperatingPointRule& rule : points) csv += "," + (done ? std::string(reached(p, rule) ? "true" : "false") : std::string());
    if (with_ood) {
      csv += done && p.has_ood ? "," + number(p.ood_distance) + "," + (p.out_of_distribution ? "true" : "false") : ",,";
    }
    if (with_intended) csv += "," + csv_field(row.intended_use_warning);
    if (with_frame) csv += "," + (row.frames > 1 ? frame_text(row) : std::string());
    csv += std::string(",") + to_string(row.status) + "," + csv_field(row.error) + "\n";
  }
  return csv;
}

nlohmann::json results_json(const std::vector<ResultRow>& rows, const ModelCard& card) {
  const std::vector<std::string>& classes = card.class_names;
  nlohmann::json out = nlohmann::json::array();
  for (const ResultRow& row : rows) {
    nlohmann::json j = {{"path", row.path}, {"status", to_string(row.status)}};
    if (row.label >= 0 && static_cast<size_t>(row.label) < classes.size()) j["label"] = classes[static_cast<size_t>(row.label)];
    const Prediction& p = row.prediction;
    if (predicted(row, classes.size())) {
      j["predicted"] = classes[static_cast<size_t>(p.top)];
      j["confidence"] = p.confidence;
      j["probabilities"] = p.probabilities;
      if (!operating_points(card).empty()) {
        nlohmann::json at = nlohmann::json::object();
        for (const OperatingPointRule& rule : operating_points(card)) at[rule.class_name] = reached(p, rule);
        j["at_operating_point"] = at;
      }
      if (card.ood && p.has_ood) {
        // JSON has no NaN: a distance that is not a number is null (and flagged).
        j["ood_distance"] = std::isfinite(p.ood_distance) ? nlohmann::json(p.ood_distance) : nlohmann::json();
        j["out_of_distribution"] = p.out_of_distribution;
      }
    }
    if (!row.intended_use_warning.empty()) j["intended_use_warning"] = row.intended_use_warning;
    if (row.frames > 1) {
      j["frame"] = row.frame + 1;
      j["frames"] = row.frames;
    }
    if (!row.error.empty()) j["error"] = row.error;
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json Evaluation::to_json() const {
  nlohmann::json j = {{"labelled", labelled}, {"unlabelled", unlabelled}, {"failed", failed},
                      {"out_of_distribution", out_of_distribution}};
  if (report) j["report"] = report->to_json();
  if (matrix) j["confusion_matrix"] = matrix->to_json();
  return j;
}

std::optional<MatrixCell> evaluation_cell(const ResultRow& row, size_t classes) {
  if (row.label < 0 || static_cast<size_t>(row.label) >= classes || !predicted(row, classes)) return std::nullopt;
  return MatrixCell{row.label, row.prediction.top};
}

Evaluation evaluate(const std::vector<ResultRow>& rows, const std::vector<std::string>& class_names,
                    const std::optional<BootstrapOptions>& intervals) {
  Evaluation evaluation;
  std::vector<std::vector<double>> scores;
  std::vector<int> labels, decided;
  for (const ResultRow& row : rows) {
    const bool done = predicted(row, class_names.size());
    if (row.label < 0 || static_cast<size_t>(row.label) >= class_names.size()) {
      evaluation.unlabelled += done;
      continue;
    }
    if (row.status == ResultStatus::unreadable || row.status == ResultStatus::failed) {
      ++evaluation.failed;
      continue;
    }
    const std::optional<MatrixCell> cell = evaluation_cell(row, class_names.size());
    if (!cell) continue;
    evaluation.out_of_distribution += row.prediction.out_of_distribution;
    scores.emplace_back(row.prediction.probabilities.begin(), row.prediction.probabilities.end());
    labels.push_back(cell->true_class);
    decided.push_back(cell->predicted_class);
  }
  evaluation.labelled = static_cast<int>(labels.size());
  if (labels.empty()) return evaluation;
  // The matrix counts the table's predicted class (the largest probability, or the operating
  // points' choice: prediction.h); ROC-AUC and ECE come from the probabilities.
  evaluation.report = classification_report(class_names, scores, labels, decided);
  if (intervals) evaluation.report->intervals = report_intervals(class_names, scores, labels, decided, *intervals);
  ConfusionMatrix matrix(class_names);
  for (size_t i = 0; i < labels.size(); ++i) matrix.add(labels[i], decided[i]);
  evaluation.matrix = std::move(matrix);
  return evaluation;
}

}  // namespace loupe
