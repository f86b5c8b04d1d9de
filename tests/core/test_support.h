// Fixtures for the core tests: images the tests generate (so every run has them) and access to
// the real data sets in ../shared/data when present.
#pragma once

#include <string>
#include <vector>

#include "loupe/image.h"

namespace loupe::test {

// A deterministic pattern (gradients + a checkerboard) so resizing and colour conversion matter.
Image make_pattern(int width, int height, int channels, PixelDepth depth = PixelDepth::U8);

// Encodes with OpenCV's encoder for `extension` (".png", ".jpg", ".bmp", ".tif").
std::vector<uint8_t> encode(const Image& image, const std::string& extension, int jpeg_quality = 95);

// $LOUPE_DATA_DIR, else the path configured at build time; empty when the folder does not exist.
std::string data_dir();

// Up to `count` image files (sorted) from data_dir()/relative_folder; empty if absent.
std::vector<std::string> data_files(const std::string& relative_folder, size_t count);

// Standard CRC-32 (for rewriting PNG chunks into valid-looking lies).
uint32_t crc32(const uint8_t* data, size_t size);

}  // namespace loupe::test
