// `loupe predict`: classify image files with an exported model (ONNX Runtime). The rows, their
// labels, the results file and the report are the shared core's (loupe/results.h), the same as
// the web page writes for the same folder.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "commands.h"
#include "loupe/export/onnx_file.h"
#include "loupe/export/run_export.h"
#include "loupe/inference/batch_predict.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/results.h"

namespace fs = std::filesystem;

namespace loupe::cli {

namespace {

// The rows of a run's split.json part, with the labels the split gives them. Its paths are
// relative to where training ran: resolved against --data-root (or a clear error).
std::vector<ResultRow> split_rows(const std::string& split_file, const std::string& part, const std::string& data_root,
                                  const ModelCard& card, bool quiet) {
  const exporter::SplitFiles split = exporter::read_split_files(split_file, data_root);
  if (split.classes != card.class_names) throw Error(ErrorCode::InvalidArgument, split_file + ": its classes differ from the model's");
  if (!split.resolved_from.empty() && !quiet) {
    std::fprintf(stderr, "predict: %s's paths resolved against %s\n", split_file.c_str(), split.resolved_from.c_str());
  }
  std::vector<ResultRow> rows;
  for (const auto& [path, label] : split.part(part)) {
    if (path.find(".npz:") != std::string::npos) {
      throw Error(ErrorCode::InvalidArgument, split_file + ": the run's images are inside an .npz (" + path +
                                                  "); loupe predict reads image files: use loupe eval -r RUN");
    }
    ResultRow row;
    row.path = path;
    row.label = label;
    rows.push_back(row);
  }
  return rows;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw Error(ErrorCode::Io, path + ": write failed");
}

}  // namespace

void add_predict_command(CLI::App& app) {
  struct Options {
    std::string model, out, split_file, part = "test", data_root;
    std::vector<std::string> paths;
    int batch = 16, threads = 0;
    bool quiet = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "predict", "Classify images (files or folders, recursive) with an ONNX model; labelled folders also get a report");
  cmd->add_option("-m,--model", opt->model, "Model file (.onnx, exported by loupe)")->required();
  cmd->add_option("paths", opt->paths, "Image files or folders (a folder's sub-folders named like the classes label its images)");
  cmd->add_option("--split", opt->split_file,
                  "A run's split.json: classify exactly the images of one part (with their labels), e.g. to "
                  "reproduce the run's held-out test metrics");
  cmd->add_option("--part", opt->part, "With --split: test, val or train")->check(CLI::IsMember({"test", "val", "train"}));
  cmd->add_option("--data-root", opt->data_root,
                  "With --split: where the run's data set is now (replaces config.json's data.path in split.json's paths)");
  cmd->add_option("-o,--out", opt->out, "Results file: .csv (default predictions.csv) or .json");
  cmd->add_option("--batch", opt->batch, "Images per ONNX Runtime call")->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", opt->threads, "Threads for decoding and ONNX Runtime (0 = all cores)");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress output");
  cmd->callback([opt] {
    if (opt->paths.empty() && opt->split_file.empty()) {
      throw Error(ErrorCode::InvalidArgument, "give image files or folders, or --split RUN/split.json");
    }
    const ModelCard card = exporter::read_model_card(opt->model);
    std::vector<ResultRow> rows = inference::list_images(opt->paths, card.class_names);
    if (!opt->split_file.empty()) {
      std::vector<ResultRow> more = split_rows(opt->split_file, opt->part, opt->data_root, card, opt->quiet);
      rows.insert(rows.end(), more.begin(), more.end());
    }

    inference::OrtSessionOptions session_options;
    session_options.threads = opt->threads;
    const inference::OrtSession session(opt->model, session_options);
    // The model's own self-test first: a runtime or file that computes otherwise classifies nothing.
    if (card.self_test) {
      const SelfTestResult self_test = inference::run_self_test(card, session);
      if (!self_test.passed) {
        throw Error(ErrorCode::InvalidArgument, opt->model + ": the model fails its self-test with ONNX Runtime " +
                                                    inference::OrtSession::runtime_version() + ": " + self_test.summary() +
                                                    "; nothing was classified");
      }
      if (!opt->quiet) std::fprintf(stderr, "predict: self-test %s\n", self_test.summary().c_str());
    } else if (!opt->quiet) {
      std::fprintf(stderr, "predict: this model has no self-test (exported before Loupe wrote one)\n");
    }
    inference::BatchOptions batch_options;
    batch_options.batch = opt->batch;
    batch_options.threads = opt->threads;
    if (!opt->quiet) {
      batch_options.progress = [](size_t done, size_t total) { std::fprintf(stderr, "\rpredict: %zu/%zu images", done, total); };
    }
    inference::predict_rows(session, card, rows, batch_options);
    if (!opt->quiet) std::fprintf(stderr, "\n");

    // Before any figure: DICOM files the model was not trained for (the card's intended_images).
    size_t contradicting = 0;
    for (const ResultRow& r : rows) contradicting += !r.intended_use_warning.empty();
    if (contradicting > 0) {
      std::printf("WARNING: %zu DICOM file(s) contradict the model's intended use (%s); their predictions are not "
                  "meaningful:\n",
                  contradicting, card.intended_images->summary().c_str());
      size_t shown = 0;
      for (const ResultRow& r : rows) {
        if (r.intended_use_warning.empty()) continue;
        if (++shown > 10) {
          std::printf("  ... and %zu more (column intended_use_warning of the results)\n", contradicting - 10);
          break;
        }
        std::printf("  %s: %s\n", r.path.c_str(), r.intended_use_warning.c_str());
      }
    }
    const Evaluation evaluation = evaluate(rows, card.class_names, BootstrapOptions{});
    size_t classified = 0, flagged = 0;
    for (const ResultRow& r : rows) {
      classified += r.status == ResultStatus::ok;
      flagged += r.status == ResultStatus::ok && r.prediction.out_of_distribution;
    }
    const std::string out_path = opt->out.empty() ? "predictions.csv" : opt->out;
    if (fs::path(out_path).extension() == ".json") {
      nlohmann::json result = {{"model", opt->model}, {"model_name", card.name}, {"classes", card.class_names},
                               {"images", rows.size()}, {"classified", classified},
                               {"probabilities", probability_note(card)}, {"calibration_in_use", card.calibration_in_use()},
                               {"predicted_class", decision_note(card)}, {"predictions", results_json(rows, card)},
                               {"disclaimer", card.disclaimer}};
      if (card.ood) result["ood"] = {{"output", card.ood->output}, {"threshold", card.ood->threshold}, {"flagged", flagged}};
      if (evaluation.report) {
        result["report"] = evaluation.report->to_json();
        result["confusion_matrix"] = evaluation.matrix->to_json();
        result["evaluation"] = {{"labelled", evaluation.labelled}, {"unlabelled", evaluation.unlabelled},
                                {"failed", evaluation.failed}, {"out_of_distribution", evaluation.out_of_distribution}};
      }
      write_text(out_path, result.dump(2) + "\n");
    } else {
      write_text(out_path, results_csv(rows, card));
      if (evaluation.report) {
        write_text(fs::path(out_path).replace_extension(".report.json").string(), evaluation.report->to_json().dump(2) + "\n");
      }
    }
    if (evaluation.report) {
      std::printf("%d labelled images (%d unlabelled, %d failed):\n%s", evaluation.labelled, evaluation.unlabelled,
                  evaluation.failed, evaluation.report->to_text().c_str());
    }
    std::string flagged_text;
    if (card.ood) {
      char text[160];
      std::snprintf(text, sizeof text, ", %zu of %zu flagged out-of-distribution (%.1f%%, %s > %.4g)", flagged, classified,
                    classified ? 100.0 * static_cast<double>(flagged) / static_cast<double>(classified) : 0.0,
                    card.ood->output.c_str(), card.ood->threshold);
      flagged_text = text;
    }
    std::printf("%zu images, %zu not classified%s -> %s\nprobabilities: %s\n", rows.size(), rows.size() - classified,
                flagged_text.c_str(), out_path.c_str(), probability_note(card).c_str());
    if (card.site_calibration && !card.site_calibration->operating_points.empty()) {
      std::printf("predicted class: %s\n", decision_note(card).c_str());
    }
    std::printf("%s\n", card.disclaimer.c_str());
    if (classified == 0) {
      std::string reason = rows.empty() ? "no images found" : "every image failed";
      for (const auto& r : rows) {
        if (!r.error.empty()) {  // the reader's messages start with the path already
          reason += " (e.g. " + (r.error.rfind(r.path, 0) == 0 ? r.error : r.path + ": " + r.error) + ")";
          break;
        }
      }
      throw Error(ErrorCode::InvalidArgument, "no image could be classified: " + reason);
    }
  });
}

}  // namespace loupe::cli
