// `loupe calibrate`: refit a model's calibration on a site's labelled folder and set operating
// points, writing a new model file whose card records it. The model runs with ONNX Runtime and the
// batch loop of `loupe predict`; the refit, the figures and the card are the shared core's
// (loupe/calibration.h), what the page will run in the browser.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

#include "commands.h"
#include "loupe/calibration.h"
#include "loupe/export/onnx_file.h"
#include "loupe/inference/batch_predict.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/results.h"
#include "loupe/train/atomic_file.h"

namespace fs = std::filesystem;

namespace loupe::cli {

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::Io, path + ": cannot open");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// MODEL.onnx -> MODEL.site.onnx beside it.
std::string default_output(const std::string& model) {
  fs::path out(model);
  out.replace_extension(".site.onnx");
  return out.string();
}

}  // namespace

void add_calibrate_command(CLI::App& app) {
  struct Options {
    std::string model, out, site, report;
    std::vector<std::string> paths, sensitivity, specificity, threshold;
    int min_per_class = kMinSiteImagesPerClass, batch = 16, threads = 0;
    bool quiet = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate",
      "Refit a model's calibration on a site's labelled images (sub-folders named like the classes) and set operating "
      "points; writes a new .onnx whose card records it (the original calibration kept)");
  cmd->add_option("-m,--model", opt->model, "Model file (.onnx, exported by loupe)")->required();
  cmd->add_option("paths", opt->paths, "Labelled folders (FOLDER/<class>/... as for loupe predict) or files")->required();
  cmd->add_option("-o,--out", opt->out, "The new model file (default MODEL.site.onnx beside the model; never the model itself)");
  cmd->add_option("--sensitivity", opt->sensitivity,
                  "An operating point: call CLASS when its calibrated probability reaches the threshold that gives this "
                  "sensitivity on these images, e.g. Pneumonia=0.95 (repeatable, one per class)");
  cmd->add_option("--specificity", opt->specificity,
                  "An operating point chosen for a specificity on these images, e.g. Covid-19=0.98");
  cmd->add_option("--threshold", opt->threshold, "An operating point with a given threshold, e.g. Pneumonia=0.3");
  cmd->add_option("--min-per-class", opt->min_per_class,
                  "Labelled images every class needs, or the calibration is refused")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--site", opt->site, "A label for this site, recorded in the card as given (never file or folder names)");
  cmd->add_option("--report", opt->report, "Also write the result (the card's site_calibration record) as JSON here");
  cmd->add_option("--batch", opt->batch, "Images per ONNX Runtime call")->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", opt->threads, "Threads for decoding and ONNX Runtime (0 = all cores)");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress output");
  cmd->callback([opt] {
    const std::string out_path = opt->out.empty() ? default_output(opt->model) : opt->out;
    std::error_code ignored;
    if (fs::exists(out_path) && fs::equivalent(out_path, opt->model, ignored)) {
      throw Error(ErrorCode::InvalidArgument, out_path + ": the output would replace the model itself; give another -o");
    }
    const std::string bytes = read_bytes(opt->model);
    const ModelCard card = exporter::read_onnx_bytes(bytes, opt->model).card;  // the weights hash checked too
    // The operating points asked for, checked before any image runs.
    SiteCalibrationOptions options;
    options.min_images_per_class = opt->min_per_class;
    options.site = opt->site;
    options.created_utc = exporter::utc_now_iso8601();
    for (const auto& [texts, kind] : {std::pair{&opt->sensitivity, TargetKind::sensitivity},
                                      std::pair{&opt->specificity, TargetKind::specificity},
                                      std::pair{&opt->threshold, TargetKind::threshold}}) {
      for (const std::string& text : *texts) options.targets.push_back(parse_operating_point_target(text, kind, card.class_names));
    }

    inference::OrtSessionOptions session_options;
    session_options.threads = opt->threads;
    const inference::OrtSession session = inference::OrtSession::from_bytes(bytes, session_options);
    if (card.self_test) {  // as loupe predict: a runtime that computes otherwise calibrates nothing
      const SelfTestResult self_test = inference::run_self_test(card, session);
      if (!self_test.passed) {
        throw Error(ErrorCode::InvalidArgument, opt->model + ": the model fails its self-test with ONNX Runtime: " +
                                                    self_test.summary() + "; nothing was calibrated");
      }
    }
    std::vector<ResultRow> rows = inference::list_images(opt->paths, card.class_names);
    inference::BatchOptions batch_options;
    batch_options.batch = opt->batch;
    batch_options.threads = opt->threads;
    if (!opt->quiet) {
      batch_options.progress = [](size_t done, size_t total) { std::fprintf(stderr, "\rcalibrate: %zu/%zu images", done, total); };
    }
    inference::predict_rows(session, card, rows, batch_options);
    if (!opt->quiet) std::fprintf(stderr, "\n");
    size_t unlabelled = 0, failed = 0;
    for (const ResultRow& r : rows) {
      unlabelled += r.status == ResultStatus::ok && r.label < 0;
      failed += r.status != ResultStatus::ok;
    }
    const LabelledLogits data = labelled_logits(rows, card.class_names.size());
    if (data.size() == 0) {
      std::string names;
      for (const auto& n : card.class_names) names += (names.empty() ? "" : ", ") + n;
      throw Error(ErrorCode::InvalidArgument, "no labelled image to calibrate on (" + std::to_string(rows.size()) +
                                                  " files, " + std::to_string(unlabelled) + " classified without a label, " +
                                                  std::to_string(failed) + " unreadable or failed): put the images in "
                                                  "sub-folders named like the classes (" + names + ")");
    }
    const SiteCalibrationResult site = calibrate_for_site(card, data, options);

    // The new file: the card rewritten, the rest byte for byte; read back (weights hash) and its
    // self-test run before it is moved into place.
    const std::vector<uint8_t> written =
        with_site_calibration(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), site, out_path);
    const std::string new_bytes(written.begin(), written.end());
    const exporter::OnnxFileInfo check = exporter::read_onnx_bytes(new_bytes, out_path);
    if (check.card.self_test) {
      const SelfTestResult self_test =
          inference::run_self_test(check.card, inference::OrtSession::from_bytes(new_bytes, session_options));
      if (!self_test.passed) {
        throw Error(ErrorCode::InvalidArgument, out_path + ": the calibrated file fails its self-test (please report this): " +
                                                    self_test.summary() + "; nothing was written");
      }
    }
    train::write_text_atomic(out_path, new_bytes);
    fs::path card_path(out_path);
    card_path.replace_extension(".card.json");
    train::write_json_atomic(card_path.string(), check.card.to_json());
    if (!opt->report.empty()) train::write_json_atomic(opt->report, site.record);

    std::printf("%zu files: %zu labelled and classified, %zu without a label (not used), %zu unreadable or failed\n",
                rows.size(), data.size(), unlabelled, failed);
    std::printf("%s", site.to_text().c_str());
    if (!site.operating_points.empty()) {
      // What the operating points decide on these images (the table's predicted class).
      std::vector<ResultRow> decided = rows;
      for (ResultRow& r : decided) {
        if (r.status != ResultStatus::ok) continue;
        ImageOutputs outputs;
        outputs.logits = r.prediction.logits.data();
        outputs.logits_size = r.prediction.logits.size();
        const float distance = r.prediction.ood_distance;
        if (r.prediction.has_ood) outputs.ood_distance = &distance;
        r.prediction = interpret_outputs(site.card, outputs);
      }
      const Evaluation evaluation = evaluate(decided, card.class_names, BootstrapOptions{});
      if (evaluation.report) {
        std::printf("with the operating points, on these images (in-sample):\n%s", evaluation.report->to_text().c_str());
      }
    }
    std::printf("-> %s (weights and self-test unchanged: %s), card %s\nprobabilities: %s\n%s\n", out_path.c_str(),
                check.card.self_test ? "self-test passed" : "no self-test", card_path.string().c_str(),
                probability_note(check.card).c_str(), card.disclaimer.c_str());
  });
}

}  // namespace loupe::cli
