// Decoding: formats, depths, channel layouts, and every kind of bad input the issue names.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "loupe/image.h"
#include "skip.h"
#include "test_support.h"

using namespace loupe;
using loupe::test::encode;
using loupe::test::make_pattern;

namespace {

ErrorCode decode_error_code(const std::vector<uint8_t>& bytes, const DecodeLimits& limits = {}) {
  try {
    decode_image(bytes, limits);
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("decode_image accepted the input");
  return ErrorCode::Io;
}

std::string decode_error_message(const std::vector<uint8_t>& bytes) {
  try {
    decode_image(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void put_be32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}

// Rewrites the PNG IHDR dimensions and fixes the chunk CRC, so only the size is a lie.
std::vector<uint8_t> png_with_declared_size(std::vector<uint8_t> png, uint32_t width, uint32_t height) {
  put_be32(&png[16], width);
  put_be32(&png[20], height);
  put_be32(&png[29], loupe::test::crc32(&png[12], 17));  // CRC covers chunk type + 13 data bytes
  return png;
}

size_t jpeg_sof_offset(const std::vector<uint8_t>& jpeg) {
  for (size_t i = 2; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) return i;
  }
  return 0;
}

}  // namespace

TEST_CASE("PNG round-trips exactly for every channel count and bit depth", "[image]") {
  for (int channels : {1, 3, 4}) {
    for (PixelDepth depth : {PixelDepth::U8, PixelDepth::U16}) {
      CAPTURE(channels, depth == PixelDepth::U16);
      const Image original = make_pattern(37, 21, channels, depth);
      const Image decoded = decode_image(encode_png(original));
      CHECK(decoded.width == 37);
      CHECK(decoded.height == 21);
      CHECK(decoded.channels == channels);
      CHECK(decoded.depth == depth);
      CHECK(decoded.data == original.data);
    }
  }
}

TEST_CASE("BMP decodes exactly; JPEG decodes close to the original", "[image]") {
  const Image rgb = make_pattern(64, 48, 3);
  const Image bmp = decode_image(encode(rgb, ".bmp"));
  CHECK(bmp.data == rgb.data);
  CHECK(bmp.channels == 3);

  const Image gray = make_pattern(64, 48, 1);
  CHECK(decode_image(encode(gray, ".bmp")).data == gray.data);

  const Image jpeg = decode_image(encode(rgb, ".jpg", 100));
  REQUIRE(jpeg.channels == 3);
  REQUIRE(jpeg.data.size() == rgb.data.size());
  int max_diff = 0;
  for (size_t i = 0; i < rgb.data.size(); ++i) max_diff = std::max(max_diff, std::abs(int(jpeg.data[i]) - int(rgb.data[i])));
  CHECK(max_diff < 40);  // lossy, but the same picture: channel order is RGB, not BGR

  const Image jpeg_gray = decode_image(encode(gray, ".jpg"));
  CHECK(jpeg_gray.channels == 1);
}

TEST_CASE("RGB channel order: a pure red pixel decodes as R=255", "[image]") {
  Image red;
  red.width = red.height = 8;
  red.channels = 3;
  red.data.assign(8 * 8 * 3, 0);
  for (size_t i = 0; i < red.data.size(); i += 3) red.data[i] = 255;
  const Image decoded = decode_image(encode(red, ".png"));
  CHECK(decoded.data[0] == 255);
  CHECK(decoded.data[1] == 0);
  CHECK(decoded.data[2] == 0);
}

TEST_CASE("TIFF: 16-bit natively; a clear 'unsupported' message in the browser build", "[image]") {
  const Image original = make_pattern(32, 16, 1, PixelDepth::U16);
#ifdef __EMSCRIPTEN__
  // The wasm OpenCV has no TIFF codec (so no encoder either): a hand-made little-endian header
  // with one directory holding ImageWidth = 32 and ImageLength = 16.
  const std::vector<uint8_t> tiff = {'I', 'I', 42, 0, 8, 0, 0, 0, 2, 0,     //
                                     0, 1, 3, 0, 1, 0, 0, 0, 32, 0, 0, 0,  // tag 256, SHORT, 1, 32
                                     1, 1, 3, 0, 1, 0, 0, 0, 16, 0, 0, 0,  // tag 257, SHORT, 1, 16
                                     0, 0, 0, 0};
#else
  const std::vector<uint8_t> tiff = encode(original, ".tif");
#endif
  CHECK(read_image_header(tiff.data(), tiff.size()).format == ImageFormat::Tiff);
  CHECK(read_image_header(tiff.data(), tiff.size()).width == 32);
  CHECK(read_image_header(tiff.data(), tiff.size()).height == 16);
#ifdef __EMSCRIPTEN__
  CHECK(decode_error_code(tiff) == ErrorCode::UnsupportedImage);
#else
  const Image decoded = decode_image(tiff);
  CHECK(decoded.depth == PixelDepth::U16);
  CHECK(decoded.data == original.data);
  // Colour at both depths: BitsPerSample is then one value per sample, stored after the directory,
  // and the header check reads it from there.
  for (const int channels : {3, 4}) {
    for (const PixelDepth depth : {PixelDepth::U8, PixelDepth::U16}) {
      const Image colour = make_pattern(40, 24, channels, depth);
      CAPTURE(channels, depth == PixelDepth::U16);
      const Image back = decode_image(encode(colour, ".tif"));
      CHECK(back.channels == channels);
      CHECK(back.depth == depth);
      CHECK(back.data == colour.data);
    }
  }
#endif
}

TEST_CASE("headers are read without decoding", "[image]") {
  const Image img = make_pattern(40, 30, 3);
  for (const char* ext : {".png", ".jpg", ".bmp"}) {
    CAPTURE(ext);
    const auto bytes = encode(img, ext);
    const ImageHeader h = read_image_header(bytes.data(), bytes.size());
    CHECK(h.width == 40);
    CHECK(h.height == 30);
  }
}

TEST_CASE("bad input gives a clear error, never a crash", "[image][bad-input]") {
  const std::vector<uint8_t> png = encode_png(make_pattern(64, 64, 3));
  const std::vector<uint8_t> jpeg = encode(make_pattern(64, 64, 3), ".jpg");
  const std::vector<uint8_t> bmp = encode(make_pattern(64, 64, 3), ".bmp");

  SECTION("zero bytes") {
    CHECK(decode_error_code({}) == ErrorCode::EmptyInput);
    CHECK_THAT(decode_error_message({}), Catch::Contains("empty"));
  }
  SECTION("not an image") {
    const std::string text = "patient,label\n1,normal\n";
    CHECK(decode_error_code({text.begin(), text.end()}) == ErrorCode::UnknownFormat);
    CHECK_THAT(decode_error_message({text.begin(), text.end()}), Catch::Contains("not a supported image"));
  }
  SECTION("truncated files of every format") {
    for (const auto* full : {&png, &jpeg, &bmp}) {
      for (size_t keep : {size_t{3}, size_t{20}, full->size() / 2, full->size() - 10}) {
        CAPTURE(keep);
        std::vector<uint8_t> cut(full->begin(), full->begin() + static_cast<std::ptrdiff_t>(keep));
        const ErrorCode code = decode_error_code(cut);
        CHECK((code == ErrorCode::CorruptImage || code == ErrorCode::UnknownFormat));
      }
    }
  }
  SECTION("a PNG header that lies about its size (valid CRC) is rejected before allocating") {
    const auto huge = png_with_declared_size(png, 100000, 100000);
    CHECK(decode_error_code(huge) == ErrorCode::ImageTooLarge);
    CHECK_THAT(decode_error_message(huge), Catch::Contains("100000x100000"));
  }
  SECTION("a PNG header that lies within the limit fails on its data") {
    CHECK(decode_error_code(png_with_declared_size(png, 3000, 2000)) == ErrorCode::CorruptImage);
  }
  SECTION("a JPEG frame header declaring 65500x65500") {
    std::vector<uint8_t> lie = jpeg;
    const size_t sof = jpeg_sof_offset(lie);
    REQUIRE(sof > 0);
    lie[sof + 5] = lie[sof + 7] = 0xFF;
    lie[sof + 6] = lie[sof + 8] = 0xDC;
    CHECK(decode_error_code(lie) == ErrorCode::ImageTooLarge);
  }
  SECTION("a BMP header declaring 100000x100000") {
    std::vector<uint8_t> lie = bmp;
    const uint32_t side = 100000;
    std::memcpy(&lie[18], &side, 4);  // little-endian on every target we build for
    std::memcpy(&lie[22], &side, 4);
    CHECK(decode_error_code(lie) == ErrorCode::ImageTooLarge);
  }
  SECTION("the pixel limit is configurable") {
    DecodeLimits limits;
    limits.max_pixels = 64 * 63;
    CHECK(decode_error_code(png, limits) == ErrorCode::ImageTooLarge);
    limits.max_pixels = 64 * 64;
    CHECK_NOTHROW(decode_image(png, limits));
  }
  SECTION("a 1x1 image") {
    const auto tiny = encode_png(make_pattern(1, 1, 3));
    CHECK(decode_error_code(tiny) == ErrorCode::ImageTooSmall);
    CHECK_THAT(decode_error_message(tiny), Catch::Contains("1x1"));
  }
  SECTION("zero and negative declared dimensions") {
    CHECK(decode_error_code(png_with_declared_size(png, 0, 64)) == ErrorCode::CorruptImage);
    CHECK(decode_error_code(png_with_declared_size(png, 0x80000000u, 64)) == ErrorCode::CorruptImage);
  }
}

TEST_CASE("randomly damaged files either decode or throw loupe::Error", "[image][bad-input][fuzz]") {
  std::mt19937 rng(1234);
  const std::vector<std::vector<uint8_t>> originals = {encode_png(make_pattern(48, 40, 3)),
                                                       encode(make_pattern(48, 40, 3), ".jpg"),
                                                       encode(make_pattern(48, 40, 1), ".bmp")};
  int errors = 0, decoded = 0;
  for (const auto& original : originals) {
    for (int trial = 0; trial < 150; ++trial) {
      std::vector<uint8_t> damaged = original;
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int i = 0; i < flips; ++i) damaged[rng() % damaged.size()] = static_cast<uint8_t>(rng());
      if (rng() % 3 == 0) damaged.resize(rng() % damaged.size());
      try {
        const Image image = decode_image(damaged);
        CHECK(image.data.size() == image.row_bytes() * static_cast<size_t>(image.height));
        ++decoded;
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  CHECK(errors > 0);
  CHECK(errors + decoded == 450);
}

TEST_CASE("real images from ../shared/data decode with their documented layout", "[image][real-data]") {
  const auto leukemia = loupe::test::data_files("all-leukemia/Benign", 2);
  const auto xray = loupe::test::data_files("chest-xray-covid/Covid-19", 2);
  if (leukemia.empty() || xray.empty()) LOUPE_SKIP("all-leukemia/Benign or chest-xray-covid/Covid-19 not found under LOUPE_DATA_DIR");
  for (const auto& path : leukemia) {
    const Image img = decode_image_file(path);
    CHECK(img.width == 224);
    CHECK(img.height == 224);
    CHECK(img.channels == 3);
  }
  for (const auto& path : xray) {
    const Image img = decode_image_file(path);
    CHECK(img.channels == 1);
    CHECK(img.width == 299);
  }
}

TEST_CASE("read_file names the missing path", "[image]") {
  try {
    decode_image_file("/nonexistent/loupe/scan.png");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::Io);
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent/loupe/scan.png"));
  }
}

// A TIFF directory as libtiff reads it, no pixel data: each entry a tag, a type (3 SHORT, 4 LONG)
// and its values, stored in the entry when they fit in 4 bytes and after the directory otherwise.
struct TiffEntry {
  uint16_t tag;
  uint16_t type;
  std::vector<uint32_t> values;
};

static std::vector<uint8_t> tiff_file(const std::vector<TiffEntry>& entries, bool big_endian = false) {
  std::vector<uint8_t> b = big_endian ? std::vector<uint8_t>{'M', 'M', 0, 42} : std::vector<uint8_t>{'I', 'I', 42, 0};
  const auto put = [&](std::vector<uint8_t>& out, uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(uint8_t(v >> (8 * (big_endian ? bytes - 1 - i : i))));
  };
  put(b, 8, 4);
  put(b, uint32_t(entries.size()), 2);
  const size_t after_directory = 8 + 2 + 12 * entries.size() + 4;
  std::vector<uint8_t> outside;
  for (const TiffEntry& e : entries) {
    const int size = e.type == 3 ? 2 : 4;
    put(b, e.tag, 2);
    put(b, e.type, 2);
    put(b, uint32_t(e.values.size()), 4);
    std::vector<uint8_t> bytes;
    for (const uint32_t v : e.values) put(bytes, v, size);
    if (bytes.size() <= 4) {
      bytes.resize(4, 0);
      b.insert(b.end(), bytes.begin(), bytes.end());
    } else {
      put(b, uint32_t(after_directory + outside.size()), 4);
      outside.insert(outside.end(), bytes.begin(), bytes.end());
    }
  }
  put(b, 0, 4);  // no next directory
  b.insert(b.end(), outside.begin(), outside.end());
  b.insert(b.end(), 64, 0);
  return b;
}

// The same with one SHORT value per tag.
static std::vector<uint8_t> tiff_directory(const std::vector<std::pair<uint16_t, uint16_t>>& entries) {
  std::vector<TiffEntry> full;
  for (const auto& [tag, value] : entries) full.push_back({tag, 3, {value}});
  return tiff_file(full);
}

// Found by tests/fuzz (regressions/image/tiff-duplicate-size-tags.tif): libtiff keeps the first of
// two ImageWidth tags, the header check kept the last, so 7953x46034 pixels passed as 31x66.
TEST_CASE("TIFF headers that would let libtiff allocate past the limits are refused", "[image][bad-input][fuzz]") {
  const auto error_of = [](const std::vector<uint8_t>& bytes) {
    try {
      read_image_header(bytes.data(), bytes.size());
      return std::string("no error");
    } catch (const Error& e) {
      return std::string(e.what());
    }
  };
  CHECK_THAT(error_of(tiff_directory({{256, 7953}, {256, 31}, {257, 66}})), Catch::Contains("tag 256 appears twice"));
  CHECK_THAT(error_of(tiff_directory({{256, 31}, {257, 46034}, {257, 66}})), Catch::Contains("tag 257 appears twice"));
  CHECK_THAT(error_of(tiff_directory({{256, 32}, {257, 32}, {322, 60000}, {323, 60000}})), Catch::Contains("tiles of 60000x60000"));
  CHECK_THAT(error_of(tiff_directory({{256, 32}, {257, 32}, {277, 9}})), Catch::Contains("9 samples per pixel"));
  CHECK(error_of(tiff_directory({{256, 32}, {257, 32}, {322, 256}, {323, 256}, {277, 3}})) == "no error");  // tiles bigger than a small image are fine
  // Found by the CI fuzz run (regressions/image/tiff-rows-per-strip-past-height.tif): OpenCV sizes
  // its strip buffer by RowsPerStrip, not the height, so 65535x11 pixels with 10507 rows per strip
  // asked for 2.75 GB.
  // (Compression 5, LZW, as in that file: libtiff cuts only uncompressed single strips, below.)
  CHECK_THAT(error_of(tiff_directory({{256, 65535}, {257, 11}, {259, 5}, {278, 10507}})),
             Catch::Contains("strips of 65535x10507 pixels (RowsPerStrip 10507) for a 65535x11 image"));
  CHECK(error_of(tiff_directory({{256, 1024}, {257, 512}, {259, 5}, {278, 65535}})) == "no error");  // 256 MiB at 8 bits: allowed
  CHECK_THAT(error_of(tiff_directory({{256, 1024}, {257, 512}, {259, 5}, {278, 65535}, {258, 16}, {277, 4}})),  // 512 MiB at 16 bits
             Catch::Contains("strips of 1024x65535"));
  // An uncompressed single strip is cut into small strips by libtiff before OpenCV sizes its
  // buffer, so a tall RowsPerStrip is harmless there (2048x1536, 65535 rows: one strip).
  CHECK(error_of(tiff_directory({{256, 2048}, {257, 1536}, {278, 65535}})) == "no error");
  CHECK(error_of(tiff_directory({{256, 2048}, {257, 1536}, {259, 1}, {284, 1}, {278, 65535}})) == "no error");
  CHECK_THAT(error_of(tiff_directory({{256, 2048}, {257, 1536}, {259, 5}, {278, 65535}})), Catch::Contains("strips of 2048x65535"));
  CHECK_THAT(error_of(tiff_directory({{256, 2048}, {257, 1536}, {284, 2}, {278, 65535}})), Catch::Contains("strips of 2048x65535"));
  // RowsPerStrip 2^32-1 (a LONG) means "one strip": OpenCV reads it as the height.
  CHECK(error_of(tiff_file({{256, 3, {65535}}, {257, 3, {11}}, {259, 3, {5}}, {278, 4, {0xffffffffu}}})) == "no error");
  // BitsPerSample stored after the directory, one value per sample: big-endian SHORTs, little-endian LONGs.
  const auto rgb_strips = [&](uint32_t bits, bool big_endian) {
    return error_of(tiff_file({{256, 3, {1024}}, {257, 3, {512}}, {258, 3, {bits, bits, bits}}, {259, 3, {5}},
                               {277, 3, {3}}, {278, 3, {65535}}}, big_endian));
  };
  CHECK(rgb_strips(8, true) == "no error");                               // 4 bytes a pixel: 256 MiB
  CHECK_THAT(rgb_strips(16, true), Catch::Contains("strips of 1024x65535"));  // 6 bytes a pixel: 384 MiB
  CHECK_THAT(rgb_strips(16, false), Catch::Contains("strips of 1024x65535"));
  CHECK(error_of(tiff_file({{256, 3, {32}}, {257, 3, {32}}, {258, 4, {8, 8}}, {277, 3, {2}}})) == "no error");
  CHECK_THAT(error_of(tiff_file({{256, 3, {32}}, {257, 3, {32}}, {258, 4, {32, 32}}, {277, 3, {2}}})),
             Catch::Contains("32 bits per sample is not supported"));
  CHECK_THAT(error_of(tiff_file({{256, 3, {32}}, {257, 3, {32}}, {258, 4, {32, 32}}, {277, 3, {2}}}, true)),
             Catch::Contains("32 bits per sample is not supported"));
#ifndef __EMSCRIPTEN__
  {  // and it decodes: 2048x1536 gray pixels, uncompressed, one strip saying 65535 rows
    const int w = 2048, h = 1536;
    const size_t data_at = 8 + 2 + 12 * 8 + 4 + 64;  // after the directory and tiff_file's 64 zero bytes
    std::vector<uint8_t> tall = tiff_file({{256, 3, {w}}, {257, 3, {h}}, {258, 3, {8}}, {259, 3, {1}}, {262, 3, {1}},
                                           {273, 4, {uint32_t(data_at)}}, {278, 3, {65535}}, {279, 4, {uint32_t(w * h)}}});
    REQUIRE(tall.size() == data_at);
    for (int i = 0; i < w * h; ++i) tall.push_back(uint8_t(i * 31));
    const Image image = decode_image(tall);
    CHECK(image.width == w);
    CHECK(image.height == h);
    CHECK(image.data[size_t(w) * 7 + 5] == uint8_t((w * 7 + 5) * 31));
  }
#endif
  CHECK_THAT(error_of(tiff_directory({{256, 32}, {257, 32}, {258, 64}})), Catch::Contains("64 bits per sample is not supported"));
  CHECK_THAT(error_of(tiff_directory({{256, 32}, {257, 32}, {277, 1}, {277, 4}})), Catch::Contains("tag 277 appears twice"));
  const std::string here = __FILE__;
  for (const char* name : {"tiff-duplicate-size-tags.tif", "tiff-rows-per-strip-past-height.tif"}) {
    const auto regression = read_file(here.substr(0, here.rfind("/core/")) + "/fuzz/regressions/image/" + name);
    CHECK_THROWS_AS(decode_image(regression), Error);
  }
}
