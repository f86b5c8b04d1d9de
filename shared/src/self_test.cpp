// The self-test a model carries (self_test.h).
#include "loupe/self_test.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "loupe/error.h"

namespace loupe {

namespace {

using nlohmann::json;

constexpr int kMaxImages = 64;
constexpr int kMaxSide = 2048;
constexpr int64_t kMaxTotalPixels = 16 * 1024 * 1024;  // what a page may be asked to generate

[[noreturn]] void bad_record(const std::string& key, const std::string& message) {
  throw Error(ErrorCode::InvalidSpec, "model card: self_test." + key + ": " + message);
}

int64_t require_int(const json& j, const char* key, const std::string& name, int64_t lo, int64_t hi) {
  if (!j.contains(key) || !j.at(key).is_number_integer()) bad_record(name, "expected an integer");
  const int64_t v = j.at(key).get<int64_t>();
  if (v < lo || v > hi) bad_record(name, "expected " + std::to_string(lo) + " to " + std::to_string(hi));
  return v;
}

double require_tolerance(const json& j, const char* key) {
  if (!j.contains(key) || !j.at(key).is_number() || !std::isfinite(j.at(key).get<double>()) || j.at(key).get<double>() < 0) {
    bad_record(std::string("tolerance.") + key, "expected a finite number >= 0");
  }
  return j.at(key).get<double>();
}

// splitmix64 (Steele, Lea, Flood 2014): the generator's only source of numbers.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

bool absolute_output(const std::string& name) { return name == "logits" || name == "probabilities"; }

}  // namespace

std::vector<std::string> SelfTest::output_names() const {
  std::vector<std::string> names;
  for (const auto& [name, output] : outputs) names.push_back(name);
  return names;
}

SelfTest SelfTest::from_json(const json& j) {
  if (!j.is_object()) bad_record("(entry)", "expected an object");
  if (j.value("format", "") != kSelfTestFormat) bad_record("format", std::string("expected '") + kSelfTestFormat + "'");
  if (require_int(j, "version", "version", 1, 1000) != kSelfTestFormatVersion) {
    bad_record("version", "version " + std::to_string(j.at("version").get<int64_t>()) + " is newer than this Loupe reads");
  }
  SelfTest test;
  if (!j.contains("generator") || !j.at("generator").is_string()) bad_record("generator", "expected a string");
  test.generator = j.at("generator").get<std::string>();
  if (test.generator != kSelfTestGenerator) {
    bad_record("generator", "'" + test.generator + "' is not a generator this Loupe has (" + kSelfTestGenerator + ")");
  }
  if (!j.contains("seed") || !j.at("seed").is_number_unsigned()) bad_record("seed", "expected an unsigned integer");
  test.seed = j.at("seed").get<uint64_t>();
  test.channels = static_cast<int>(require_int(j, "channels", "channels", 1, 3));
  if (test.channels == 2) bad_record("channels", "expected 1 or 3");
  if (!j.contains("images") || !j.at("images").is_array() || j.at("images").empty() ||
      j.at("images").size() > static_cast<size_t>(kMaxImages)) {
    bad_record("images", "expected an array of 1 to " + std::to_string(kMaxImages) + " sizes");
  }
  int64_t pixels = 0;
  for (const json& size : j.at("images")) {
    if (!size.is_object()) bad_record("images", "expected {\"width\", \"height\"} objects");
    test.images.push_back({static_cast<int>(require_int(size, "width", "images.width", 1, kMaxSide)),
                           static_cast<int>(require_int(size, "height", "images.height", 1, kMaxSide))});
    pixels += static_cast<int64_t>(test.images.back().width) * test.images.back().height;
  }
  if (pixels > kMaxTotalPixels) {
    bad_record("images", std::to_string(pixels) + " pixels in all; at most " + std::to_string(kMaxTotalPixels));
  }
  if (!j.contains("outputs") || !j.at("outputs").is_object() || j.at("outputs").empty()) {
    bad_record("outputs", "expected an object of recorded outputs");
  }
  for (const auto& [name, output] : j.at("outputs").items()) {
    const std::string key = "outputs." + name;
    if (!output.is_object() || !output.contains("shape") || !output.at("shape").is_array() || output.at("shape").empty()) {
      bad_record(key + ".shape", "expected an array");
    }
    SelfTestOutput out;
    int64_t count = 1;
    for (const json& d : output.at("shape")) {
      if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > 1'000'000) {
        bad_record(key + ".shape", "expected positive integers");
      }
      out.shape.push_back(d.get<int64_t>());
      count *= d.get<int64_t>();
      if (count > 1'000'000) bad_record(key + ".shape", "more than 1,000,000 values");
    }
    if (out.shape[0] != static_cast<int64_t>(test.images.size())) {
      bad_record(key + ".shape", "the first dimension is " + std::to_string(out.shape[0]) + ", not the " +
                                     std::to_string(test.images.size()) + " images");
    }
    if (!output.contains("values") || !output.at("values").is_array() ||
        output.at("values").size() != static_cast<size_t>(count)) {
      bad_record(key + ".values", "expected " + std::to_string(count) + " numbers");
    }
    for (const json& v : output.at("values")) {
      if (!v.is_number() || !std::isfinite(v.get<double>())) bad_record(key + ".values", "expected finite numbers");
      out.values.push_back(v.get<double>());
    }
    test.outputs[name] = std::move(out);
  }
  if (!j.contains("tolerance") || !j.at("tolerance").is_object()) bad_record("tolerance", "expected an object");
  test.absolute_tolerance = require_tolerance(j.at("tolerance"), "absolute");
  test.relative_tolerance = require_tolerance(j.at("tolerance"), "relative");
  if (!j.contains("sha256") || !j.at("sha256").is_string()) bad_record("sha256", "expected a string");
  test.sha256 = j.at("sha256").get<std::string>();
  if (test.sha256.size() != 64 || test.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    bad_record("sha256", "expected 64 lower-case hex digits");
  }
  return test;
}

json SelfTest::to_json() const {
  json sizes = json::array();
  for (const Size& s : images) sizes.push_back({{"width", s.width}, {"height", s.height}});
  json outs = json::object();
  for (const auto& [name, output] : outputs) outs[name] = {{"shape", output.shape}, {"values", output.values}};
  json j = {{"format", kSelfTestFormat},
            {"version", kSelfTestFormatVersion},
            {"generator", generator},
            {"seed", seed},
            {"channels", channels},
            {"images", sizes},
            {"outputs", outs},
            {"tolerance", {{"absolute", absolute_tolerance}, {"relative", relative_tolerance}}},
            {"note", "Synthetic images generated from the seed, never patient images; the outputs are "
                     "LibTorch's for them at export."}};
  if (!sha256.empty()) j["sha256"] = sha256;
  return j;
}

std::string self_test_digest_text(const SelfTest& test) {
  json j = test.to_json();
  j.erase("sha256");
  return j.dump();
}

Image synthetic_image(uint64_t seed, int index, int width, int height, int channels) {
  if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide || (channels != 1 && channels != 3)) {
    throw Error(ErrorCode::InvalidArgument, "synthetic_image: size or channels out of range");
  }
  SplitMix64 rng{seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(index + 1))};
  const int64_t w = width, h = height;
  // Per image: gradient slopes, a disc (centre, radius, brightness per channel), noise amplitude.
  const int64_t gx = rng.below(4), gy = rng.below(4) + (gx == 0 ? 1 : 0);
  const int64_t cx = rng.below(w), cy = rng.below(h), r = 1 + rng.below(std::max<int64_t>(1, std::min(w, h) / 2));
  int64_t disc[3], offset[3];
  for (int c = 0; c < 3; ++c) {
    disc[c] = 40 + rng.below(120);
    offset[c] = rng.below(60);
  }
  const int64_t noise = 4 + rng.below(28);
  const int64_t span = (w - 1) * gx + (h - 1) * gy + 1;
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  image.data.resize(static_cast<size_t>(w * h * channels));
  size_t i = 0;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t gradient = (x * gx + y * gy) * 160 / span;
      const bool inside = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r;
      for (int c = 0; c < channels; ++c) {
        const int64_t v = gradient + offset[c] + (inside ? disc[c] : 0) + rng.below(2 * noise + 1) - noise;
        image.data[i++] = static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
      }
    }
  }
  return image;
}

std::vector<SelfTest::Size> default_self_test_sizes(int width, int height) {
  const auto side = [](int v) { return std::clamp(v, 1, kMaxSide); };
  return {{side(width), side(height)},
          {side(width + width / 4 + 3), side(height + height / 4 + 1)},
          {side(width - width / 4), side(height - height / 4)},
          {side(width + width / 2), side(height + 7)}};
}

Tensor self_test_input(const SelfTest& test, const PreprocessSpec& spec) {
  Tensor input;
  const int64_t c = spec.channels(), h = spec.height, w = spec.width;
  input.shape = {static_cast<int64_t>(test.images.size()), c, h, w};
  input.data.resize(input.element_count());
  const size_t per_image = static_cast<size_t>(c * h * w);
  for (size_t i = 0; i < test.images.size(); ++i) {  // one image at a time: only the tensor is kept
    const Image image = synthetic_image(test.seed, static_cast<int>(i), test.images[i].width, test.images[i].height, test.channels);
    preprocess_into(image, spec, input.data.data() + per_image * i);
  }
  return input;
}

std::string SelfTestResult::summary() const {
  char text[320];
  if (passed) {
    std::snprintf(text, sizeof text, "passed: max difference %.3g (tolerance %.3g) on %d synthetic images", max_abs_diff,
                  worst_bound, images);
  } else {
    std::snprintf(text, sizeof text, "FAILED: %s (on %d synthetic images)", problem.c_str(), images);
  }
  return text;
}

SelfTestResult check_self_test(const SelfTest& test, const std::map<std::string, Tensor>& outputs) {
  SelfTestResult result;
  result.images = static_cast<int>(test.images.size());
  double worst_ratio = -1;  // the largest difference over its bound, over every output
  for (const auto& [name, expected] : test.outputs) {
    const auto got = outputs.find(name);
    if (got == outputs.end()) {
      result.problem = "the model gave no '" + name + "' output";
      return result;
    }
    if (got->second.shape != expected.shape || got->second.data.size() != expected.values.size()) {
      result.problem = "'" + name + "' has another shape than recorded";
      return result;
    }
    for (size_t i = 0; i < expected.values.size(); ++i) {
      const double e = expected.values[i];
      const double bound = absolute_output(name) ? test.absolute_tolerance : test.relative_tolerance * std::max(1.0, std::fabs(e));
      double diff = std::fabs(static_cast<double>(got->second.data[i]) - e);
      if (std::isnan(diff)) diff = INFINITY;  // NaN is never within a tolerance
      const double ratio = bound > 0 ? diff / bound : (diff > 0 ? INFINITY : 0);
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        result.max_abs_diff = diff;
        result.worst_output = name;
        result.worst_bound = bound;
      }
    }
  }
  result.passed = worst_ratio <= 1;
  if (!result.passed) {
    char text[200];
    std::snprintf(text, sizeof text, "'%s' differs from the recorded values by up to %.3g (tolerance %.3g)",
                  result.worst_output.c_str(), result.max_abs_diff, result.worst_bound);
    result.problem = text;
  }
  return result;
}

}  // namespace loupe
