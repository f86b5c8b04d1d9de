// The out-of-distribution threshold of an exported file, re-estimated (ood_threshold.h).
#include "loupe/export/ood_threshold.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>

#include "loupe/data/dataset.h"
#include "loupe/error.h"
#include "loupe/export/onnx_file.h"
#include "loupe/export/run_export.h"
#include "loupe/inference/batch_predict.h"
#include "loupe/inference/ort_session.h"
#include "loupe/onnx_model.h"

namespace loupe::exporter {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::Io, path + ": cannot open");
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

torch::Tensor to_torch(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).to(torch::kFloat64).clone();
}

std::vector<std::string> paths_of(const std::vector<std::pair<std::string, int>>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) out.push_back(f.first);
  return out;
}

// The split's group spec (split.json's "spec"), for folds that keep a patient's images together.
data::GroupSpec split_group(const std::string& split_file) {
  std::ifstream in(split_file);
  try {
    const json doc = json::parse(in);
    if (doc.contains("spec")) return data::SplitSpec::from_json(doc.at("spec")).group;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::InvalidSpec, split_file + ": its spec: " + e.what());
  }
  return {};
}

int64_t count_above(const torch::Tensor& d, double threshold) { return (d > threshold).sum().item<int64_t>(); }

std::string rate(int64_t flagged, int64_t images) {
  const Interval ci = wilson_interval(flagged, images);
  char text[120];
  std::snprintf(text, sizeof text, "%lld of %lld = %.1f%% [%.1f%%, %.1f%%]", static_cast<long long>(flagged),
                static_cast<long long>(images), images ? 100.0 * static_cast<double>(flagged) / static_cast<double>(images) : 0.0,
                100 * ci.low, 100 * ci.high);
  return text;
}

}  // namespace

RethresholdResult rethreshold_ood(const std::string& model_path, const RethresholdOptions& options) {
  const auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };
  const std::vector<uint8_t> bytes = read_bytes(model_path);
  const std::string file(bytes.begin(), bytes.end());
  const OnnxFileInfo info = read_onnx_bytes(file, model_path);  // the weights hash checked too
  const ModelCard& card = info.card;
  if (!card.ood) fail(model_path + ": the model has no out-of-distribution check to set a threshold for");
  if (!card.has_output("embedding")) {
    fail(model_path + ": the model has no 'embedding' output, which the threshold is estimated from (export it again)");
  }
  const json old = card.ood->to_json();
  const int64_t dims = old.value("dims", int64_t{0});
  if (dims < 1) fail(model_path + ": the card's ood entry does not say how many dims its fit kept");
  const json& split_record = card.training_data.is_object() ? card.training_data.value("split", json()) : json();
  if (!split_record.is_object() || !split_record.contains("seed") || !split_record.at("seed").is_number_unsigned()) {
    fail(model_path + ": the card's training_data.split has no seed (needed to rebuild export's sample and the folds)");
  }
  const uint64_t seed = split_record.at("seed").get<uint64_t>();

  const SplitFiles split = read_split_files(options.split_file, options.data_root);
  if (split.classes != card.class_names) fail(options.split_file + ": its classes differ from the model's");
  for (const auto* part : {&split.train, &split.val}) {
    for (const auto& f : *part) {
      if (f.first.find(".npz:") != std::string::npos) fail(options.split_file + ": images inside an .npz are not supported here");
    }
  }
  const auto fit_files = ood_fit_files(split, options.max_train_images, seed);
  // The card says how many images export fitted on ("train embeddings (759 images)"): the same here.
  static const std::regex count_in_text(R"(\((\d+) images)");
  std::smatch m;
  const std::string fitted_on = old.value("fitted_on", std::string());
  if (std::regex_search(fitted_on, m, count_in_text) && std::stoll(m[1].str()) != static_cast<long long>(fit_files.size())) {
    fail(model_path + ": the card's fit used " + m[1].str() + " training images; " + options.split_file + " with at most " +
         std::to_string(options.max_train_images) + " gives " + std::to_string(fit_files.size()) +
         " (give the split the model was exported from, and export's --max-train-images)");
  }
  RethresholdResult result;
  result.fit_images = static_cast<int64_t>(fit_files.size());
  result.val_images = static_cast<int64_t>(split.val.size());
  result.test_images = static_cast<int64_t>(split.test.size());
  result.old_threshold = card.ood->threshold;

  inference::OrtSessionOptions session_options;
  session_options.threads = options.threads;
  const inference::OrtSession session = inference::OrtSession::from_bytes(file, session_options);
  inference::BatchOptions batch;
  batch.batch = options.batch;
  batch.threads = options.threads;
  const std::string distance_output = card.ood->output;
  say("embedding " + std::to_string(fit_files.size()) + " training images (ONNX Runtime " +
      inference::OrtSession::runtime_version() + ")");
  const auto train_out = inference::run_files(session, card, paths_of(fit_files), {"embedding"}, batch);
  say("validation (" + std::to_string(split.val.size()) + ") and test (" + std::to_string(split.test.size()) + ") images");
  const auto val_out = inference::run_files(session, card, paths_of(split.val), {"embedding", distance_output}, batch);
  const auto test_out = split.test.empty() ? std::map<std::string, Tensor>{}
                                           : inference::run_files(session, card, paths_of(split.test), {distance_output}, batch);

  const torch::Tensor train_embeddings = to_torch(train_out.at("embedding"));
  std::vector<int64_t> label_list;
  for (const auto& f : fit_files) label_list.push_back(f.second);
  const torch::Tensor train_labels = torch::tensor(label_list, torch::kInt64);
  const auto classes = static_cast<int64_t>(card.class_names.size());

  // The fit in the graph, refitted: it must give the graph's distances.
  const MahalanobisFit fit = fit_mahalanobis(train_embeddings, train_labels, classes, dims);
  const torch::Tensor val_graph = to_torch(val_out.at(distance_output)).view({-1});
  const torch::Tensor val_refit = mahalanobis_distance(fit, to_torch(val_out.at("embedding")));
  result.reproduced_difference = ((val_refit - val_graph).abs() / val_graph.abs().clamp_min(1.0)).max().item<double>();
  char diff[64];
  std::snprintf(diff, sizeof diff, "%.3g", result.reproduced_difference);
  if (!(result.reproduced_difference <= options.reproduce_tolerance)) {
    fail(model_path + ": the out-of-distribution fit in the graph is not reproduced from these " +
         std::to_string(fit_files.size()) + " training images (validation distances differ by up to " + diff +
         " relative): the split or the sample is not the one the model was exported with; nothing was written");
  }
  say(std::string("the graph's fit reproduced: validation distances within ") + diff + " (relative)");

  // The groups of the fit's images, for the folds.
  const data::GroupSpec group = split_group(options.split_file);
  std::vector<std::string> groups;
  if (group.enabled()) {
    data::Dataset fit_set;
    fit_set.classes = split.classes;
    for (const auto& [path, label] : fit_files) fit_set.samples.push_back({path, label, data::SplitName::Unassigned, -1, {}});
    groups = data::sample_groups(fit_set, group);
  }
  OodThresholdOptions threshold_options = options.threshold;
  threshold_options.seed = seed;
  say("cross-fitting " + std::to_string(threshold_options.folds) + " folds");
  result.estimate = estimate_ood_threshold(train_embeddings, train_labels, groups, classes, dims, val_graph, threshold_options);
  const double threshold = result.estimate.conformal.threshold;

  result.val_flagged_before = count_above(val_graph, result.old_threshold);
  result.val_flagged_after = count_above(val_graph, threshold);
  json ood = old;
  ood.erase("threshold_quantile");  // the old rule's; threshold_method says what this one is
  ood.update(result.estimate.card_fields());
  ood["val_false_alarm_rate"] = static_cast<double>(result.val_flagged_after) / static_cast<double>(std::max<int64_t>(1, result.val_images));
  json previous = {{"threshold", result.old_threshold},
                   {"fitted_on", old.value("threshold_fitted_on", std::string())},
                   {"quantile", old.value("threshold_quantile", json())},
                   {"val_false_alarm_rate", static_cast<double>(result.val_flagged_before) /
                                                static_cast<double>(std::max<int64_t>(1, result.val_images))}};
  if (!split.test.empty()) {
    const torch::Tensor test_graph = to_torch(test_out.at(distance_output)).view({-1});
    result.test_flagged_before = count_above(test_graph, result.old_threshold);
    result.test_flagged_after = count_above(test_graph, threshold);
    const Interval ci = wilson_interval(result.test_flagged_after, result.test_images);
    ood["test_false_alarm_rate"] = static_cast<double>(result.test_flagged_after) / static_cast<double>(result.test_images);
    ood["test_false_alarm_interval"] = {ci.low, ci.high};
    ood["test_images"] = result.test_images;
    previous["test_false_alarm_rate"] = static_cast<double>(result.test_flagged_before) / static_cast<double>(result.test_images);
  }
  ood["previous_threshold"] = previous;
  ood["threshold_estimated"] = {
      {"by", "loupe ood-threshold"},
      {"created_utc", options.created_utc},
      {"from", "the file's own 'embedding' and '" + distance_output + "' outputs (ONNX Runtime) on the images of the "
               "split it was exported from; the fit in the graph reproduced within " + std::string(diff) + " (relative)"}};
  result.ood = ood;

  json card_json = info.card_json;
  card_json["ood"] = ood;
  result.onnx = with_model_card(bytes.data(), bytes.size(), card_json, model_path);
  result.card = read_onnx_model(result.onnx.data(), result.onnx.size(), model_path).card;
  return result;
}

std::string RethresholdResult::to_text() const {
  std::string text = estimate.summary() + "\n";
  char line[320];
  std::snprintf(line, sizeof line, "threshold %.3f -> %.3f\n", old_threshold, estimate.conformal.threshold);
  text += line;
  text += "  validation: " + rate(val_flagged_before, val_images) + " flagged before, " + rate(val_flagged_after, val_images) +
          " after\n";
  if (test_images > 0) {
    text += "  test:       " + rate(test_flagged_before, test_images) + " flagged before, " +
            rate(test_flagged_after, test_images) + " after (95% Wilson intervals)\n";
  }
  return text;
}

}  // namespace loupe::exporter
