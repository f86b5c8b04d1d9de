#include "loupe/preprocess.h"

#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <utility>

namespace loupe {

// [SECTION] Names used in JSON and messages

namespace {

template <typename Enum>
struct EnumName {
  Enum value;
  const char* name;
};

constexpr EnumName<ColorMode> kColorNames[] = {{ColorMode::Gray, "gray"}, {ColorMode::Rgb, "rgb"}};
constexpr EnumName<ResizePolicy> kResizeNames[] = {{ResizePolicy::Stretch, "stretch"},
                                                   {ResizePolicy::ShorterSideCenterCrop, "shorter_side_center_crop"},
                                                   {ResizePolicy::Letterbox, "letterbox"}};
constexpr EnumName<Interpolation> kInterpolationNames[] = {{Interpolation::Nearest, "nearest"},
                                                           {Interpolation::Linear, "linear"},
                                                           {Interpolation::Area, "area"},
                                                           {Interpolation::Cubic, "cubic"}};

template <typename Enum, size_t N>
const char* name_of(const EnumName<Enum> (&names)[N], Enum value) {
  for (const auto& entry : names) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

[[noreturn]] void bad_spec(const std::string& key, const std::string& problem) {
  throw Error(ErrorCode::InvalidSpec, "preprocess." + key + ": " + problem);
}

template <typename Enum, size_t N>
Enum parse_enum(const nlohmann::json& value, const std::string& key, const EnumName<Enum> (&names)[N]) {
  std::string expected;
  for (const auto& entry : names) expected += std::string(expected.empty() ? "" : ", ") + entry.name;
  if (!value.is_string()) bad_spec(key, "expected a string, one of " + expected);
  const std::string text = value.get<std::string>();
  for (const auto& entry : names) {
    if (text == entry.name) return entry.value;
  }
  bad_spec(key, "unknown value '" + text + "'; expected one of " + expected);
}

double parse_number(const nlohmann::json& value, const std::string& key) {
  if (!value.is_number()) bad_spec(key, "expected a number, got " + value.dump());
  return value.get<double>();
}

int parse_int(const nlohmann::json& value, const std::string& key) {
  if (!value.is_number_integer()) bad_spec(key, "expected an integer, got " + value.dump());
  const auto v = value.get<int64_t>();
  if (v < 1 || v > 16384) bad_spec(key, "must be between 1 and 16384, got " + std::to_string(v));
  return static_cast<int>(v);
}

std::vector<double> parse_numbers(const nlohmann::json& value, const std::string& key) {
  if (value.is_number()) return {value.get<double>()};
  if (!value.is_array()) bad_spec(key, "expected a number or an array of numbers, got " + value.dump());
  std::vector<double> out;
  for (size_t i = 0; i < value.size(); ++i) out.push_back(parse_number(value[i], key + "[" + std::to_string(i) + "]"));
  return out;
}

}  // namespace

const char* to_string(ColorMode mode) { return name_of(kColorNames, mode); }
const char* to_string(ResizePolicy policy) { return name_of(kResizeNames, policy); }
const char* to_string(Interpolation interpolation) { return name_of(kInterpolationNames, interpolation); }

// [SECTION] PreprocessSpec

PreprocessSpec PreprocessSpec::unit_scale(int size, ColorMode color) {
  PreprocessSpec spec;
  spec.color = color;
  spec.width = spec.height = size;
  return spec;
}

PreprocessSpec PreprocessSpec::imagenet(int size) {
  PreprocessSpec spec = unit_scale(size, ColorMode::Rgb);
  spec.mean = {0.485, 0.456, 0.406};
  spec.std = {0.229, 0.224, 0.225};
  return spec;
}

void PreprocessSpec::validate() const {
  if (width < 1 || width > 16384) bad_spec("width", "must be between 1 and 16384, got " + std::to_string(width));
  if (height < 1 || height > 16384) bad_spec("height", "must be between 1 and 16384, got " + std::to_string(height));
  if (!(crop_fraction > 0.0 && crop_fraction <= 1.0)) {
    bad_spec("crop_fraction", "must be in (0, 1], got " + std::to_string(crop_fraction));
  }
  if (!(pad_value >= 0.0 && pad_value <= 1.0)) bad_spec("pad_value", "must be in [0, 1], got " + std::to_string(pad_value));
  const auto check_per_channel = [&](const std::vector<double>& values, const char* key, bool positive) {
    if (values.size() != 1 && values.size() != static_cast<size_t>(channels())) {
      bad_spec(key, "has " + std::to_string(values.size()) + " values; expected 1 or " + std::to_string(channels()) +
                        " for color '" + to_string(color) + "'");
    }
    for (double v : values) {
      if (!std::isfinite(v)) bad_spec(key, "values must be finite");
      if (positive && !(v > 0.0)) bad_spec(key, "values must be > 0, got " + std::to_string(v));
    }
  };
  check_per_channel(mean, "mean", false);
  check_per_channel(std, "std", true);
}

nlohmann::json PreprocessSpec::to_json() const {
  return {{"color", to_string(color)},          {"width", width},
          {"height", height},                   {"resize", to_string(resize)},
          {"interpolation", to_string(interpolation)}, {"crop_fraction", crop_fraction},
          {"pad_value", pad_value},             {"mean", mean},
          {"std", std}};
}

PreprocessSpec PreprocessSpec::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error(ErrorCode::InvalidSpec, "preprocess: expected a JSON object, got " + json.dump());
  PreprocessSpec spec;
  for (const auto& [key, value] : json.items()) {
    if (key == "color") spec.color = parse_enum(value, key, kColorNames);
    else if (key == "width") spec.width = parse_int(value, key);
    else if (key == "height") spec.height = parse_int(value, key);
    else if (key == "size") spec.width = spec.height = parse_int(value, key);  // shorthand for square inputs
    else if (key == "resize") spec.resize = parse_enum(value, key, kResizeNames);
    else if (key == "interpolation") spec.interpolation = parse_enum(value, key, kInterpolationNames);
    else if (key == "crop_fraction") spec.crop_fraction = parse_number(value, key);
    else if (key == "pad_value") spec.pad_value = parse_number(value, key);
    else if (key == "mean") spec.mean = parse_numbers(value, key);
    else if (key == "std") spec.std = parse_numbers(value, key);
    else {
      bad_spec(key, "unknown key; expected color, width, height, size, resize, interpolation, crop_fraction, "
                    "pad_value, mean, std");
    }
  }
  spec.validate();
  return spec;
}

bool PreprocessSpec::operator==(const PreprocessSpec& o) const {
  return color == o.color && width == o.width && height == o.height && resize == o.resize &&
         interpolation == o.interpolation && crop_fraction == o.crop_fraction && pad_value == o.pad_value &&
         mean == o.mean && std == o.std;
}

size_t Tensor::element_count() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return shape.empty() ? 0 : n;
}

// [SECTION] preprocess()

namespace {

int cv_interpolation(Interpolation interpolation) {
  switch (interpolation) {
    case Interpolation::Nearest: return cv::INTER_NEAREST;
    // The bit-exact variant: fixed-point arithmetic, identical with every SIMD path (native
    // SSE/AVX, wasm SIMD128), for 8- and 16-bit images alike.
    case Interpolation::Linear: return cv::INTER_LINEAR_EXACT;
    case Interpolation::Area: return cv::INTER_AREA;
    case Interpolation::Cubic: return cv::INTER_CUBIC;
  }
  return cv::INTER_LINEAR;
}

cv::Mat convert_color(const cv::Mat& src, ColorMode color) {
  cv::Mat out;
  const int channels = src.channels();
  if (color == ColorMode::Gray) {
    if (channels == 1) return src;
    cv::cvtColor(src, out, channels == 4 ? cv::COLOR_RGBA2GRAY : cv::COLOR_RGB2GRAY);
  } else {
    if (channels == 3) return src;
    cv::cvtColor(src, out, channels == 4 ? cv::COLOR_RGBA2RGB : cv::COLOR_GRAY2RGB);
  }
  return out;
}

int scaled_side(int side, double scale) { return std::max(1, static_cast<int>(std::lround(side * scale))); }

// Returns the resized image and where its top-left corner lands in the output (letterbox offsets;
// zero otherwise). The returned Mat covers at most width x height.
std::pair<cv::Mat, cv::Point> resize_for(const cv::Mat& src, const PreprocessSpec& spec) {
  const int interp = cv_interpolation(spec.interpolation);
  const cv::Size target(spec.width, spec.height);
  const auto resized = [&](cv::Size size) {
    if (size == src.size()) return src;
    cv::Mat out;
    cv::resize(src, out, size, 0, 0, interp);
    return out;
  };
  switch (spec.resize) {
    case ResizePolicy::Stretch: return {resized(target), {0, 0}};
    case ResizePolicy::ShorterSideCenterCrop: {
      const double scale = std::max(double(spec.width) / src.cols, double(spec.height) / src.rows) / spec.crop_fraction;
      const cv::Size size(std::max(spec.width, scaled_side(src.cols, scale)),
                          std::max(spec.height, scaled_side(src.rows, scale)));
      const cv::Mat big = resized(size);
      const cv::Rect crop((size.width - spec.width) / 2, (size.height - spec.height) / 2, spec.width, spec.height);
      return {big(crop), {0, 0}};
    }
    case ResizePolicy::Letterbox: {
      const double scale = std::min(double(spec.width) / src.cols, double(spec.height) / src.rows);
      const cv::Size size(std::min(spec.width, scaled_side(src.cols, scale)),
                          std::min(spec.height, scaled_side(src.rows, scale)));
      return {resized(size), {(spec.width - size.width) / 2, (spec.height - size.height) / 2}};
    }
  }
  return {resized(target), {0, 0}};
}

template <typename Sample>
void write_planar(const cv::Mat& src, cv::Point offset, const PreprocessSpec& spec, float max_value, float* out) {
  const int channels = spec.channels();
  const size_t plane = static_cast<size_t>(spec.width) * spec.height;
  for (int c = 0; c < channels; ++c) {
    // Kept as float and written as (x / max - mean) / std in this order on both targets, so the
    // native and wasm builds round identically.
    const float mean = static_cast<float>(spec.mean.size() == 1 ? spec.mean[0] : spec.mean[c]);
    const float stdev = static_cast<float>(spec.std.size() == 1 ? spec.std[0] : spec.std[c]);
    float* dst = out + plane * c;
    const float pad = (static_cast<float>(spec.pad_value) - mean) / stdev;
    if (src.cols != spec.width || src.rows != spec.height) std::fill(dst, dst + plane, pad);
    for (int y = 0; y < src.rows; ++y) {
      const Sample* row = src.ptr<Sample>(y);
      float* dst_row = dst + static_cast<size_t>(y + offset.y) * spec.width + offset.x;
      for (int x = 0; x < src.cols; ++x) {
        const float v = static_cast<float>(row[x * channels + c]) / max_value;
        dst_row[x] = (v - mean) / stdev;
      }
    }
  }
}

}  // namespace

void preprocess_into(const Image& image, const PreprocessSpec& spec, float* out) {
  spec.validate();
  if (image.empty() || image.width <= 0 || image.height <= 0) {
    throw Error(ErrorCode::InvalidArgument, "preprocess: the image is empty");
  }
  if (image.channels != 1 && image.channels != 3 && image.channels != 4) {
    throw Error(ErrorCode::InvalidArgument, "preprocess: " + std::to_string(image.channels) + "-channel image");
  }
  if (image.data.size() != image.row_bytes() * static_cast<size_t>(image.height)) {
    throw Error(ErrorCode::InvalidArgument, "preprocess: pixel buffer size does not match width x height x channels");
  }
  const int depth = image.depth == PixelDepth::U16 ? CV_16U : CV_8U;
  const cv::Mat view(image.height, image.width, CV_MAKETYPE(depth, image.channels),
                     const_cast<uint8_t*>(image.data.data()), image.row_bytes());
  const cv::Mat colored = convert_color(view, spec.color);
  const auto [resized, offset] = resize_for(colored, spec);
  const float max_value = static_cast<float>(image.max_value());
  if (depth == CV_16U) write_planar<uint16_t>(resized, offset, spec, max_value, out);
  else write_planar<uint8_t>(resized, offset, spec, max_value, out);
}

Tensor preprocess(const Image& image, const PreprocessSpec& spec) {
  spec.validate();  // before sizing the buffer from it
  Tensor tensor;
  tensor.shape = {1, spec.channels(), spec.height, spec.width};
  tensor.data.resize(static_cast<size_t>(spec.channels()) * spec.height * spec.width);
  preprocess_into(image, spec, tensor.data.data());
  return tensor;
}

}  // namespace loupe
