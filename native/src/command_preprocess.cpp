#include <cstdio>
#include <fstream>
#include <string>

#include "commands.h"
#include "loupe/image.h"
#include "loupe/preprocess.h"
#include "npy.h"

namespace loupe::cli {

void add_preprocess_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "preprocess", "Decode an image and write the model input tensor (NCHW float32) as .npy, to check a pipeline");
  static std::string image_path, spec_path, out_path;
  static bool imagenet = false;
  cmd->add_option("image", image_path, "Image file (PNG, JPEG, BMP, TIFF)")->required();
  cmd->add_option("--spec", spec_path, "PreprocessSpec JSON file (default: RGB 224x224, x/255)");
  cmd->add_flag("--imagenet", imagenet, "Use ImageNet mean/std at 224x224 instead of a spec file");
  cmd->add_option("-o,--out", out_path, "Output .npy file")->required();
  cmd->callback([] {
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
