// A self-test that travels inside the model file: a few synthetic images, generated from a seed
// (never patient images), and the outputs LibTorch gave for them at export. Whoever opens the model
// (`loupe inspect --verify`, `loupe predict`, the web page) regenerates the images with this code,
// preprocesses them as the card says, runs the model and compares: a runtime that computes
// differently, a preprocessing that drifted, or changed weights or expectations all fail.
//
//   const loupe::SelfTest& test = *card.self_test;
//   if (loupe::sha256_hex(self_test_digest_text(test)) != test.sha256) ...   // the record is intact
//   loupe::Tensor x = loupe::self_test_input(test, card.preprocess);       // [n, C, H, W]
//   ... run the model on x, asking for test.output_names() ...
//   loupe::SelfTestResult r = loupe::check_self_test(test, outputs);      // name -> Tensor
//   std::puts(r.summary().c_str());   // "passed: max difference 2.4e-07 (tolerance 0.001) on 4 synthetic images"
//
// The card's "self_test" (format "loupe.self_test", version 1):
//   generator      "loupe.synthetic_images.v1" (synthetic_image below; integer arithmetic only,
//                  so native and wasm make the same bytes)
//   seed           unsigned 64-bit
//   channels       1 or 3: the model input's channels
//   images         [{"width", "height"}, ...]: the synthetic images, before preprocessing (their
//                  sizes differ from the input size, so resizing is tested too)
//   outputs        {"logits": {"shape": [n, classes], "values": [...]}, ...}: LibTorch's outputs
//   tolerance      {"absolute": a, "relative": r}: logits and probabilities may differ by a;
//                  other outputs (the OOD distance) by r * max(1, |expected|)
//   sha256         SHA-256 (hex) of self_test_digest_text(): the record without its hash, as
//                  compact JSON. SHA-256 is computed by the caller (OpenSSL natively, the browser's
//                  crypto.subtle in the page), not by the core.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/image.h"
#include "loupe/preprocess.h"

namespace loupe {

inline constexpr const char* kSelfTestFormat = "loupe.self_test";
inline constexpr int kSelfTestFormatVersion = 1;
inline constexpr const char* kSelfTestGenerator = "loupe.synthetic_images.v1";

struct SelfTestOutput {
  std::vector<int64_t> shape;   // [images, ...]
  std::vector<double> values;   // row-major; float32 values widened, so they round-trip exactly
};

struct SelfTest {
  std::string generator = kSelfTestGenerator;
  uint64_t seed = 0;
  int channels = 3;
  struct Size {
    int width = 0, height = 0;
  };
  std::vector<Size> images;
  std::map<std::string, SelfTestOutput> outputs;
  double absolute_tolerance = 1e-3;
  double relative_tolerance = 1e-3;
  std::string sha256;

  std::vector<std::string> output_names() const;

  // Strict: every key above, values of the stated shapes, at most 64 images of at most 2048x2048
  // and 16 M pixels in all, an unknown generator refused; throws Error(InvalidSpec) naming "self_test.<key>".
  static SelfTest from_json(const nlohmann::json& json);
  nlohmann::json to_json() const;
};

// Image `index` of generator v1 (the same seed and size give the same bytes on every platform): a gradient, a bright disc and noise, 8 bits, `channels` channels.
Image synthetic_image(uint64_t seed, int index, int width, int height, int channels);

// The sizes export uses for a model input of width x height: the input size itself and three
// others (larger, smaller, another aspect ratio).
std::vector<SelfTest::Size> default_self_test_sizes(int width, int height);

// The record's synthetic images (synthetic_image, sizes and channels from the record) preprocessed
// with `spec`, stacked: [images, C, H, W]. Made one at a time: only the tensor is held.
Tensor self_test_input(const SelfTest& test, const PreprocessSpec& spec);

// The text whose SHA-256 the record holds: to_json() without "sha256", compact.
std::string self_test_digest_text(const SelfTest& test);

struct SelfTestResult {
  bool passed = false;
  double max_abs_diff = 0;      // the difference where it is largest relative to its bound
  std::string worst_output;     // where the largest difference (relative to its bound) is
  double worst_bound = 0;       // the bound there
  int images = 0;
  std::string problem;          // why it failed, for people (empty when passed)

  // "passed: max difference 2.38e-07 (tolerance 0.001) on 4 synthetic images", or
  // "FAILED: logits differ by 0.31 (tolerance 0.001) on 4 synthetic images".
  std::string summary() const;
};

// Compares what a runtime gave (output name -> tensor) with the record. Missing outputs or other
// shapes fail; NaN anywhere fails.
SelfTestResult check_self_test(const SelfTest& test, const std::map<std::string, Tensor>& outputs);

}  // namespace loupe
