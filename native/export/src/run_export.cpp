// A training run folder -> a verified ONNX file with its model card (see run_export.h).
#include "loupe/export/run_export.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "dataset.h"
#include "loader.h"
#include "loupe/error.h"
#include "train_config.h"
#include "trainer.h"

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

// Up to `count` preprocessed images of the run's data set, spread over it; empty with a note
// when the data is not available.
std::vector<torch::Tensor> real_images(const train::TrainConfig& config, int count, std::string& note) {
  if (count <= 0) return {};
  try {
    data::LoadOptions load_options;
    load_options.check_headers = false;
    load_options.npz_class_names = config.class_names;
    const data::Dataset dataset = data::load_dataset(config.data_path, load_options);
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
    note = "real images not compared (" + config.data_path + ": " + e.what() + ")";
    return {};
  }
}

}  // namespace

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

  ExportOptions export_options = options.export_options;
  CardInfo& card = export_options.card;
  card.name = config.name;
  card.version = options.version;
  if (card.description.empty()) card.description = config.description;
  card.class_names = classes;
  card.preprocess = config.preprocess;
  card.training_data = training_data(dataset, config, metrics);
  card.test_metrics = test_metrics(metrics);
  export_options.input_size = config.model.input_size;

  RunExportResult result;
  result.note = grid_note;
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
      for (auto& images : real_images(config, options.real_images, images_note)) parity.extra_inputs.push_back(images);
      if (!images_note.empty()) result.note += (result.note.empty() ? "" : "; ") + images_note;
      OrtSessionOptions session_options;
      session_options.threads = options.threads;
      const OrtSession session(tmp, session_options);
      result.parity = verify_onnx(*model, session, parity);
      if (!result.parity.passed) {
        throw Error(ErrorCode::InvalidArgument, "ONNX export of " + run.string() +
                                                    ": ONNX Runtime and LibTorch disagree beyond the tolerance "
                                                    "(please report this):\n" + result.parity.to_text());
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
  return result;
}

}  // namespace loupe::exporter
