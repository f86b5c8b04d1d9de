// Decoding images from bytes: the one decoder both the native tools and the browser use.
//
//   std::vector<uint8_t> bytes = ...;                 // a file's contents, or a File read in the browser
//   loupe::Image img = loupe::decode_image(bytes);    // throws loupe::Error naming the problem
//   // img.width, img.height, img.channels (1 gray, 3 RGB, 4 RGBA), img.depth (8 or 16 bit)
//
// The header is parsed first and checked against DecodeLimits before any pixel buffer is
// allocated, so a 40-byte file that claims 100000x100000 pixels costs nothing.
// Formats: PNG, JPEG, BMP everywhere; TIFF in native builds. 8 or 16 bit, 1, 3 or 4 channels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "loupe/error.h"

namespace loupe {

enum class ImageFormat { Png, Jpeg, Bmp, Tiff };
const char* to_string(ImageFormat format);

enum class PixelDepth { U8, U16 };

// Interleaved pixels, rows top to bottom, no padding. Channel order R,G,B(,A); 16-bit samples
// are stored as uint16_t in host byte order.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;  // 1, 3 or 4
  PixelDepth depth = PixelDepth::U8;
  std::vector<uint8_t> data;

  size_t bytes_per_sample() const { return depth == PixelDepth::U16 ? 2 : 1; }
  size_t row_bytes() const { return static_cast<size_t>(width) * channels * bytes_per_sample(); }
  bool empty() const { return data.empty(); }
  // Largest sample value (255 or 65535): what "x / max" scaling divides by.
  double max_value() const { return depth == PixelDepth::U16 ? 65535.0 : 255.0; }
};

struct DecodeLimits {
  // 64 megapixels: a 8000x8000 radiograph fits; a 20000x20000 (400 MP) image does not.
  uint64_t max_pixels = 64'000'000;
  // Smaller images carry no usable detail for a classifier; a 1x1 file is almost always an error.
  int min_side = 8;
};

// What the file says about itself, read without decoding pixels.
struct ImageHeader {
  ImageFormat format = ImageFormat::Png;
  int width = 0;
  int height = 0;
};

// Parses just enough of the header to know the format and dimensions. Throws on empty input,
// unknown signature, or a header that is truncated or declares non-positive dimensions.
ImageHeader read_image_header(const uint8_t* data, size_t size);

// Decodes PNG, JPEG (EXIF orientation applied), BMP or TIFF. Throws loupe::Error.
Image decode_image(const uint8_t* data, size_t size, const DecodeLimits& limits = {});
inline Image decode_image(const std::vector<uint8_t>& bytes, const DecodeLimits& limits = {}) {
  return decode_image(bytes.data(), bytes.size(), limits);
}

// Reads a whole file (native, or Node with NODERAWFS). Throws ErrorCode::Io with the path.
std::vector<uint8_t> read_file(const std::string& path);

// read_file + decode_image; errors are prefixed with the path.
Image decode_image_file(const std::string& path, const DecodeLimits& limits = {});

// Encodes an image as PNG (lossless, keeps 16-bit): for fixtures, thumbnails and reports.
std::vector<uint8_t> encode_png(const Image& image);

}  // namespace loupe
