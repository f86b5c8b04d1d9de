#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "commands.h"
#include "loupe/image.h"
#include "loupe/preprocess.h"
#include "npy.h"

namespace loupe::cli {

void add_preprocess_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "preprocess", "Decode an image and write the model input tensor (NCHW float32) as .npy, to check a pipeline");
  struct Options {
    std::string image_path, spec_path, out_path;
    bool imagenet = false;
  };
  auto opt = std::make_shared<Options>();
  cmd->add_option("image", opt->image_path, "Image file (PNG, JPEG, BMP, TIFF, DICOM)")->required();
  cmd->add_option("--spec", opt->spec_path, "PreprocessSpec JSON file (default: RGB 224x224, x/255)");
  cmd->add_flag("--imagenet", opt->imagenet, "Use ImageNet mean/std at 224x224 instead of a spec file");
  cmd->add_option("-o,--out", opt->out_path, "Output .npy file")->required();
  cmd->callback([opt] {
    const auto& [image_path, spec_path, out_path, imagenet] = *opt;
    PreprocessSpec spec = imagenet ? PreprocessSpec::imagenet(224) : PreprocessSpec::unit_scale(224);
    if (!spec_path.empty()) {
      std::ifstream in(spec_path);
      if (!in) throw Error(ErrorCode::Io, spec_path + ": cannot open spec file");
      nlohmann::json json;
      try {
        in >> json;
      } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorCode::InvalidSpec, spec_path + ": not valid JSON: " + e.what());
      }
      spec = PreprocessSpec::from_json(json);
    }
    const Image image = decode_image_file(image_path);
    const Tensor tensor = preprocess(image, spec);
    write_npy(out_path, tensor);
    std::printf("%s: %dx%d, %d channel(s), %s-bit -> %s (1x%dx%dx%d)\n", image_path.c_str(), image.width,
                image.height, image.channels, image.depth == PixelDepth::U16 ? "16" : "8", out_path.c_str(),
                spec.channels(), spec.height, spec.width);
  });
}

}  // namespace loupe::cli
