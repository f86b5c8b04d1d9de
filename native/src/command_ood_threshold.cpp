// `loupe ood-threshold`: re-estimate an exported model's out-of-distribution threshold so that the
// false-alarm rate its card states holds (split-conformal over cross-fitted training distances and
// the validation distances), from the file and the images of the split it was exported from; no
// checkpoint needed (loupe/export/ood_threshold.h). Writes the model with the new threshold in its
// card; the graph, the weights hash and the self-test stay.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "loupe/export/onnx_file.h"
#include "loupe/export/ood_threshold.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/train/atomic_file.h"

namespace fs = std::filesystem;

namespace loupe::cli {

void add_ood_threshold_command(CLI::App& app) {
  struct Options {
    std::string model, out;
    exporter::RethresholdOptions rethreshold;
    bool quiet = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "ood-threshold",
      "Re-estimate a model's out-of-distribution threshold (split-conformal, cross-fitted training distances) from "
      "the file and the images of its split; writes the model with the new threshold in its card");
  cmd->add_option("-m,--model", opt->model, "Model file (.onnx, exported by loupe, with an ood_distance output)")->required();
  cmd->add_option("--split", opt->rethreshold.split_file,
                  "The split the model was exported from: the run's split.json, or `loupe split -c CONFIG -o FILE`")
      ->required();
  cmd->add_option("--data-root", opt->rethreshold.data_root, "Where the run's data set is now (as for loupe predict)");
  cmd->add_option("-o,--out", opt->out, "The new model file (default: replace MODEL once the new one is verified)");
  cmd->add_option("--alpha", opt->rethreshold.threshold.alpha, "The false-alarm rate to state (share of in-distribution images flagged)")
      ->check(CLI::Range(0.001, 0.5));
  cmd->add_option("--folds", opt->rethreshold.threshold.folds, "Cross-fitting folds over the training images (0: validation only)")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--max-train-images", opt->rethreshold.max_train_images,
                  "What loupe export's --max-train-images was when the model was exported (default 2000)");
  cmd->add_option("--threads", opt->rethreshold.threads, "Threads for decoding and ONNX Runtime (0 = all cores)");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress output");
  cmd->callback([opt] {
    if (opt->rethreshold.threshold.folds == 1) throw Error(ErrorCode::InvalidArgument, "--folds: 0 or at least 2");
    opt->rethreshold.created_utc = exporter::utc_now_iso8601();
    if (!opt->quiet) opt->rethreshold.progress = [](const std::string& line) { std::fprintf(stderr, "ood-threshold: %s\n", line.c_str()); };
    const exporter::RethresholdResult result = exporter::rethreshold_ood(opt->model, opt->rethreshold);
    // The new file must read (weights hash) and pass its self-test before it is moved into place.
    const std::string out_path = opt->out.empty() ? opt->model : opt->out;
    const std::string bytes(result.onnx.begin(), result.onnx.end());
    const exporter::OnnxFileInfo check = exporter::read_onnx_bytes(bytes, out_path);
    std::string self_test = "no self-test";
    if (check.card.self_test) {
      inference::OrtSessionOptions session_options;
      session_options.threads = opt->rethreshold.threads;
      const SelfTestResult r = inference::run_self_test(check.card, inference::OrtSession::from_bytes(bytes, session_options));
      if (!r.passed) throw Error(ErrorCode::InvalidArgument, out_path + ": the new file fails its self-test: " + r.summary());
      self_test = "self-test " + r.summary();
    }
    train::write_text_atomic(out_path, bytes);
    fs::path card_path(out_path);
    card_path.replace_extension(".card.json");
    train::write_json_atomic(card_path.string(), check.card.to_json());
    std::printf("%s-> %s (%zu bytes; weights unchanged, %s), card %s\n", result.to_text().c_str(), out_path.c_str(),
                bytes.size(), self_test.c_str(), card_path.string().c_str());
  });
}

}  // namespace loupe::cli
