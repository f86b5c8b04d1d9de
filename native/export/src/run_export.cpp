// A training run folder -> a verified ONNX file with its model card (see run_export.h).
#include "loupe/export/run_export.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "loupe/data/dataset.h"
#include "loupe/train/loader.h"
#include "loupe/error.h"
#include "loupe/calibration.h"
#include "loupe/export/ood_fit.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/data/random.h"
#include "loupe/train/report.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;

namespace loupe::exporter {

namespace {

using nlohmann::json;

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::Io, path.string() + ": cannot open (is this a training run folder?)");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::InvalidSpec, path.string() + ": not valid JSON: " + e.what());
  }
}

// dataset.json + config.json -> the card's training_data.
json training_data(const json& dataset, const train::TrainConfig& config, const json& metrics) {
  json split = {{"seed", config.split.seed}, {"spec", config.split.to_json()}};
  if (metrics.is_object() && metrics.contains("split") && metrics["split"].is_object()) {
    for (const auto& [key, value] : metrics["split"].items()) {
      if (key != "seed") split[key == "train" || key == "val" || key == "test" ? key + "_images" : key] = value;
    }
  }
  json out = {{"folder", dataset.value("origin", config.data_path)},
              {"kind", dataset.value("kind", std::string())},
              {"classes", dataset.at("classes")},
              {"class_counts", dataset.value("class_counts", json())},
              {"images", dataset.value("images", json())},
              {"skipped_files", dataset.contains("skipped") ? json(dataset["skipped"].size()) : json(0)},
              {"split", split},
              {"balancing", data::to_string(config.balancing)}};
  if (config.max_per_class > 0) out["max_per_class"] = config.max_per_class;
  return out;
}

// metrics.json's held-out test report, without the parts that do not belong in a card.
json test_metrics(const json& metrics) {
  if (!metrics.is_object() || !metrics.contains("test") || !metrics["test"].is_object()) return json();
  json test = metrics["test"];
  if (test.contains("unreadable")) {
    test["unreadable_files"] = test["unreadable"].size();
    test.erase("unreadable");
  }
  test.erase("report_text");
  if (metrics.contains("selected_epoch")) test["selected_epoch"] = metrics["selected_epoch"];
  return test;
}

// [SECTION] split.json paths

// "x.npz:train_images[3]" -> "x.npz"; any other path unchanged.
std::string file_part(const std::string& path) {
  static const std::regex npz_entry(R"((.*\.npz):[A-Za-z0-9_]+\[[0-9]+\])");
  std::smatch m;
  return std::regex_match(path, m, npz_entry) ? m[1].str() : path;
}

bool path_exists(const std::string& path) {
  std::error_code ignored;
  return fs::exists(file_part(path), ignored);
}

std::string starts_with_dir(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.compare(0, dir.size(), dir) != 0) return {};
  if (path.size() == dir.size()) return ".";
  if (dir.back() == '/') return path.substr(dir.size());
  return path[dir.size()] == '/' ? path.substr(dir.size() + 1) : std::string();
}

// config.json's data.path beside a split file ("" when there is none).
std::string run_data_path(const fs::path& run) {
  std::ifstream in(run / "config.json");
  if (!in) return {};
  try {
    const json config = json::parse(in);
    if (config.contains("data") && config["data"].is_object() && config["data"].contains("path") &&
        config["data"]["path"].is_string()) {
      return config["data"]["path"].get<std::string>();
    }
  } catch (const json::exception&) {
  }
  return {};
}

// A path as given if it exists, else rebased (see read_split_files); "" when no rule applies.
struct PathResolver {
  std::string data_path, data_root;  // config.json's data.path; where that data set is now
  fs::path base;                     // the split folder or a parent where relative paths resolve
  std::string resolve(const std::string& path) const {
    if (path_exists(path)) return path;
    if (!data_root.empty()) {
      const std::string rest = starts_with_dir(path, data_path);
      if (!rest.empty()) return (fs::path(data_root) / rest).lexically_normal().string();
      return path;
    }
    if (!base.empty() && fs::path(file_part(path)).is_relative()) return (base / path).lexically_normal().string();
    return path;
  }
};

// The run's data set as config.json names it, resolved like split.json's paths.
std::string resolve_data_path(const train::TrainConfig& config, const fs::path& run, const std::string& data_root) {
  if (!data_root.empty()) return data_root;
  if (path_exists(config.data_path) || fs::path(config.data_path).is_absolute()) return config.data_path;
  for (fs::path dir = fs::absolute(run); !dir.empty(); dir = dir.parent_path()) {
    if (path_exists((dir / config.data_path).string())) return (dir / config.data_path).lexically_normal().string();
    if (dir == dir.parent_path()) break;
  }
  return config.data_path;
}

// Up to `count` preprocessed images of the run's data set, spread over it; empty with a note
// when the data is not available.
std::vector<torch::Tensor> real_images(const train::TrainConfig& config, const std::string& data_path, int count,
                                       std::string& note) {
  if (count <= 0) return {};
  try {
    data::LoadOptions load_options;
    load_options.check_headers = false;
    load_options.npz_class_names = config.class_names;
    const data::Dataset dataset = data::load_dataset(data_path, load_options);
    if (dataset.samples.empty()) throw Error(ErrorCode::InvalidArgument, "no images");
    std::vector<size_t> picks;
    const size_t n = dataset.samples.size(), want = std::min(n, static_cast<size_t>(count));
    for (size_t i = 0; i < want; ++i) picks.push_back(i * n / want);
    train::LoaderOptions loader_options;
    loader_options.batch_size = static_cast<int>(want);
    loader_options.workers = 2;
    train::BatchLoader loader(dataset, picks, config.preprocess, loader_options);
    auto batch = loader.next();
    if (!batch || batch->samples.empty()) throw Error(ErrorCode::InvalidArgument, "no image could be loaded");
    return {batch->images};
  } catch (const std::exception& e) {
    note = "real images not compared (" + data_path + ": " + e.what() + ")";
    return {};
  }
}

// [SECTION] Calibration and out-of-distribution fit

// The run's split as a data set with its three parts.
struct SplitData {
  data::Dataset dataset;
  std::vector<size_t> train, val, test;
};

SplitData split_data(const SplitFiles& files, const train::TrainConfig& config, const std::string& data_path) {
  SplitData out;
  bool npz = false;
  for (const auto* part : {&files.train, &files.val, &files.test}) {
    for (const auto& entry : *part) npz = npz || file_part(entry.first) != entry.first;
  }
  if (npz) {
    // Images inside an .npz: its own split, as training used it (stratified_split keeps it).
    train::TrainConfig resolved = config;
    resolved.data_path = data_path;
    out.dataset = train::load_run_dataset(resolved);
    const data::Split split = data::stratified_split(out.dataset, config.split);
    out.train = split.train, out.val = split.val, out.test = split.test;
    if (out.train.size() != files.train.size() || out.val.size() != files.val.size() ||
        out.test.size() != files.test.size()) {
      throw Error(ErrorCode::InvalidSpec, data_path + ": its split differs from the run's split.json");
    }
    return out;
  }
  out.dataset.origin = data_path;
  out.dataset.kind = "split";
  out.dataset.classes = files.classes;
  for (const auto& [part, indices] : {std::pair{&files.train, &out.train}, std::pair{&files.val, &out.val},
                                      std::pair{&files.test, &out.test}}) {
    for (const auto& [path, label] : *part) {
      indices->push_back(out.dataset.samples.size());
      out.dataset.samples.push_back({path, label, data::SplitName::Unassigned, -1, {}});
    }
  }
  return out;
}

// At most `limit` of `indices`, stratified by label (each class keeps its share, rounded by largest
// remainder), seeded; returned sorted.
std::vector<size_t> stratified_sample(const data::Dataset& dataset, const std::vector<size_t>& indices, size_t limit,
                                      uint64_t seed) {
  if (indices.size() <= limit) return indices;
  std::vector<std::vector<size_t>> by_class(dataset.classes.size());
  for (size_t i : indices) by_class[static_cast<size_t>(dataset.samples[i].label)].push_back(i);
  std::vector<size_t> take(by_class.size());
  std::vector<std::pair<double, size_t>> remainders;
  size_t taken = 0;
  for (size_t c = 0; c < by_class.size(); ++c) {
    const double share = static_cast<double>(by_class[c].size()) * static_cast<double>(limit) / static_cast<double>(indices.size());
    take[c] = static_cast<size_t>(std::floor(share));
    taken += take[c];
    remainders.emplace_back(share - std::floor(share), c);
  }
  std::stable_sort(remainders.begin(), remainders.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t r = 0; taken < limit && r < remainders.size(); ++r, ++taken) ++take[remainders[r].second];
  std::mt19937_64 rng(seed);
  std::vector<size_t> out;
  for (size_t c = 0; c < by_class.size(); ++c) {
    data::shuffle_in_place(by_class[c], rng);
    out.insert(out.end(), by_class[c].begin(), by_class[c].begin() + static_cast<std::ptrdiff_t>(std::min(take[c], by_class[c].size())));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The group (patient) of each picked sample whose image was read, in order: sample_groups() under
// the run's split spec ("" for none). Unreadable images are not in the features: without them, the
// groups no longer line up, so every image then counts alone.
std::vector<std::string> picked_groups(const data::Dataset& dataset, const std::vector<size_t>& picked,
                                       const data::GroupSpec& spec, int64_t unreadable) {
  if (!spec.enabled() || unreadable > 0) return {};
  const std::vector<std::string> all = data::sample_groups(dataset, spec);
  std::vector<std::string> out;
  for (size_t i : picked) out.push_back(all[i]);
  return out;
}

struct Features {
  torch::Tensor logits, embeddings, labels;  // [N, K], [N, D] float64; [N] int64
  int64_t unreadable = 0;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// LibTorch on CPU, the run's preprocessing, no augmentation; logits = head(embedding).
Features embed_samples(models::Classifier& model, const data::Dataset& dataset, const std::vector<size_t>& samples,
                       const PreprocessSpec& spec) {
  Features out;
  if (samples.empty()) return out;
  torch::NoGradGuard no_grad;
  train::LoaderOptions loader_options;
  loader_options.batch_size = 32;
  loader_options.workers = 2;
  train::BatchLoader loader(dataset, samples, spec, loader_options);
  std::vector<torch::Tensor> logits, embeddings, labels;
  while (auto batch = loader.next()) {
    out.unreadable += static_cast<int64_t>(batch->errors.size());
    if (batch->samples.empty()) continue;
    const torch::Tensor e = model.embed(batch->images);
    logits.push_back(model.head()->forward(e).to(torch::kFloat64));
    embeddings.push_back(e.to(torch::kFloat64));
    labels.push_back(batch->labels.to(torch::kInt64));
  }
  if (labels.empty()) return out;
  out.logits = torch::cat(logits);
  out.embeddings = torch::cat(embeddings);
  out.labels = torch::cat(labels);
  return out;
}

// The logits LibTorch gave (float32, widened) as the shared core's calibration takes them.
LabelledLogits labelled(const Features& f) {
  LabelledLogits out;
  out.classes = static_cast<size_t>(f.logits.size(1));
  const torch::Tensor logits = f.logits.to(torch::kFloat32).contiguous();
  const torch::Tensor labels = f.labels.to(torch::kInt64).contiguous();
  for (int64_t i = 0; i < f.size(); ++i) {
    out.add(logits.data_ptr<float>() + i * logits.size(1), static_cast<int>(labels.data_ptr<int64_t>()[i]));
  }
  return out;
}

json part_calibration(const Features& f, double temperature, int bins, ReliabilityBins* before, ReliabilityBins* after) {
  const LabelledLogits data = labelled(f);
  *before = reliability_bins(data, 1.0, bins);
  *after = reliability_bins(data, temperature, bins);
  const torch::Tensor predicted = f.logits.size(1) == 1 ? (f.logits.squeeze(1) > 0).to(torch::kInt64) : f.logits.argmax(1);
  return {{"images", f.size()},
          {"accuracy", (predicted == f.labels).to(torch::kFloat64).mean().item<double>()},
          {"ece_before", before->ece},
          {"ece_after", after->ece},
          {"nll_before", nll_at_temperature(data, 1.0)},
          {"nll_after", nll_at_temperature(data, temperature)}};
}

double share_above(const torch::Tensor& distances, double threshold) {
  return distances.numel() == 0 ? 0.0 : (distances > threshold).to(torch::kFloat64).mean().item<double>();
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

train::ReliabilityPanel panel(const std::string& title, const ReliabilityBins& bins) {
  return {title + "\nECE " + fixed(bins.ece, 4) + " (15 equal-width bins), " + std::to_string(bins.images) + " images",
          bins.count, bins.confidence, bins.accuracy};
}

// What the fit adds to an export.
struct Fitted {
  json calibration, ood;
  double temperature = 0;
  std::optional<OodOutput> ood_output;
  std::vector<train::ReliabilityPanel> panels;
  std::string summary;  // text lines
};

Fitted fit_calibration_and_ood(models::Classifier& model, const train::TrainConfig& config, const SplitData& data,
                               const RunExportOptions& options) {
  Fitted out;
  const int bins = options.calibration_bins;
  Features train_features;
  std::vector<std::string> train_groups;  // of train_features' rows: patients, for the cross-fitting folds
  if (options.ood) {
    const std::vector<size_t> picked = stratified_sample(data.dataset, data.train,
                                                         static_cast<size_t>(std::max(0, options.max_train_images)),
                                                         config.split.seed);
    train_features = embed_samples(model, data.dataset, picked, config.preprocess);
    train_groups = picked_groups(data.dataset, picked, config.split.group, train_features.unreadable);
  }
  const Features val = embed_samples(model, data.dataset, data.val, config.preprocess);
  const Features test = embed_samples(model, data.dataset, data.test, config.preprocess);
  if (val.size() == 0) throw Error(ErrorCode::InvalidArgument, "no validation image could be read");
  const auto unreadable_text = [](const Features& f) {
    return f.unreadable > 0 ? ", " + std::to_string(f.unreadable) + " unreadable" : std::string();
  };

  const double fitted_t = options.calibration ? fit_temperature(labelled(val)) : 1.0;
  if (options.calibration && temperature_at_search_bound(fitted_t)) {
    // Not identified by the data (e.g. every validation image right with a wide margin: the NLL
    // falls all the way to T -> 0). Applying it would make the model falsely certain on new images.
    char text[320];
    std::snprintf(text, sizeof text,
                  "calibration: not applied: the validation split (%lld images) does not bound the temperature (the fit "
                  "ran to T = %.3g, the end of [%.2g, %.3g]); probabilities stay softmax(logits)\n",
                  static_cast<long long>(val.size()), fitted_t, kMinTemperature, kMaxTemperature);
    out.summary += text;
  } else if (options.calibration) {
    const double t = fitted_t;
    out.temperature = t;
    ReliabilityBins val_before, val_after, test_before, test_after;
    json val_json = part_calibration(val, t, bins, &val_before, &val_after);
    json test_json;
    if (test.size() > 0) test_json = part_calibration(test, t, bins, &test_before, &test_after);
    out.calibration = {{"method", "temperature_scaling"},
                       {"temperature", static_cast<double>(static_cast<float>(t))},
                       {"fitted_on", "validation split (" + std::to_string(val.size()) + " images" + unreadable_text(val) + ")"},
                       {"ece_bins", bins},
                       {"val", val_json},
                       {"test", test_json}};
    out.panels = {panel("validation, before (T = 1)", val_before), panel("validation, after temperature scaling (T = " + fixed(t, 3) + ")", val_after)};
    if (test.size() > 0) {
      out.panels.push_back(panel("test, before (T = 1)", test_before));
      out.panels.push_back(panel("test, after temperature scaling (T = " + fixed(t, 3) + ")", test_after));
    }
    out.summary += "calibration: temperature scaling, T = " + fixed(t, 4) + " (fitted on " + std::to_string(val.size()) +
                   " validation images)\n  ECE (" + std::to_string(bins) + " bins) validation " + fixed(val_before.ece, 4) +
                   " -> " + fixed(val_after.ece, 4) + ", NLL " + fixed(val_json["nll_before"].get<double>(), 4) + " -> " +
                   fixed(val_json["nll_after"].get<double>(), 4) + "\n";
    if (test.size() > 0) {
      out.summary += "  ECE (" + std::to_string(bins) + " bins) test " + fixed(test_before.ece, 4) + " -> " +
                     fixed(test_after.ece, 4) + ", NLL " + fixed(test_json["nll_before"].get<double>(), 4) + " -> " +
                     fixed(test_json["nll_after"].get<double>(), 4) + " (" + std::to_string(test.size()) + " images)\n";
    }
  }

  if (options.ood) {
    if (train_features.size() < 2) throw Error(ErrorCode::InvalidArgument, "fewer than 2 readable training images");
    const MahalanobisFit fit = fit_mahalanobis(train_features.embeddings, train_features.labels,
                                               static_cast<int64_t>(data.dataset.classes.size()), options.ood_max_dims);
    const torch::Tensor val_distance = mahalanobis_distance(fit, val.embeddings);
    OodThresholdOptions threshold_options = options.ood_threshold;
    threshold_options.seed = config.split.seed;
    const OodThresholdEstimate estimate =
        estimate_ood_threshold(train_features.embeddings, train_features.labels, train_groups,
                               static_cast<int64_t>(data.dataset.classes.size()), fit.dims, val_distance, threshold_options);
    const double threshold = estimate.conformal.threshold;
    const double val_rate = share_above(val_distance, threshold);
    out.ood_output = OodOutput{fit, threshold};
    out.ood = {{"method", "mahalanobis_shared_covariance"},
               {"output", "ood_distance"},
               {"dims", fit.dims},
               {"embedding_dims", fit.embedding_dims},
               {"explained_variance", fit.explained_variance},
               {"shrinkage", fit.shrinkage},
               {"fitted_on", "train embeddings (" + std::to_string(fit.images) + " images" + unreadable_text(train_features) + ")"},
               {"val_false_alarm_rate", val_rate}};
    out.ood.update(estimate.card_fields());
    json test_rate;
    if (test.size() > 0) {
      const torch::Tensor test_distance = mahalanobis_distance(fit, test.embeddings);
      const auto flagged = (test_distance > threshold).sum().item<int64_t>();
      test_rate = share_above(test_distance, threshold);
      const Interval ci = wilson_interval(flagged, test.size());
      out.ood["test_false_alarm_interval"] = {ci.low, ci.high};
      out.ood["test_images"] = test.size();
    }
    out.ood["test_false_alarm_rate"] = test_rate;
    out.summary += "out-of-distribution check: Mahalanobis (shared covariance, Ledoit-Wolf shrinkage " +
                   fixed(fit.shrinkage, 3) + ") on " + std::to_string(fit.dims) + " PCA dims of the " +
                   std::to_string(fit.embedding_dims) + "-value embedding (" + fixed(100 * fit.explained_variance, 1) +
                   "% of its variance), fitted on " + std::to_string(fit.images) + " training images\n  " +
                   estimate.summary() + "\n  measured false alarms: validation " + fixed(100 * val_rate, 1) + "%" +
                   (test.size() > 0 ? ", test " + fixed(100 * test_rate.get<double>(), 1) + "% (" +
                                          std::to_string(test.size()) + " images)"
                                    : std::string()) +
                   "\n";
  }
  return out;
}

// RUN/reliability.png, RUN/export.md and a few lines appended to RUN/log.txt. These are reports:
// a failure to write them does not undo the export (it is noted in result.note).
void write_export_report(const fs::path& run, RunExportResult& result, const std::vector<train::ReliabilityPanel>& panels) {
  try {
    if (!panels.empty()) {
      result.reliability_png = (run / "reliability.png").string();
      train::draw_reliability_diagram(panels, 2, result.reliability_png);
    }
    std::string md = "# Export\n\n> Research use only. **Not a diagnostic device.**\n\n";
    md += "- file: `" + result.onnx_path + "` (" + std::to_string(result.file_bytes) + " bytes)\n";
    md += "- weights SHA-256: `" + result.card.weights_sha256 + "`\n";
    md += "- created: " + result.card.created_utc + "\n";
    if (!result.note.empty()) md += "- note: " + result.note + "\n";
    md += "\n## Parity (ONNX Runtime against LibTorch)\n\n```\n" + result.parity.to_text() + "```\n";
    if (result.card.self_test) md += "\nSelf-test in the card, with ONNX Runtime: " + result.self_test.summary() + "\n";
    if (!result.summary.empty()) md += "\n## Calibration and out-of-distribution check\n\n```\n" + result.summary + "```\n";
    if (!result.reliability_png.empty()) {
      md += "\n![reliability diagram: accuracy per confidence bin before and after temperature scaling](reliability.png)\n";
    }
    if (result.calibration.is_object()) md += "\ncalibration (model card):\n\n```json\n" + result.calibration.dump(2) + "\n```\n";
    if (result.ood.is_object()) md += "\nood (model card):\n\n```json\n" + result.ood.dump(2) + "\n```\n";
    result.report_path = (run / "export.md").string();
    train::write_text_atomic(result.report_path, md);
    std::ofstream log(run / "log.txt", std::ios::app);
    log << "export: " << result.onnx_path << " (" << result.file_bytes << " bytes), parity "
        << (result.parity.passed ? "passed" : "not run") << "\n";
    std::string lines = result.summary;
    for (size_t start = 0; start < lines.size();) {
      const size_t end = lines.find('\n', start);
      log << "export: " << lines.substr(start, end - start) << "\n";
      if (end == std::string::npos) break;
      start = end + 1;
    }
    if (!result.note.empty()) log << "export: note: " << result.note << "\n";
  } catch (const std::exception& e) {
    result.note += std::string(result.note.empty() ? "" : "; ") + "export report not written: " + e.what();
  }
}

}  // namespace

const std::vector<std::pair<std::string, int>>& SplitFiles::part(const std::string& name) const {
  if (name == "train") return train;
  if (name == "val") return val;
  if (name == "test") return test;
  throw Error(ErrorCode::InvalidArgument, "split part '" + name + "': expected train, val or test");
}

SplitFiles read_split_files(const std::string& split_json, const std::string& data_root) {
  const json doc = read_json(split_json);
  SplitFiles files;
  try {
    files.classes = doc.at("classes").get<std::vector<std::string>>();
    const json& lists = doc.at("files");
    for (const auto& [name, part] : {std::pair{"train", &files.train}, std::pair{"val", &files.val},
                                     std::pair{"test", &files.test}}) {
      if (!lists.contains(name)) continue;
      for (const auto& entry : lists.at(name)) part->emplace_back(entry.at(0).get<std::string>(), entry.at(1).get<int>());
    }
  } catch (const json::exception& e) {
    throw Error(ErrorCode::InvalidSpec, split_json + ": not a split file (expected 'classes' and 'files' with "
                                                     "[path, label] lists): " + e.what());
  }
  fs::path run = fs::path(split_json).parent_path();
  if (run.empty()) run = ".";
  PathResolver resolver;
  resolver.data_path = run_data_path(run);
  resolver.data_root = data_root;
  if (!data_root.empty() && resolver.data_path.empty()) {
    throw Error(ErrorCode::InvalidArgument, "a data root was given but " + (run / "config.json").string() +
                                                " (beside the split file) does not say which data.path it replaces");
  }
  const std::pair<std::string, int>* first_missing = nullptr;
  for (const auto* part : {&files.train, &files.val, &files.test}) {
    for (const auto& entry : *part) {
      if (!first_missing && !path_exists(entry.first)) first_missing = &entry;
    }
  }
  if (!first_missing) return files;
  if (data_root.empty() && fs::path(file_part(first_missing->first)).is_relative()) {
    for (fs::path dir = fs::absolute(run).lexically_normal(); !dir.empty(); dir = dir.parent_path()) {
      if (path_exists((dir / first_missing->first).string())) {
        resolver.base = dir;
        break;
      }
      if (dir == dir.parent_path()) break;
    }
  }
  files.resolved_from = !data_root.empty() ? data_root : resolver.base.string();
  for (auto* part : {&files.train, &files.val, &files.test}) {
    for (auto& entry : *part) {
      entry.first = resolver.resolve(entry.first);
      if (!path_exists(entry.first)) {
        std::error_code ignored;
        const std::string cwd = fs::current_path(ignored).string();
        throw Error(ErrorCode::Io,
                    split_json + " lists '" + entry.first + "', which does not exist" +
                        (data_root.empty() ? " (from the current folder " + cwd +
                                                 ", nor relative to the split file's folder or its parents)"
                                           : " under the data root " + data_root) +
                        ". Paths in split.json are relative to the folder `loupe train` ran from" +
                        (resolver.data_path.empty() ? std::string()
                                                    : " (config.json's data.path: '" + resolver.data_path + "')") +
                        ": run this command from that folder, or give the folder the data set is in now with "
                        "--data-root DIR");
      }
    }
  }
  return files;
}

std::vector<std::pair<std::string, int>> ood_fit_files(const SplitFiles& files, int max_train_images, uint64_t seed) {
  data::Dataset dataset;  // as split_data() builds it: the train part first, in order
  dataset.classes = files.classes;
  std::vector<size_t> train;
  for (const auto& [path, label] : files.train) {
    train.push_back(dataset.samples.size());
    dataset.samples.push_back({path, label, data::SplitName::Unassigned, -1, {}});
  }
  std::vector<std::pair<std::string, int>> out;
  for (size_t i : stratified_sample(dataset, train, static_cast<size_t>(std::max(0, max_train_images)), seed)) {
    out.push_back(files.train[i]);
  }
  return out;
}

RunExportResult run_export(const std::string& run_dir, const std::string& out_path, const RunExportOptions& options) {
  fs::path run(run_dir);
  if (!fs::is_directory(run)) {
    throw Error(ErrorCode::Io, run_dir + ": not a folder (expected a training run folder with config.json and checkpoints/)");
  }
  std::string grid_note;
  if (!fs::exists(run / "config.json") && fs::exists(run / "leaderboard.json") && fs::exists(run / "metrics.json")) {
    // A grid's folder: its metrics.json names the winning run (the only one evaluated on test).
    const json summary = read_json(run / "metrics.json");
    if (!summary.contains("winner") || !summary["winner"].is_string()) {
      throw Error(ErrorCode::InvalidSpec, (run / "metrics.json").string() + ": a grid summary without a 'winner'");
    }
    grid_note = "grid " + run_dir + ": exported its winner " + summary["winner"].get<std::string>();
    run = summary["winner"].get<std::string>();
  }
  train::TrainConfig config;
  try {
    config = train::TrainConfig::from_json(read_json(run / "config.json"));
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error(e.code(), what.find("config.json") == std::string::npos ? (run / "config.json").string() + ": " + what : what);
  }
  const json dataset = read_json(run / "dataset.json");
  if (!dataset.contains("classes") || !dataset["classes"].is_array()) {
    throw Error(ErrorCode::InvalidSpec, (run / "dataset.json").string() + ": no 'classes' array");
  }
  const auto classes = dataset["classes"].get<std::vector<std::string>>();
  if (static_cast<int>(classes.size()) != config.model.num_classes) {
    throw Error(ErrorCode::InvalidSpec, (run / "dataset.json").string() + " lists " + std::to_string(classes.size()) +
                                            " classes but config.json's model has " +
                                            std::to_string(config.model.num_classes) + " outputs");
  }
  json metrics;
  if (fs::exists(run / "metrics.json")) metrics = read_json(run / "metrics.json");
  const fs::path checkpoint = run / "checkpoints" / (options.weights + ".pt");
  if (!fs::exists(checkpoint)) {
    throw Error(ErrorCode::Io, checkpoint.string() + ": no such checkpoint (has the run finished an epoch?)");
  }

  train::configure_threads(options.threads);
  auto model = models::create_model(config.model);
  train::load_model_file(*model, checkpoint.string());
  model->eval();

  // Calibration and the out-of-distribution fit, on the run's own split.
  const std::string data_path = resolve_data_path(config, run, options.data_root);
  Fitted fitted;
  std::string skipped;
  if (options.calibration || options.ood) {
    const std::string what = std::string(options.calibration && options.ood ? "calibration and out-of-distribution check"
                                          : options.calibration            ? "calibration"
                                                                           : "out-of-distribution check");
    try {
      if (!fs::exists(run / "split.json")) throw Error(ErrorCode::Io, (run / "split.json").string() + " is missing");
      const SplitFiles files = read_split_files((run / "split.json").string(), options.data_root);
      if (files.classes != classes) {
        throw Error(ErrorCode::InvalidSpec, (run / "split.json").string() + ": its classes differ from dataset.json's");
      }
      if (files.val.empty()) {
        skipped = what + " skipped: the run has no validation split (temperature and threshold are fitted on it)";
      } else {
        const SplitData data = split_data(files, config, data_path);
        fitted = fit_calibration_and_ood(*model, config, data, options);
      }
    } catch (const std::exception& e) {
      skipped = what + " skipped: " + e.what();
      fitted = Fitted{};
    }
  }

  ExportOptions export_options = options.export_options;
  CardInfo& card = export_options.card;
  if (fitted.temperature > 0) {
    export_options.temperature = fitted.temperature;
    card.calibration = fitted.calibration;
  }
  if (fitted.ood_output) {
    export_options.ood = fitted.ood_output;
    card.ood = fitted.ood;
  }
  card.name = config.name;
  card.version = options.version;
  if (card.description.empty()) card.description = config.description;
  card.class_names = classes;
  card.preprocess = config.preprocess;
  card.training_data = training_data(dataset, config, metrics);
  card.test_metrics = test_metrics(metrics);
  card.intended_images = config.intended_images;
  export_options.input_size = config.model.input_size;

  RunExportResult result;
  result.run_dir = run.string();
  result.note = grid_note;
  if (!skipped.empty()) result.note += (result.note.empty() ? "" : "; ") + skipped;
  result.onnx_path = out_path.empty() ? (fs::path(run_dir) / "model.onnx").string() : out_path;
  const std::string tmp = result.onnx_path + ".tmp";
  std::error_code ignored;
  {
    onnx::ModelProto proto = export_onnx(*model, export_options);
    write_onnx(proto, tmp);  // tmp.tmp -> tmp; renamed to the final name once verified
  }
  try {
    const OnnxFileInfo info = read_onnx_file(tmp);  // the round trip: card, class count, weights hash
    result.card = info.card;
    result.file_bytes = info.file_bytes;
    if (options.verify) {
      ParityOptions parity = options.parity;
      std::string images_note;
      parity.temperature = export_options.temperature;
      if (export_options.ood) parity.ood = export_options.ood->fit;
      for (auto& images : real_images(config, data_path, options.real_images, images_note)) {
        parity.extra_inputs.push_back(images);
      }
      if (!images_note.empty()) result.note += (result.note.empty() ? "" : "; ") + images_note;
      inference::OrtSessionOptions session_options;
      session_options.threads = options.threads;
      const inference::OrtSession session(tmp, session_options);
      result.parity = verify_onnx(*model, session, parity);
      if (!result.parity.passed) {
        throw Error(ErrorCode::InvalidArgument, "ONNX export of " + run.string() +
                                                    ": ONNX Runtime and LibTorch disagree beyond the tolerance "
                                                    "(please report this):\n" + result.parity.to_text());
      }
      if (result.card.self_test) {
        result.self_test = inference::run_self_test(result.card, session);
        if (!result.self_test.passed) {
          throw Error(ErrorCode::InvalidArgument, "ONNX export of " + run.string() +
                                                      ": the file fails its own self-test with ONNX Runtime (please "
                                                      "report this): " + result.self_test.summary());
        }
      }
    }
  } catch (...) {
    fs::remove(tmp, ignored);
    throw;
  }
  std::error_code renamed;
  fs::rename(tmp, result.onnx_path, renamed);
  if (renamed) {
    fs::remove(tmp, ignored);
    throw Error(ErrorCode::Io, result.onnx_path + ": cannot move the verified export into place: " + renamed.message());
  }
  if (options.write_card_json) {
    fs::path card_path(result.onnx_path);
    card_path.replace_extension(".card.json");
    std::ofstream out(card_path);
    out << result.card.to_json().dump(2) << "\n";
    if (!out) throw Error(ErrorCode::Io, card_path.string() + ": write failed");
    result.card_path = card_path.string();
  }
  if (result.card.calibration) result.calibration = result.card.calibration->to_json();
  if (result.card.ood) result.ood = result.card.ood->to_json();
  result.summary = fitted.summary;
  write_export_report(run, result, fitted.panels);
  return result;
}

}  // namespace loupe::exporter
