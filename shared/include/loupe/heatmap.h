// Heat maps: where a model looked, drawn over the image the user opened.
//
//   // cam: the exported model's "cam" output for one image, [classes, cam_h, cam_w] (onnx_export.h)
//   loupe::HeatMap map = loupe::class_activation_map(cam.data() + cls * cam_h * cam_w, cam_h, cam_w);
//   std::vector<uint8_t> rgba = loupe::heat_map_overlay(map, card.preprocess, image.width, image.height,
//                                                       out_w, out_h);   // RGBA over the whole image
//
// The CAM lives in the model's input frame (after preprocess()'s resize: stretched, centre-cropped or
// letterboxed). heat_map_overlay() undoes that geometry, so the colours land on the pixels the model
// saw, and leaves transparent what the model never saw (the cropped-off margins).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "loupe/preprocess.h"

namespace loupe {

// One class's activation map, normalised to 0..1 over its own range (min -> 0, max -> 1).
struct HeatMap {
  int width = 0, height = 0;
  std::vector<float> values;  // row-major, height x width, in [0, 1]
};

// Normalises `cam_h` x `cam_w` raw CAM values. A flat map gives all zeros. Throws Error on empty
// sizes or non-finite values.
HeatMap class_activation_map(const float* cam, int cam_h, int cam_w);

// Where source pixel centres fall in the model's input frame: u = x * scale_x + offset_x (in input
// pixels, 0..spec.width), the same for v. The inverse of preprocess()'s resize step.
struct InputFrame {
  double scale_x = 1, scale_y = 1, offset_x = 0, offset_y = 0;
};
InputFrame input_frame(const PreprocessSpec& spec, int image_width, int image_height);

// The "jet"-like colour of a value in [0, 1] (blue, cyan, green, yellow, red), RGB 0..255.
std::array<uint8_t, 3> heat_colour(float value);

// An RGBA8 overlay of `out_width` x `out_height` pixels covering the whole source image
// (`image_width` x `image_height`): bilinear in the CAM grid, coloured by heat_colour(), with alpha
// growing with the value (cold regions stay see-through) and 0 outside the model's input frame.
std::vector<uint8_t> heat_map_overlay(const HeatMap& map, const PreprocessSpec& spec, int image_width,
                                      int image_height, int out_width, int out_height);

}  // namespace loupe
