// Preprocessing: turning a decoded image into the float tensor a model expects.
//
//   loupe::PreprocessSpec spec = loupe::PreprocessSpec::imagenet(224);  // or from_json(card["preprocess"])
//   loupe::Tensor input = loupe::preprocess(image, spec);               // shape {1, 3, 224, 224}, NCHW
//
// The order of operations is fixed, documented and identical natively and in the browser:
//   1. colour: RGB(A) -> gray (ITU-R BT.601 weights) or gray -> RGB (replication); alpha dropped;
//   2. resize in the source bit depth (stretch / shorter side + centre crop / letterbox);
//   3. x / max (255 or 65535), then (x - mean[c]) / std[c], as float32, planar (NCHW).
// The spec is stored in the model card, so a model carries the exact recipe it was trained with.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/image.h"

namespace loupe {

enum class ColorMode { Gray, Rgb };
enum class ResizePolicy {
  Stretch,                // resize to width x height, aspect ratio not kept
  ShorterSideCenterCrop,  // scale so the image covers the target (shorter side / crop_fraction), crop the centre
  Letterbox,              // scale to fit inside, pad the rest with pad_value
};
enum class Interpolation { Nearest, Linear, Area, Cubic };

struct PreprocessSpec {
  ColorMode color = ColorMode::Rgb;
  int width = 224;
  int height = 224;
  ResizePolicy resize = ResizePolicy::Stretch;
  Interpolation interpolation = Interpolation::Linear;
  // ShorterSideCenterCrop: the crop keeps this fraction of the resized shorter side
  // (torchvision's Resize(256) + CenterCrop(224) is 224/256 = 0.875). In (0, 1].
  double crop_fraction = 1.0;
  // Letterbox: padding value on the [0, 1] scale (before mean/std), e.g. 0 = black.
  double pad_value = 0.0;
  // Per-channel normalisation after x / max. One value, or one per output channel.
  std::vector<double> mean{0.0};
  std::vector<double> std{1.0};

  int channels() const { return color == ColorMode::Gray ? 1 : 3; }

  // x / 255 only, the papers' "rescale 1/255".
  static PreprocessSpec unit_scale(int size, ColorMode color = ColorMode::Rgb);
  // RGB, x / 255, ImageNet mean/std: what ImageNet-pretrained backbones expect.
  static PreprocessSpec imagenet(int size = 224);

  // Throws Error(InvalidSpec) naming the offending field.
  void validate() const;

  nlohmann::json to_json() const;
  // Strict: unknown keys, wrong types and out-of-range values throw Error(InvalidSpec) naming the
  // key (e.g. "preprocess.resize: unknown value 'crop'; expected one of stretch, ...").
  // Missing keys take the defaults above.
  static PreprocessSpec from_json(const nlohmann::json& json);

  bool operator==(const PreprocessSpec& other) const;
  bool operator!=(const PreprocessSpec& other) const { return !(*this == other); }
};

const char* to_string(ColorMode mode);
const char* to_string(ResizePolicy policy);
const char* to_string(Interpolation interpolation);

// A dense float32 tensor, row-major. Preprocessing returns NCHW with N = 1.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  size_t element_count() const;
};

// Runs the three steps above. Throws Error on an empty image or an invalid spec.
Tensor preprocess(const Image& image, const PreprocessSpec& spec);

// Same, writing channels() * height * width floats to `out` (e.g. one slot of a batch tensor).
void preprocess_into(const Image& image, const PreprocessSpec& spec, float* out);

}  // namespace loupe
