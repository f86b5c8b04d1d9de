// `loupe quantize`: an exported float model to an int8 one (static QDQ, loupe/export/quantize.h),
// for models whose run folder is gone: the split is rebuilt from the training config (what
// `loupe split -c CONFIG` shows), activations are calibrated on its training images and the int8
// model is written only when it passes the gate on its test images.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "loupe/data/dataset.h"
#include "loupe/error.h"
#include "loupe/export/quantize.h"
#include "loupe/train/trainer.h"

namespace loupe::cli {

namespace {

// The config's split as SplitFiles (what a run's split.json holds).
exporter::SplitFiles split_from_config(const train::TrainConfig& config) {
  const data::Dataset dataset = train::load_run_dataset(config);
  const data::Split split = data::stratified_split(dataset, config.split);
  exporter::SplitFiles files;
  files.classes = dataset.classes;
  for (const auto& [indices, part] : {std::pair{&split.train, &files.train}, std::pair{&split.val, &files.val},
                                      std::pair{&split.test, &files.test}}) {
    for (size_t i : *indices) {
      const data::Sample& sample = dataset.samples[i];
      if (sample.memory_index >= 0) {
        throw Error(ErrorCode::InvalidArgument, dataset.origin + ": the images are inside an .npz (" + sample.path +
                                                    "); loupe quantize reads image files");
      }
      part->emplace_back(sample.path, sample.label);
    }
  }
  return files;
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  struct Options {
    std::string model, config, out, range = "mse";
    std::vector<std::string> overrides;
    double percentile = 99.9, max_drop = 1.0, min_agreement = 98.0;
    int calibration_images = 1000, weight_bits = 8, batch = 8, threads = 0;
    bool quiet = false, no_bias_correction = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Quantise an exported model to int8 (static QDQ), calibrated on the training split of its config; "
                  "written only if it keeps the float model's test accuracy");
  cmd->add_option("-m,--model", opt->model, "Float model (.onnx, exported by loupe)")->required();
  cmd->add_option("-c,--config", opt->config,
                  "The training config the model was trained with: its split is rebuilt from the data set")
      ->required();
  cmd->add_option("--set", opt->overrides, "Override a config key (as in loupe train), e.g. --set data.path=DIR");
  cmd->add_option("-o,--out", opt->out, "Output .onnx (default MODEL.int8.onnx beside the float model)");
  cmd->add_option("--range", opt->range, "Activation ranges: percentile, mse or min_max")
      ->check(CLI::IsMember({"percentile", "mse", "min_max"}));
  cmd->add_option("--percentile", opt->percentile, "With --range percentile: the percentile kept (e.g. 99.9)")
      ->check(CLI::Range(50.0, 100.0));
  cmd->add_option("--calibration-images", opt->calibration_images, "Training images to calibrate on (0 = all)")
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--weight-bits", opt->weight_bits, "8, or 7 (no 16-bit overflow in any CPU's int8 kernels)")
      ->check(CLI::IsMember({7, 8}));
  cmd->add_flag("--no-bias-correction", opt->no_bias_correction,
                "Keep the biases as they are (by default the mean shift weight rounding adds is taken off them)");
  cmd->add_option("--max-accuracy-drop", opt->max_drop,
                  "Gate: how far the int8 test accuracy may fall below the float model's, in points")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--min-agreement", opt->min_agreement, "Gate: smallest share of test images with the same top class, %")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--batch", opt->batch, "Images per ONNX Runtime call")->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", opt->threads, "Threads for decoding and ONNX Runtime (0 = all cores)");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress output");
  cmd->callback([opt] {
    const train::TrainConfig config = load_config_with_overrides(opt->config, opt->overrides);
    const exporter::SplitFiles split = split_from_config(config);
    if (!opt->quiet) {
      std::fprintf(stderr, "quantize: split of %s: %zu train, %zu val, %zu test images\n", opt->config.c_str(),
                   split.train.size(), split.val.size(), split.test.size());
    }
    exporter::QuantizeOptions options;
    options.range = exporter::range_method_from_string(opt->range);
    options.percentile = opt->percentile;
    options.max_calibration_images = opt->calibration_images;
    options.weight_bits = opt->weight_bits;
    options.bias_correction = !opt->no_bias_correction;
    options.max_accuracy_drop = opt->max_drop / 100;
    options.min_agreement = opt->min_agreement / 100;
    options.batch = opt->batch;
    options.threads = opt->threads;
    options.progress = !opt->quiet;
    const exporter::QuantizeResult result = exporter::quantize_model_file(opt->model, split, opt->out, options);
    std::printf("%s", result.summary.c_str());
  });
}

}  // namespace loupe::cli
