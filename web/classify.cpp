#include "classify.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace loupe_web {

std::vector<float> softmax(const float* logits, size_t count) {
  std::vector<float> out(count);
  if (count == 0) return out;
  const double top = *std::max_element(logits, logits + count);
  double sum = 0;
  std::vector<double> e(count);
  for (size_t i = 0; i < count; ++i) sum += (e[i] = std::exp(static_cast<double>(logits[i]) - top));
  for (size_t i = 0; i < count; ++i) out[i] = static_cast<float>(e[i] / sum);
  return out;
}

Prediction make_prediction(int model_id, std::vector<float> probabilities) {
  Prediction p;
  p.model_id = model_id;
  p.status = PredictionStatus::done;
  p.probabilities = std::move(probabilities);
  if (!p.probabilities.empty()) {
    p.top = static_cast<int>(std::max_element(p.probabilities.begin(), p.probabilities.end()) - p.probabilities.begin());
    p.confidence = p.probabilities[static_cast<size_t>(p.top)];
  }
  return p;
}

static std::string folded(const std::string& name) {
  std::string out;
  for (const unsigned char c : name) out += (c == '_' || c == '-') ? ' ' : static_cast<char>(std::tolower(c));
  return out;
}

int label_from_path(const std::string& path, const std::vector<std::string>& class_names) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return -1;
  const size_t start = path.find_last_of('/', slash - 1);
  const std::string folder = folded(path.substr(start == std::string::npos ? 0 : start + 1,
                                                slash - (start == std::string::npos ? 0 : start + 1)));
  for (size_t i = 0; i < class_names.size(); ++i) {
    if (folded(class_names[i]) == folder) return static_cast<int>(i);
  }
  return -1;
}

Evaluation evaluate(const std::vector<ImageEntry>& entries, const std::vector<std::string>& class_names, int model_id) {
  Evaluation evaluation;
  std::vector<std::vector<double>> scores;
  std::vector<int> labels;
  for (const ImageEntry& entry : entries) {
    const int label = label_from_path(entry.path, class_names);
    const Prediction& p = entry.prediction;
    const bool predicted = p.model_id == model_id && p.status == PredictionStatus::done &&
                           p.probabilities.size() == class_names.size();
    if (label < 0) {
      evaluation.unlabelled += predicted;
      continue;
    }
    if (entry.status == EntryStatus::error || (p.model_id == model_id && p.status == PredictionStatus::error)) {
      ++evaluation.failed;
      continue;
    }
    if (!predicted) continue;
    evaluation.out_of_distribution += p.out_of_distribution;
    scores.emplace_back(p.probabilities.begin(), p.probabilities.end());
    labels.push_back(label);
  }
  evaluation.labelled = static_cast<int>(labels.size());
  if (labels.empty()) return evaluation;
  // The report's confusion matrix is built from argmax of the scores: the same as the table's.
  evaluation.report = loupe::classification_report(class_names, scores, labels);
  loupe::ConfusionMatrix matrix(class_names);
  for (size_t i = 0; i < labels.size(); ++i) matrix.add(labels[i], loupe::argmax(scores[i]));
  evaluation.matrix = std::move(matrix);
  return evaluation;
}

static std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (const char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

static std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

std::string results_csv(const std::vector<ImageEntry>& entries, const std::vector<int>& order,
                        const std::vector<std::string>& class_names, int model_id, bool with_ood) {
  std::string csv = "path,label,predicted,confidence";
  for (const std::string& name : class_names) csv += "," + csv_field("p_" + name);
  if (with_ood) csv += ",ood_distance,out_of_distribution";
  csv += ",status,error\n";
  for (const int index : order) {
    if (index < 0 || static_cast<size_t>(index) >= entries.size()) continue;
    const ImageEntry& entry = entries[static_cast<size_t>(index)];
    const Prediction& p = entry.prediction;
    const bool done = p.model_id == model_id && p.status == PredictionStatus::done &&
                      p.probabilities.size() == class_names.size();
    const int label = label_from_path(entry.path, class_names);
    csv += csv_field(entry.path) + "," + (label >= 0 ? csv_field(class_names[static_cast<size_t>(label)]) : "") + ",";
    csv += done ? csv_field(class_names[static_cast<size_t>(p.top)]) + "," + number(p.confidence) : ",";
    for (size_t c = 0; c < class_names.size(); ++c) csv += "," + (done ? number(p.probabilities[c]) : std::string());
    if (with_ood) {
      csv += done && p.has_ood ? "," + number(p.ood_distance) + "," + (p.out_of_distribution ? "true" : "false") : ",,";
    }
    std::string status, error;
    if (entry.status == EntryStatus::error) {
      status = "unreadable";
      error = entry.error;
    } else if (p.model_id == model_id && p.status == PredictionStatus::error) {
      status = "failed";
      error = p.error;
    } else {
      status = done ? "ok" : "not run";
    }
    csv += "," + status + "," + csv_field(error) + "\n";
  }
  return csv;
}

}  // namespace loupe_web
