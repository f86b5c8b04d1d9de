// The shared core's fuzz targets (targets.h).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "loupe/dicom.h"
#include "loupe/error.h"
#include "loupe/image.h"
#include "loupe/model_card.h"
#include "loupe/onnx_model.h"
#include "loupe/preprocess.h"
#include "targets.h"

namespace loupe::fuzz {

namespace {

// Smaller than the apps' limits so one input cannot take the fuzzer's memory: the limits
// themselves are what is checked (before any pixel buffer is allocated).
DecodeLimits fuzz_limits() {
  DecodeLimits limits;
  limits.max_pixels = 4'000'000;
  return limits;
}

template <typename F>
void expecting_loupe_errors(F&& f) {
  try {
    f();
  } catch (const Error&) {
    // the message a user sees: fine
  }
}

nlohmann::json parse_json(const uint8_t* data, size_t size) {
  return nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
}

void preprocess_small(const Image& image) {
  if (image.empty()) return;
  PreprocessSpec spec = PreprocessSpec::imagenet(16);
  spec.resize = ResizePolicy::Letterbox;
  (void)preprocess(image, spec);
}

}  // namespace

void image(const uint8_t* data, size_t size) {
  expecting_loupe_errors([&] { preprocess_small(decode_image(data, size, fuzz_limits())); });
}

void dicom_attributes(const uint8_t* data, size_t size) {
  if (size < 4) return;
  const size_t length = static_cast<size_t>(data[0]) | static_cast<size_t>(data[1]) << 8 |
                        static_cast<size_t>(data[2]) << 16 | static_cast<size_t>(data[3]) << 24;
  if (length > size - 4) return;
  const nlohmann::json attributes = parse_json(data + 4, length);
  if (attributes.is_discarded()) return;
  expecting_loupe_errors([&] {
    const DicomPixels pixels = dicom_pixels_from_json(attributes, data + 4 + length, size - 4 - length);
    preprocess_small(dicom_to_image(pixels, fuzz_limits()));
  });
}

void onnx_model(const uint8_t* data, size_t size) {
  expecting_loupe_errors([&] {
    const OnnxModelInfo info = read_onnx_model(data, size, "fuzz.onnx");
    for (const ByteRange& r : info.weight_ranges) {
      if (r.offset + r.size > size) __builtin_trap();  // the reader promises ranges inside the buffer
    }
    (void)describe(info);
  });
}

void model_card(const uint8_t* data, size_t size) {
  const nlohmann::json json = parse_json(data, size);
  if (json.is_discarded()) return;
  expecting_loupe_errors([&] {
    const ModelCard card = ModelCard::from_json(json);
    // What the reader accepts, the writer writes and the reader accepts again, unchanged.
    const nlohmann::json written = card.to_json();
    if (ModelCard::from_json(written).to_json() != written) __builtin_trap();
  });
}

void preprocess_spec(const uint8_t* data, size_t size) {
  const nlohmann::json json = parse_json(data, size);
  if (json.is_discarded()) return;
  expecting_loupe_errors([&] {
    const PreprocessSpec spec = PreprocessSpec::from_json(json);
    if (PreprocessSpec::from_json(spec.to_json()).to_json() != spec.to_json()) __builtin_trap();
    if (static_cast<uint64_t>(spec.width) * static_cast<uint64_t>(spec.height) > 1'000'000) return;  // a huge input is valid, just slow
    Image small;
    small.width = 5;
    small.height = 3;
    small.channels = 1;
    small.data.assign(15, 100);
    (void)preprocess(small, spec);
  });
}

std::vector<uint8_t> pack_dicom_attributes(const std::string& json, const std::vector<uint8_t>& pixels) {
  // Built in one allocation: GCC 12 warns (falsely) about inserting into a vector of 4.
  std::vector<uint8_t> out(4 + json.size() + pixels.size());
  for (size_t i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(json.size() >> (8 * i));
  std::copy(json.begin(), json.end(), out.begin() + 4);
  std::copy(pixels.begin(), pixels.end(), out.begin() + 4 + static_cast<std::ptrdiff_t>(json.size()));
  return out;
}

const std::vector<Target>& core_targets() {
  static const std::vector<Target> targets = {
      {"image", image},          {"dicom_attributes", dicom_attributes}, {"onnx_model", onnx_model},
      {"model_card", model_card}, {"preprocess_spec", preprocess_spec},
  };
  return targets;
}

}  // namespace loupe::fuzz
