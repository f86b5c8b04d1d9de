// `loupe export`: a trained run to an ONNX file with its model card, verified with ONNX Runtime;
// with --quantize int8 also its int8 model (loupe/export/quantize.h), calibrated on the run's
// training split and written only if it passes the gate on its test split.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "loupe/export/quantize.h"
#include "loupe/export/run_export.h"

namespace loupe::cli {

void add_export_command(CLI::App& app) {
  struct Options {
    std::string run, out, weights = "best";
    std::string data_root, quantize;
    int real_images = 8, opset = 13, max_train_images = 2000;
    bool feature_map = false, no_cam = false, no_calibration = false, no_ood = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("export", "Export a trained run to ONNX with its model card, verified with ONNX Runtime");
  cmd->add_option("-r,--run", opt->run, "Run folder written by loupe train")->required();
  cmd->add_option("-o,--out", opt->out, "Output .onnx (default RUN/model.onnx)");
  cmd->add_option("--weights", opt->weights, "best or last")->check(CLI::IsMember({"best", "last"}));
  cmd->add_option("--real-images", opt->real_images, "Real images of the run's data compared in the parity check");
  cmd->add_option("--opset", opt->opset, "ONNX opset (13-17)")->check(CLI::Range(13, 17));
  cmd->add_flag("--feature-map", opt->feature_map, "Also output the last convolutional feature map");
  cmd->add_flag("--no-cam", opt->no_cam, "Do not add the class activation map output");
  cmd->add_flag("--no-calibration", opt->no_calibration,
                "Do not fit temperature scaling on the validation split (probabilities stay the plain softmax)");
  cmd->add_flag("--no-ood", opt->no_ood,
                "Do not add the out-of-distribution output (ood_distance, Mahalanobis on the embedding)");
  cmd->add_option("--max-train-images", opt->max_train_images,
                  "Training images (stratified sample) embedded for the out-of-distribution fit")
      ->check(CLI::Range(2, 1000000));
  cmd->add_option("--data-root", opt->data_root,
                  "Where the run's data set is now, if not at config.json's data.path as seen from here");
  cmd->add_option("--quantize", opt->quantize,
                  "Also write the int8 model (MODEL.int8.onnx): static QDQ, calibrated on the run's training images, "
                  "written only if its test accuracy stays within 1 point and its top class agrees on >= 98%")
      ->check(CLI::IsMember({"int8"}));
  cmd->callback([opt] {
    exporter::RunExportOptions options;
    options.weights = opt->weights;
    options.real_images = opt->real_images;
    options.export_options.opset = opt->opset;
    options.export_options.feature_map = opt->feature_map;
    options.export_options.cam = !opt->no_cam;
    options.calibration = !opt->no_calibration;
    options.ood = !opt->no_ood;
    options.max_train_images = opt->max_train_images;
    options.data_root = opt->data_root;
    const auto result = exporter::run_export(opt->run, opt->out, options);
    std::printf("%s (%lld bytes)\n%s%s", result.onnx_path.c_str(), static_cast<long long>(result.file_bytes),
                result.parity.to_text().c_str(), result.summary.c_str());
    if (result.card.self_test) std::printf("self-test (ONNX Runtime): %s\n", result.self_test.summary().c_str());
    if (!result.reliability_png.empty()) std::printf("reliability diagram: %s\n", result.reliability_png.c_str());
    if (!result.report_path.empty()) std::printf("report: %s\n", result.report_path.c_str());
    if (!result.note.empty()) std::printf("note: %s\n", result.note.c_str());
    if (opt->quantize == "int8") {
      const std::string split_json = (std::filesystem::path(result.run_dir) / "split.json").string();
      const exporter::SplitFiles split = exporter::read_split_files(split_json, opt->data_root);
      exporter::QuantizeOptions quantize;
      quantize.progress = true;
      const exporter::QuantizeResult int8 = exporter::quantize_model_file(result.onnx_path, split, "", quantize);
      std::printf("%s", int8.summary.c_str());
    }
  });
}

}  // namespace loupe::cli
