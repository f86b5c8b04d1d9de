#include "loupe/heatmap.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "loupe/error.h"

namespace loupe {

HeatMap class_activation_map(const float* cam, int cam_h, int cam_w) {
  if (cam == nullptr || cam_h <= 0 || cam_w <= 0) {
    throw Error(ErrorCode::InvalidArgument, "heat map: empty class activation map (" + std::to_string(cam_h) + "x" +
                                                std::to_string(cam_w) + ")");
  }
  HeatMap map;
  map.width = cam_w;
  map.height = cam_h;
  map.values.assign(cam, cam + static_cast<size_t>(cam_h) * static_cast<size_t>(cam_w));
  if (!std::all_of(map.values.begin(), map.values.end(), [](float v) { return std::isfinite(v); })) {
    throw Error(ErrorCode::InvalidArgument, "heat map: the class activation map has NaN or infinite values");
  }
  const auto [lo, hi] = std::minmax_element(map.values.begin(), map.values.end());
  const float low = *lo, range = *hi - *lo;
  for (float& v : map.values) v = range > 0 ? (v - low) / range : 0.0f;
  return map;
}

// Mirrors resize_for() in preprocess.cpp: the resized size and the offset of its top-left corner
// in the input frame (negative for the centre crop's cut-off margins).
InputFrame input_frame(const PreprocessSpec& spec, int image_width, int image_height) {
  if (image_width <= 0 || image_height <= 0) throw Error(ErrorCode::InvalidArgument, "heat map: empty image");
  const auto scaled = [](int side, double scale) { return std::max(1, static_cast<int>(std::lround(side * scale))); };
  int width = spec.width, height = spec.height, offset_x = 0, offset_y = 0;
  switch (spec.resize) {
    case ResizePolicy::Stretch: break;
    case ResizePolicy::ShorterSideCenterCrop: {
      const double scale = std::max(double(spec.width) / image_width, double(spec.height) / image_height) / spec.crop_fraction;
      width = std::max(spec.width, scaled(image_width, scale));
      height = std::max(spec.height, scaled(image_height, scale));
      offset_x = -((width - spec.width) / 2);
      offset_y = -((height - spec.height) / 2);
      break;
    }
    case ResizePolicy::Letterbox: {
      const double scale = std::min(double(spec.width) / image_width, double(spec.height) / image_height);
      width = std::min(spec.width, scaled(image_width, scale));
      height = std::min(spec.height, scaled(image_height, scale));
      offset_x = (spec.width - width) / 2;
      offset_y = (spec.height - height) / 2;
      break;
    }
  }
  return {double(width) / image_width, double(height) / image_height, double(offset_x), double(offset_y)};
}

std::array<uint8_t, 3> heat_colour(float value) {
  // Piecewise-linear jet: 0 blue, 0.25 cyan, 0.5 green, 0.75 yellow, 1 red.
  static const float stops[5][3] = {{0, 0, 255}, {0, 255, 255}, {0, 255, 0}, {255, 255, 0}, {255, 0, 0}};
  const float t = std::clamp(value, 0.0f, 1.0f) * 4.0f;
  const int i = std::min(3, static_cast<int>(t));
  const float f = t - static_cast<float>(i);
  std::array<uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c) {
    rgb[static_cast<size_t>(c)] = static_cast<uint8_t>(std::lround(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f));
  }
  return rgb;
}

std::vector<uint8_t> heat_map_overlay(const HeatMap& map, const PreprocessSpec& spec, int image_width,
                                      int image_height, int out_width, int out_height) {
  if (map.width <= 0 || map.height <= 0 ||
      map.values.size() != static_cast<size_t>(map.width) * static_cast<size_t>(map.height)) {
    throw Error(ErrorCode::InvalidArgument, "heat map: empty map");
  }
  if (out_width <= 0 || out_height <= 0) throw Error(ErrorCode::InvalidArgument, "heat map: empty output size");
  const InputFrame frame = input_frame(spec, image_width, image_height);
  std::vector<uint8_t> rgba(static_cast<size_t>(out_width) * static_cast<size_t>(out_height) * 4, 0);
  const auto at = [&](int x, int y) { return map.values[static_cast<size_t>(y) * static_cast<size_t>(map.width) + static_cast<size_t>(x)]; };
  for (int oy = 0; oy < out_height; ++oy) {
    // The output pixel's centre in source pixels, then in the input frame, then in CAM cells.
    const double sy = (oy + 0.5) * image_height / out_height;
    const double v = sy * frame.scale_y + frame.offset_y;
    for (int ox = 0; ox < out_width; ++ox) {
      const double sx = (ox + 0.5) * image_width / out_width;
      const double u = sx * frame.scale_x + frame.offset_x;
      if (u < 0 || v < 0 || u >= spec.width || v >= spec.height) continue;  // never seen by the model
      const double cx = std::clamp(u * map.width / spec.width - 0.5, 0.0, map.width - 1.0);
      const double cy = std::clamp(v * map.height / spec.height - 0.5, 0.0, map.height - 1.0);
      const int x0 = static_cast<int>(cx), y0 = static_cast<int>(cy);
      const int x1 = std::min(x0 + 1, map.width - 1), y1 = std::min(y0 + 1, map.height - 1);
      const float fx = static_cast<float>(cx - x0), fy = static_cast<float>(cy - y0);
      const float value = (at(x0, y0) * (1 - fx) + at(x1, y0) * fx) * (1 - fy) + (at(x0, y1) * (1 - fx) + at(x1, y1) * fx) * fy;
      const std::array<uint8_t, 3> rgb = heat_colour(value);
      uint8_t* px = &rgba[(static_cast<size_t>(oy) * static_cast<size_t>(out_width) + static_cast<size_t>(ox)) * 4];
      px[0] = rgb[0];
      px[1] = rgb[1];
      px[2] = rgb[2];
      // Cold regions stay see-through so the anatomy under them remains readable.
      px[3] = static_cast<uint8_t>(std::lround(255.0f * std::clamp(0.15f + 0.85f * value, 0.0f, 1.0f)));
    }
  }
  return rgba;
}

}  // namespace loupe
