#include "loupe/data/augment.h"

#include <cmath>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

namespace loupe::data {

namespace {

// Own draws rather than std::uniform_real_distribution, whose algorithm is implementation-defined:
// the same seed gives the same augmentation with any standard library.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
double uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * uniform01(rng); }

cv::Mat as_mat(const Image& image) {
  const int depth = image.depth == PixelDepth::U16 ? CV_16U : CV_8U;
  return cv::Mat(image.height, image.width, CV_MAKETYPE(depth, image.channels),
                 const_cast<uint8_t*>(image.data.data()), image.row_bytes());
}

Image from_mat(const cv::Mat& mat, const Image& like) {
  Image out = like;
  out.width = mat.cols;
  out.height = mat.rows;
  out.data.resize(out.row_bytes() * static_cast<size_t>(out.height));
  for (int y = 0; y < mat.rows; ++y) std::memcpy(out.data.data() + out.row_bytes() * y, mat.ptr(y), out.row_bytes());
  return out;
}

}  // namespace

bool AugmentSpec::enabled() const {
  return horizontal_flip > 0 || vertical_flip > 0 || rotation_degrees > 0 || shift_fraction > 0 || scale_min != 1.0 ||
         scale_max != 1.0 || crop_area_min > 0 || brightness > 0 || contrast > 0;
}

nlohmann::json AugmentSpec::to_json() const {
  return {{"horizontal_flip", horizontal_flip}, {"vertical_flip", vertical_flip},
          {"rotation_degrees", rotation_degrees}, {"shift_fraction", shift_fraction},
          {"scale_min", scale_min},             {"scale_max", scale_max},
          {"crop_area_min", crop_area_min},     {"crop_area_max", crop_area_max},
          {"brightness", brightness},           {"contrast", contrast}};
}

AugmentSpec AugmentSpec::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error(ErrorCode::InvalidArgument, "augment: expected an object");
  AugmentSpec spec;
  struct Field { const char* key; double* value; double lo, hi; };
  const Field fields[] = {{"horizontal_flip", &spec.horizontal_flip, 0, 1}, {"vertical_flip", &spec.vertical_flip, 0, 1},
                          {"rotation_degrees", &spec.rotation_degrees, 0, 180}, {"shift_fraction", &spec.shift_fraction, 0, 0.5},
                          {"scale_min", &spec.scale_min, 0.1, 10}, {"scale_max", &spec.scale_max, 0.1, 10},
                          {"crop_area_min", &spec.crop_area_min, 0, 1}, {"crop_area_max", &spec.crop_area_max, 0, 1},
                          {"brightness", &spec.brightness, 0, 1}, {"contrast", &spec.contrast, 0, 1}};
  for (const auto& [key, value] : json.items()) {
    const Field* field = nullptr;
    for (const auto& f : fields) {
      if (key == f.key) field = &f;
    }
    if (!field) {
      std::string known;
      for (const auto& f : fields) known += std::string(known.empty() ? "" : ", ") + f.key;
      throw Error(ErrorCode::InvalidArgument, "augment." + key + ": unknown key; expected one of " + known);
    }
    if (!value.is_number()) throw Error(ErrorCode::InvalidArgument, "augment." + key + ": expected a number");
    const double v = value.get<double>();
    if (!(v >= field->lo && v <= field->hi)) {
      throw Error(ErrorCode::InvalidArgument, "augment." + key + ": " + std::to_string(v) + " is outside [" +
                                                  std::to_string(field->lo) + ", " + std::to_string(field->hi) + "]");
    }
    *field->value = v;
  }
  if (spec.scale_min > spec.scale_max) throw Error(ErrorCode::InvalidArgument, "augment.scale_min: larger than scale_max");
  if (spec.crop_area_min > spec.crop_area_max) {
    throw Error(ErrorCode::InvalidArgument, "augment.crop_area_min: larger than crop_area_max");
  }
  return spec;
}

Image augment(const Image& image, const AugmentSpec& spec, std::mt19937_64& rng) {
  cv::Mat mat = as_mat(image).clone();
  const int w = mat.cols, h = mat.rows;
  // Draw every random number in a fixed order, whether or not its transform applies, so that
  // changing one setting does not reshuffle the others.
  const double r_hflip = uniform01(rng), r_vflip = uniform01(rng);
  const double angle = uniform(rng, -spec.rotation_degrees, spec.rotation_degrees);
  const double scale = uniform(rng, spec.scale_min, spec.scale_max);
  const double dx = uniform(rng, -spec.shift_fraction, spec.shift_fraction) * w;
  const double dy = uniform(rng, -spec.shift_fraction, spec.shift_fraction) * h;
  const double crop_area = uniform(rng, spec.crop_area_min, spec.crop_area_max);
  const double crop_log_ratio = uniform(rng, std::log(3.0 / 4.0), std::log(4.0 / 3.0));
  const double crop_x = uniform01(rng), crop_y = uniform01(rng);
  const double brightness = uniform(rng, -spec.brightness, spec.brightness);
  const double contrast = uniform(rng, 1.0 - spec.contrast, 1.0 + spec.contrast);

  if (spec.crop_area_min > 0) {
    const double ratio = std::exp(crop_log_ratio);
    const int cw = std::clamp(static_cast<int>(std::lround(std::sqrt(crop_area * w * h * ratio))), 1, w);
    const int ch = std::clamp(static_cast<int>(std::lround(std::sqrt(crop_area * w * h / ratio))), 1, h);
    const cv::Rect roi(static_cast<int>(crop_x * (w - cw)), static_cast<int>(crop_y * (h - ch)), cw, ch);
    cv::resize(mat(roi), mat, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
  }
  if (r_hflip < spec.horizontal_flip) cv::flip(mat, mat, 1);
  if (r_vflip < spec.vertical_flip) cv::flip(mat, mat, 0);
  if (angle != 0.0 || scale != 1.0 || dx != 0.0 || dy != 0.0) {
    cv::Mat affine = cv::getRotationMatrix2D(cv::Point2f(static_cast<float>(w) / 2, static_cast<float>(h) / 2), angle, scale);
    affine.at<double>(0, 2) += dx;
    affine.at<double>(1, 2) += dy;
    // Replicate the border (Keras' default fill_mode "nearest") rather than inventing black corners.
    cv::warpAffine(mat, mat, affine, mat.size(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  }
  if (brightness != 0.0 || contrast != 1.0) {
    const double max = image.max_value();
    const cv::Scalar mean = cv::mean(mat);
    double channel_mean = 0;
    for (int c = 0; c < std::min(3, mat.channels()); ++c) channel_mean += mean[c] / std::min(3, mat.channels());
    // convertTo saturates to the pixel type's range. Alpha (4th channel) is left as is.
    std::vector<cv::Mat> planes;
    cv::split(mat, planes);
    for (int c = 0; c < std::min(3, mat.channels()); ++c) {
      planes[c].convertTo(planes[c], -1, contrast, channel_mean * (1.0 - contrast) + brightness * max);
    }
    cv::merge(planes, mat);
  }
  return from_mat(mat, image);
}

}  // namespace loupe::data
