// DICOM pixel math (dicom_to_image) on synthetic attributes + pixel data, natively and under
// wasm: masking, sign extension, rescale, VOI window / LUT, MONOCHROME1, colour, RLE, JPEG
// baseline, JPEG 2000, frames, the JSON hand-over from the page, the card's intended images, and
// every refusal with its message.
// Files written with DCMTK from real images are tested in test_dicom_files.cpp (native only).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "dicom_j2k_encoder.h"
#include "loupe/dicom.h"
#include "loupe/results.h"
#include "test_support.h"

using namespace loupe;

namespace {

constexpr const char* kExplicitLE = "1.2.840.10008.1.2.1";
constexpr const char* kBigEndian = "1.2.840.10008.1.2.2";
constexpr const char* kRle = "1.2.840.10008.1.2.5";
constexpr const char* kJpegBaseline = "1.2.840.10008.1.2.4.50";
constexpr const char* kJpegLossless = "1.2.840.10008.1.2.4.70";
constexpr const char* kJpeg2000 = "1.2.840.10008.1.2.4.90";

DicomPixels mono16(int columns, int rows, const std::vector<uint16_t>& words, int bits_stored = 16) {
  DicomPixels d;
  d.rows = rows;
  d.columns = columns;
  d.bits_allocated = 16;
  d.bits_stored = bits_stored;
  d.photometric = "MONOCHROME2";
  d.transfer_syntax = kExplicitLE;
  d.has_pixel_data = true;
  for (uint16_t w : words) {
    d.pixel_data.push_back(uint8_t(w & 0xFF));
    d.pixel_data.push_back(uint8_t(w >> 8));
  }
  return d;
}

DicomPixels mono8(int columns, int rows, const std::vector<uint8_t>& bytes) {
  DicomPixels d;
  d.rows = rows;
  d.columns = columns;
  d.bits_allocated = 8;
  d.bits_stored = 8;
  d.photometric = "MONOCHROME2";
  d.transfer_syntax = kExplicitLE;
  d.has_pixel_data = true;
  d.pixel_data = bytes;
  return d;
}

std::vector<uint16_t> samples16(const Image& image) {
  REQUIRE(image.depth == PixelDepth::U16);
  std::vector<uint16_t> out(image.data.size() / 2);
  std::memcpy(out.data(), image.data.data(), image.data.size());
  return out;
}

ErrorCode error_code(const DicomPixels& d, const DecodeLimits& limits = {}) {
  try {
    dicom_to_image(d, limits);
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("dicom_to_image accepted the input");
  return ErrorCode::Io;
}

std::string error_message(const DicomPixels& d) {
  try {
    dicom_to_image(d);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// 8x8 images are the smallest accepted: 64 values 0..63, in order.
std::vector<uint16_t> ramp(int n, int scale, int offset) {
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = uint16_t(i * scale + offset);
  return v;
}

// Minimal PackBits encoder (literal runs, and replicate runs for repeats) for RLE fixtures.
std::vector<uint8_t> packbits(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out;
  size_t i = 0;
  while (i < in.size()) {
    size_t run = 1;
    while (i + run < in.size() && run < 128 && in[i + run] == in[i]) ++run;
    if (run >= 3) {
      out.push_back(uint8_t(int8_t(1 - int(run))));
      out.push_back(in[i]);
      i += run;
      continue;
    }
    const size_t start = i;
    while (i < in.size() && i - start < 128 &&
           !(i + 2 < in.size() && in[i] == in[i + 1] && in[i] == in[i + 2])) {
      ++i;
    }
    out.push_back(uint8_t(i - start - 1));
    out.insert(out.end(), in.begin() + std::ptrdiff_t(start), in.begin() + std::ptrdiff_t(i));
  }
  if (out.size() % 2) out.push_back(0x80);  // no-op, pads the segment to even length
  return out;
}

// An RLE frame (PS3.5 Annex G) of little-endian samples: one segment per byte plane, MSB first.
std::vector<uint8_t> rle_frame(const std::vector<uint8_t>& le_samples, size_t pixels, int samples, int bytes) {
  std::vector<std::vector<uint8_t>> segments;
  for (int s = 0; s < samples; ++s) {
    for (int b = bytes - 1; b >= 0; --b) {
      std::vector<uint8_t> plane(pixels);
      for (size_t p = 0; p < pixels; ++p) plane[p] = le_samples[(p * size_t(samples) + size_t(s)) * size_t(bytes) + size_t(b)];
      segments.push_back(packbits(plane));
    }
  }
  std::vector<uint8_t> frame(64, 0);
  const auto put32 = [&](size_t at, uint32_t v) {
    for (int k = 0; k < 4; ++k) frame[at + size_t(k)] = uint8_t(v >> (8 * k));
  };
  put32(0, uint32_t(segments.size()));
  for (size_t s = 0; s < segments.size(); ++s) {
    put32(4 + 4 * s, uint32_t(frame.size()));
    frame.insert(frame.end(), segments[s].begin(), segments[s].end());
  }
  return frame;
}

}  // namespace

TEST_CASE("is_dicom looks for DICM after the 128-byte preamble", "[dicom]") {
  std::vector<uint8_t> bytes(200, 0);
  CHECK_FALSE(is_dicom(bytes));
  std::memcpy(bytes.data() + 128, "DICM", 4);
  CHECK(is_dicom(bytes));
  CHECK_FALSE(is_dicom(bytes.data(), 131));
  CHECK_FALSE(is_dicom(nullptr, 0));
}

TEST_CASE("plain 8-bit DICOM keeps its values; MONOCHROME1 is inverted", "[dicom]") {
  std::vector<uint8_t> values(64);
  for (size_t i = 0; i < 64; ++i) values[i] = uint8_t(i * 4);
  DicomPixels d = mono8(8, 8, values);
  Image image = dicom_to_image(d);
  CHECK(image.depth == PixelDepth::U8);
  CHECK(image.channels == 1);
  CHECK(image.data == values);

  d.photometric = "MONOCHROME1";
  image = dicom_to_image(d);
  for (size_t i = 0; i < 64; ++i) CHECK(image.data[i] == 255 - values[i]);
}

TEST_CASE("bits stored are masked at the high bit, then slope/intercept and the window apply", "[dicom]") {
  // stored = 16 v + 7 in 12 bits, garbage above; slope 1/16, intercept -7/16 give m = v;
  // window 128/256 maps m = v to exactly 257 v.
  std::vector<uint16_t> words(64);
  for (int v = 0; v < 64; ++v) words[size_t(v)] = uint16_t(((v * 4) * 16 + 7) | 0xB000);
  DicomPixels d = mono16(8, 8, words, 12);
  d.slope = 0.0625;
  d.intercept = -0.4375;
  d.window_center = 128;
  d.window_width = 256;
  const auto out = samples16(dicom_to_image(d));
  for (int v = 0; v < 64; ++v) CHECK(out[size_t(v)] == (v * 4) * 257);

  SECTION("MONOCHROME1 inverts after the window") {
    d.photometric = "MONOCHROME1";
    const auto inverted = samples16(dicom_to_image(d));
    for (int v = 0; v < 64; ++v) CHECK(inverted[size_t(v)] == 65535 - (v * 4) * 257);
  }
  SECTION("a high bit above bits stored - 1 shifts the value down") {
    for (auto& w : words) w = uint16_t((w & 0x0FFF) << 4 | 0x3);  // bits 4..15, garbage in 0..3
    DicomPixels shifted = mono16(8, 8, words, 12);
    shifted.high_bit = 15;
    shifted.slope = d.slope;
    shifted.intercept = d.intercept;
    shifted.window_center = d.window_center;
    shifted.window_width = d.window_width;
    CHECK(samples16(dicom_to_image(shifted)) == out);
  }
  SECTION("big endian data gives the same image") {
    DicomPixels big = d;
    for (size_t i = 0; i + 1 < big.pixel_data.size(); i += 2) std::swap(big.pixel_data[i], big.pixel_data[i + 1]);
    big.transfer_syntax = kBigEndian;
    CHECK(samples16(dicom_to_image(big)) == out);
  }
}

TEST_CASE("the window follows PS3.3: clipping outside, linear inside", "[dicom]") {
  DicomPixels d = mono16(8, 8, ramp(64, 100, 0));  // m = 0, 100, ..., 6300
  d.window_center = 3000;
  d.window_width = 2001;  // LINEAR: [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] = [1999.5, 3999.5]
  const auto out = samples16(dicom_to_image(d));
  for (int i = 0; i < 64; ++i) {
    const double x = i * 100.0;
    double y = x <= 1999.5 ? 0.0 : x > 3999.5 ? 1.0 : (x - 2999.5) / 2000.0 + 0.5;
    CAPTURE(i);
    CHECK(out[size_t(i)] == uint16_t(std::floor(y * 65535 + 0.5)));
  }
  SECTION("LINEAR_EXACT") {
    d.voi_lut_function = "LINEAR_EXACT";
    d.window_width = 2000;
    const auto exact = samples16(dicom_to_image(d));
    CHECK(exact[20] == 0);      // 2000 = c - w/2: still the minimum
    CHECK(exact[30] == 32768);  // the centre: 0.5 -> 32767.5 rounds up
    CHECK(exact[40] == 65535);
  }
  SECTION("SIGMOID") {
    d.voi_lut_function = "SIGMOID";
    const auto sigmoid = samples16(dicom_to_image(d));
    CHECK(sigmoid[30] == 32768);
    CHECK(sigmoid[0] < 200);
    CHECK(sigmoid[63] > 65300);
  }
  SECTION("an invalid width is ignored: the image's min..max applies") {
    d.window_width = 0;
    const auto minmax = samples16(dicom_to_image(d));
    CHECK(minmax[0] == 0);
    CHECK(minmax[63] == 65535);
  }
}

TEST_CASE("signed data: sign extension, intercept, and min..max without a window", "[dicom]") {
  // 12 bits stored, two's complement: -32..31 as stored values.
  std::vector<uint16_t> words(64);
  for (int i = 0; i < 64; ++i) words[size_t(i)] = uint16_t((i - 32) & 0x0FFF);
  DicomPixels d = mono16(8, 8, words, 12);
  d.pixel_representation = 1;
  d.intercept = -1024;
  const auto out = samples16(dicom_to_image(d));
  for (int i = 0; i < 64; ++i) CHECK(out[size_t(i)] == uint16_t(std::floor(i / 63.0 * 65535 + 0.5)));

  SECTION("a window on the rescaled (Hounsfield) values") {
    d.window_center = -1024 - 0.5;  // width 1: m <= -1025 clips to 0, above it to 65535
    d.window_width = 1;
    const auto clipped = samples16(dicom_to_image(d));
    for (int i = 0; i < 64; ++i) CHECK(clipped[size_t(i)] == (i - 32 - 1024 <= -1025 ? 0 : 65535));
  }
  SECTION("a negative slope is still mapped over its own range") {
    d.slope = -2;
    const auto flipped = samples16(dicom_to_image(d));
    CHECK(flipped[0] == 65535);
    CHECK(flipped[63] == 0);
  }
}

TEST_CASE("a VOI LUT applies when there is no window", "[dicom]") {
  DicomPixels d = mono16(8, 8, ramp(64, 1, 0));
  d.voi_lut_first = 10;
  d.voi_lut_bits = 8;
  for (int i = 0; i < 16; ++i) d.voi_lut.push_back(uint16_t(i * 17));  // 10..25 -> 0..255
  const auto out = samples16(dicom_to_image(d));
  CHECK(out[0] == 0);       // below the first entry: the first value
  CHECK(out[10] == 0);
  CHECK(out[11] == 17 * 257);
  CHECK(out[25] == 65535);
  CHECK(out[63] == 65535);  // above the last entry: the last value
}

TEST_CASE("colour DICOM: RGB interleaved or planar, YBR_FULL and YBR_FULL_422", "[dicom]") {
  const Image rgb = test::make_pattern(16, 8, 3);
  DicomPixels d;
  d.rows = 8;
  d.columns = 16;
  d.samples_per_pixel = 3;
  d.bits_allocated = d.bits_stored = 8;
  d.photometric = "RGB";
  d.transfer_syntax = kExplicitLE;
  d.has_pixel_data = true;
  d.pixel_data = rgb.data;
  Image image = dicom_to_image(d);
  CHECK(image.channels == 3);
  CHECK(image.depth == PixelDepth::U8);
  CHECK(image.data == rgb.data);

  const size_t pixels = 128;
  SECTION("planar configuration 1") {
    d.planar_configuration = 1;
    d.pixel_data.assign(pixels * 3, 0);
    for (size_t i = 0; i < pixels; ++i) {
      for (size_t c = 0; c < 3; ++c) d.pixel_data[c * pixels + i] = rgb.data[i * 3 + c];
    }
    CHECK(dicom_to_image(d).data == rgb.data);
  }
  SECTION("YBR_FULL gray (Cb = Cr = 128) is R = G = B = Y; red converts to red") {
    d.photometric = "YBR_FULL";
    for (size_t i = 0; i < pixels; ++i) {
      d.pixel_data[i * 3] = uint8_t(i);
      d.pixel_data[i * 3 + 1] = d.pixel_data[i * 3 + 2] = 128;
    }
    d.pixel_data[0] = 76;  // pure red in full-range BT.601: Y 76, Cb 85, Cr 255
    d.pixel_data[1] = 85;
    d.pixel_data[2] = 255;
    image = dicom_to_image(d);
    CHECK(int(image.data[0]) >= 253);
    CHECK(int(image.data[1]) <= 2);
    CHECK(int(image.data[2]) <= 2);
    for (size_t i = 1; i < pixels; ++i) {
      CHECK(image.data[i * 3] == i);
      CHECK(image.data[i * 3 + 1] == i);
      CHECK(image.data[i * 3 + 2] == i);
    }
  }
  SECTION("YBR_FULL_422: two luma samples share Cb Cr") {
    d.photometric = "YBR_FULL_422";
    d.pixel_data.assign(pixels * 2, 128);
    for (size_t i = 0; i < pixels; i += 2) {
      d.pixel_data[i * 2] = uint8_t(i);
      d.pixel_data[i * 2 + 1] = uint8_t(i + 1);
    }
    image = dicom_to_image(d);
    for (size_t i = 0; i < pixels; ++i) CHECK(image.data[i * 3 + 1] == i);
  }
}

TEST_CASE("RLE Lossless decodes exactly: 8-bit, 16-bit, colour", "[dicom][rle]") {
  SECTION("16-bit") {
    const auto words = ramp(64 * 2, 523, 3);  // 16x8
    DicomPixels d = mono16(16, 8, words);
    const Image expected = dicom_to_image(d);
    d.pixel_data = rle_frame(d.pixel_data, 128, 1, 2);
    d.transfer_syntax = kRle;
    CHECK(dicom_to_image(d).data == expected.data);
  }
  SECTION("8-bit with long runs") {
    std::vector<uint8_t> values(300 * 10, 7);
    for (size_t i = 0; i < values.size(); i += 37) values[i] = uint8_t(i);
    DicomPixels d = mono8(300, 10, values);
    d.pixel_data = rle_frame(values, values.size(), 1, 1);
    d.transfer_syntax = kRle;
    CHECK(dicom_to_image(d).data == values);
  }
  SECTION("colour") {
    const Image rgb = test::make_pattern(16, 8, 3);
    DicomPixels d;
    d.rows = 8;
    d.columns = 16;
    d.samples_per_pixel = 3;
    d.bits_allocated = 8;
    d.photometric = "RGB";
    d.transfer_syntax = kRle;
    d.has_pixel_data = true;
    d.pixel_data = rle_frame(rgb.data, 128, 3, 1);
    CHECK(dicom_to_image(d).data == rgb.data);
  }
  SECTION("damaged frames are errors") {
    std::vector<uint8_t> values(64, 9);
    DicomPixels d = mono8(8, 8, values);
    d.transfer_syntax = kRle;
    const auto frame = rle_frame(values, 64, 1, 1);
    d.pixel_data.assign(frame.begin(), frame.begin() + 40);
    CHECK(error_code(d) == ErrorCode::CorruptImage);
    d.pixel_data = frame;
    d.pixel_data[0] = 2;  // two segments declared, one sample of one byte needs one
    CHECK_THAT(error_message(d), Catch::Contains("segments"));
    d.pixel_data = frame;
    d.pixel_data.resize(frame.size() - 4);  // last run cut off
    CHECK(error_code(d) == ErrorCode::CorruptImage);
    d.pixel_data = frame;
    d.pixel_data[4] = 200;  // segment offset past the end
    CHECK(error_code(d) == ErrorCode::CorruptImage);
  }
}

TEST_CASE("JPEG baseline frames decode like the same JPEG file", "[dicom][jpeg]") {
  for (int channels : {1, 3}) {
    CAPTURE(channels);
    const auto jpeg = test::encode(test::make_pattern(40, 24, channels), ".jpg", 90);
    DicomPixels d;
    d.rows = 24;
    d.columns = 40;
    d.samples_per_pixel = channels;
    d.bits_allocated = d.bits_stored = 8;
    d.photometric = channels == 1 ? "MONOCHROME2" : "YBR_FULL_422";
    d.transfer_syntax = kJpegBaseline;
    d.has_pixel_data = true;
    d.pixel_data = jpeg;
    d.pixel_data.push_back(0);  // fragments are padded to even length
    const Image expected = decode_image(jpeg);
    CHECK(dicom_to_image(d).data == expected.data);

    d.columns = 41;
    CHECK_THAT(error_message(d), Catch::Contains("JPEG frame is 40x24 pixels but the DICOM header says 41x24"));
    d.columns = 40;
    d.pixel_data.resize(jpeg.size() / 2);
    CHECK(error_code(d) == ErrorCode::CorruptImage);
  }
}

TEST_CASE("DICOM that cannot be decoded is refused with a message naming why", "[dicom][bad-input]") {
  DicomPixels d = mono16(8, 8, ramp(64, 1, 0));
  SECTION("no pixel data") {
    d.has_pixel_data = false;
    CHECK(error_code(d) == ErrorCode::UnsupportedImage);
    CHECK_THAT(error_message(d), Catch::Contains("no pixel data"));
  }
  SECTION("JPEG 2000 Part 2 and HTJ2K") {
    d.transfer_syntax = "1.2.840.10008.1.2.4.92";
    CHECK(error_code(d) == ErrorCode::UnsupportedImage);
    CHECK_THAT(error_message(d), Catch::StartsWith("JPEG 2000 Part 2 multi-component compressed DICOM "
                                                   "(1.2.840.10008.1.2.4.92) is not supported: "));
    d.transfer_syntax = "1.2.840.10008.1.2.4.201";
    CHECK_THAT(error_message(d), Catch::StartsWith("HTJ2K compressed DICOM"));
  }
  SECTION("JPEG lossless: the reader decompresses it (DCMTK natively, dicom.mjs in the browser)") {
    d.transfer_syntax = kJpegLossless;
    CHECK(error_code(d) == ErrorCode::InvalidArgument);
    CHECK_THAT(error_message(d), Catch::Contains("must be decompressed first"));
    d.pixel_syntax = kExplicitLE;  // what both readers hand over
    CHECK(dicom_to_image(d).width == 8);
  }
  SECTION("JPEG extended: DCMTK decompresses it natively; the browser build refuses it") {
    d.transfer_syntax = "1.2.840.10008.1.2.4.51";
    if (dicom_reader_available()) {
      CHECK(error_code(d) == ErrorCode::InvalidArgument);
    } else {
      CHECK(error_code(d) == ErrorCode::UnsupportedImage);
      CHECK_THAT(error_message(d), Catch::Contains("in the browser"));
    }
  }
  SECTION("an unknown transfer syntax, or none") {
    d.transfer_syntax = "1.2.3.4";
    CHECK_THAT(error_message(d), Catch::Contains("1.2.3.4 is not a known one"));
    d.transfer_syntax = "";
    CHECK(error_code(d) == ErrorCode::CorruptImage);
  }
  SECTION("a frame that does not exist") {
    d.frames = 12;
    d.frame = 12;
    CHECK(error_code(d) == ErrorCode::InvalidArgument);
    CHECK(error_message(d) == "frame 13 does not exist: the DICOM file has 12 frames (1 to 12)");
    d.frame = -1;
    CHECK(error_code(d) == ErrorCode::InvalidArgument);
    d.frames = 1;
    d.frame = 1;
    CHECK(error_message(d) == "frame 2 does not exist: the DICOM file has 1 frame");
    d.frames = 0;
    d.frame = 0;
    CHECK(error_code(d) == ErrorCode::CorruptImage);
  }
  SECTION("JPEG 2000's colour transforms belong to JPEG 2000") {
    d.photometric = "YBR_RCT";
    d.samples_per_pixel = 3;
    d.bits_allocated = d.bits_stored = 8;
    CHECK(error_code(d) == ErrorCode::CorruptImage);
    CHECK_THAT(error_message(d), Catch::Contains("JPEG 2000's colour transform"));
  }
  SECTION("bits allocated other than 8 or 16") {
    d.bits_allocated = 32;
    d.bits_stored = 32;
    CHECK_THAT(error_message(d), Catch::Contains("32 bits allocated is not supported"));
    d.bits_allocated = 1;
    d.bits_stored = 1;
    CHECK(error_code(d) == ErrorCode::UnsupportedImage);
  }
  SECTION("inconsistent bit layout") {
    d.bits_stored = 12;
    d.high_bit = 3;
    CHECK_THAT(error_message(d), Catch::Contains("inconsistent bit layout"));
  }
  SECTION("pixel data shorter than the header says") {
    d.pixel_data.resize(100);
    CHECK(error_code(d) == ErrorCode::CorruptImage);
    CHECK_THAT(error_message(d), Catch::Contains("truncated"));
  }
  SECTION("palette colour and unknown photometric interpretations") {
    d.photometric = "PALETTE COLOR";
    CHECK_THAT(error_message(d), Catch::Contains("PALETTE COLOR"));
    d.photometric = "CMYK";
    CHECK(error_code(d) == ErrorCode::UnsupportedImage);
    d.photometric = "";
    CHECK(error_code(d) == ErrorCode::CorruptImage);
  }
  SECTION("16-bit colour") {
    d.photometric = "RGB";
    d.samples_per_pixel = 3;
    CHECK_THAT(error_message(d), Catch::Contains("colour DICOM with 16 bits allocated"));
  }
  SECTION("size limits apply before any pixel is touched") {
    DicomPixels huge;
    huge.rows = huge.columns = 60000;
    huge.bits_allocated = 16;
    huge.photometric = "MONOCHROME2";
    huge.transfer_syntax = kExplicitLE;
    huge.has_pixel_data = true;  // but no bytes: the limit must fire first
    CHECK(error_code(huge) == ErrorCode::ImageTooLarge);
    DicomPixels tiny = mono16(4, 4, ramp(16, 1, 0));
    CHECK(error_code(tiny) == ErrorCode::ImageTooSmall);
    DecodeLimits small;
    small.max_pixels = 63;
    CHECK(error_code(d, small) == ErrorCode::ImageTooLarge);
  }
  SECTION("zero dimensions") {
    d.rows = 0;
    CHECK(error_code(d) == ErrorCode::CorruptImage);
  }
}

TEST_CASE("DICOM bytes need the native reader; the browser build says the page parses them", "[dicom]") {
  std::vector<uint8_t> bytes(300, 0);
  std::memcpy(bytes.data() + 128, "DICM", 4);
  try {
    decode_image(bytes);
    FAIL("decoded garbage");
  } catch (const Error& e) {
    if (dicom_reader_available()) {
      CHECK((e.code() == ErrorCode::CorruptImage || e.code() == ErrorCode::UnsupportedImage));
    } else {
      CHECK(e.code() == ErrorCode::UnsupportedImage);
      CHECK_THAT(std::string(e.what()), Catch::Contains("parsed by the page"));
    }
  }
  CHECK_THROWS_AS(read_image_header(bytes.data(), bytes.size()), Error);
}

TEST_CASE("attributes cross from the page as JSON; unknown keys are refused", "[dicom][json]") {
  DicomPixels d = mono16(8, 8, ramp(64, 3, 1), 12);
  d.slope = 2;
  d.intercept = -5;
  d.window_center = 90;
  d.window_width = 120;
  d.voi_lut_function = "LINEAR";
  d.modality = "CR";
  d.body_part = "CHEST";
  d.view_position = "PA";
  d.frames = 2;
  d.frame = 1;
  const nlohmann::json attributes = dicom_pixels_to_json(d);
  CHECK(attributes.at("view_position") == "PA");
  CHECK(attributes.at("frame") == 1);
  CHECK(attributes.at("window_center") == 90);
  const DicomPixels back = dicom_pixels_from_json(attributes, d.pixel_data.data(), d.pixel_data.size());
  CHECK(dicom_pixels_to_json(back) == attributes);
  CHECK(dicom_to_image(back).data == dicom_to_image(d).data);

  SECTION("defaults: only the required keys") {
    const nlohmann::json minimal = {{"rows", 8}, {"columns", 8}, {"bits_allocated", 8},
                                    {"photometric", "MONOCHROME2"}, {"transfer_syntax", kExplicitLE}};
    std::vector<uint8_t> bytes(64, 5);
    const DicomPixels m = dicom_pixels_from_json(minimal, bytes.data(), bytes.size());
    CHECK(m.has_pixel_data);
    CHECK(dicom_to_image(m).data == bytes);
    CHECK_FALSE(dicom_pixels_from_json(minimal, nullptr, 0).has_pixel_data);
  }
  SECTION("a patient's name is not an attribute the core takes") {
    nlohmann::json with_name = attributes;
    with_name["PatientName"] = "Doe^Jane";
    CHECK_THROWS_WITH(dicom_pixels_from_json(with_name, nullptr, 0), Catch::StartsWith("dicom.PatientName: unknown"));
  }
  SECTION("wrong types and missing keys name the key") {
    nlohmann::json bad = attributes;
    bad["rows"] = "512";
    CHECK_THROWS_WITH(dicom_pixels_from_json(bad, nullptr, 0), Catch::StartsWith("dicom.rows: expected an integer"));
    bad = attributes;
    bad["window_width"] = "wide";
    CHECK_THROWS_WITH(dicom_pixels_from_json(bad, nullptr, 0), Catch::Contains("dicom.window_width"));
    bad = attributes;
    bad.erase("photometric");
    CHECK_THROWS_WITH(dicom_pixels_from_json(bad, nullptr, 0), Catch::Contains("dicom.photometric: missing"));
    CHECK_THROWS_AS(dicom_pixels_from_json(nlohmann::json::array(), nullptr, 0), Error);
  }
}

// JPEG 2000 frames encoded here with OpenJPEG; the core decodes them with OpenJPEG on both targets.
TEST_CASE("JPEG 2000 frames decode exactly when lossless, and damaged ones are errors", "[dicom][jpeg2000]") {
  test::J2kOptions o;
  o.width = 24;
  o.height = 16;
  std::vector<int32_t> values(size_t(o.width * o.height));
  for (size_t i = 0; i < values.size(); ++i) values[i] = int32_t((i * 37) % 4096);
  DicomPixels d;
  d.rows = o.height;
  d.columns = o.width;
  d.bits_allocated = 16;
  d.bits_stored = 12;
  d.photometric = "MONOCHROME2";
  d.transfer_syntax = kJpeg2000;
  d.has_pixel_data = true;
  d.window_center = 2048;
  d.window_width = 4096;
  o.precision = 12;
  d.pixel_data = test::encode_j2k(values, o);
  // The same values uncompressed: the images must be identical.
  DicomPixels plain = mono16(o.width, o.height, std::vector<uint16_t>(values.begin(), values.end()), 12);
  plain.window_center = d.window_center;
  plain.window_width = d.window_width;
  CHECK(dicom_to_image(d).data == dicom_to_image(plain).data);

  SECTION("signed 16-bit") {
    for (auto& v : values) v -= 2048;
    o.precision = 16;
    o.is_signed = true;
    d.bits_stored = 16;
    d.pixel_representation = 1;
    d.pixel_data = test::encode_j2k(values, o);
    DicomPixels signed_plain = mono16(o.width, o.height, {}, 16);
    for (int32_t v : values) {
      signed_plain.pixel_data.push_back(uint8_t(uint16_t(v) & 0xFF));
      signed_plain.pixel_data.push_back(uint8_t(uint16_t(v) >> 8));
    }
    signed_plain.pixel_representation = 1;
    signed_plain.window_center = d.window_center;
    signed_plain.window_width = d.window_width;
    CHECK(dicom_to_image(d).data == dicom_to_image(signed_plain).data);
  }
  SECTION("RGB with the reversible colour transform (YBR_RCT)") {
    std::vector<int32_t> rgb(values.size() * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = int32_t((i * 53 + 7) % 256);
    o.components = 3;
    o.precision = 8;
    o.colour_transform = true;
    d.samples_per_pixel = 3;
    d.bits_allocated = d.bits_stored = 8;
    d.photometric = "YBR_RCT";
    d.pixel_data = test::encode_j2k(rgb, o);
    const Image image = dicom_to_image(d);
    REQUIRE(image.channels == 3);
    CHECK(std::equal(image.data.begin(), image.data.end(), rgb.begin()));
  }
  SECTION("a codestream of another size, or more bits than stored") {
    d.columns = 25;
    CHECK(error_code(d) == ErrorCode::CorruptImage);
    CHECK_THAT(error_message(d), Catch::Contains("codestream is 24x16 pixels but the DICOM header says 25x16"));
    d.columns = 24;
    d.bits_stored = 10;
    CHECK_THAT(error_message(d), Catch::Contains("12-bit samples but Bits Stored is 10"));
  }
  SECTION("truncated, damaged or not a codestream") {
    const std::vector<uint8_t> whole = d.pixel_data;
    for (size_t keep : {size_t{2}, size_t{40}, whole.size() / 2, whole.size() - 3}) {
      CAPTURE(keep);
      d.pixel_data.assign(whole.begin(), whole.begin() + std::ptrdiff_t(keep));
      CHECK(error_code(d) == ErrorCode::CorruptImage);
      CHECK_THAT(error_message(d), Catch::StartsWith("DICOM file is corrupt: JPEG 2000 frame: "));
    }
    d.pixel_data = std::vector<uint8_t>(200, 0x5A);
    CHECK_THAT(error_message(d), Catch::Contains("no JPEG 2000 codestream"));
    uint32_t state = 99;
    for (int round = 0; round < 30; ++round) {
      d.pixel_data = whole;
      for (int k = 0; k < 6; ++k) {
        state = state * 1664525u + 1013904223u;
        d.pixel_data[4 + state % (whole.size() - 4)] = uint8_t(state >> 24);
      }
      Image image;
      try {
        image = dicom_to_image(d);
      } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::CorruptImage);
        continue;
      }
      CHECK(image.width == 24);  // damage the decoder did not notice: still an image of the right size
    }
  }
}

TEST_CASE("the fragments of a frame: offset table, one per frame, or codestream markers", "[dicom][frames]") {
  const std::vector<uint32_t> sizes = {100, 50, 60, 80};  // items start at 0, 108, 166, 234
  const std::vector<bool> starts = {true, false, true, false};
  const auto range = [&](const std::vector<uint32_t>& offsets, int frames, int frame) {
    const FragmentRange r = dicom_frame_fragments(offsets, sizes, frames, frame, starts);
    return std::make_pair(r.first, r.last);
  };
  CHECK(range({}, 1, 0) == std::make_pair(size_t{0}, size_t{4}));
  CHECK(range({0, 166}, 2, 0) == std::make_pair(size_t{0}, size_t{2}));
  CHECK(range({0, 166}, 2, 1) == std::make_pair(size_t{2}, size_t{4}));
  CHECK(range({}, 4, 3) == std::make_pair(size_t{3}, size_t{4}));
  CHECK(range({}, 2, 1) == std::make_pair(size_t{2}, size_t{4}));  // by the markers
  CHECK_THROWS_WITH(range({0, 170}, 2, 1), Catch::Contains("entry 170 is not the start of a fragment"));
  CHECK_THROWS_WITH(range({166, 0}, 2, 0), Catch::Contains("not increasing"));
  CHECK_THROWS_WITH(range({0}, 2, 1), Catch::Contains("Basic Offset Table has 1 entries for 2 frames"));
  CHECK_THROWS_WITH(range({}, 3, 1), Catch::Contains("frame 2 of 3 cannot be found: 4 fragments"));
  CHECK_THROWS_WITH(dicom_frame_fragments({}, {}, 1, 0, {}), Catch::Contains("no fragments"));
  DicomPixels d;
  d.frames = 3;
  d.frame = 1;
  CHECK(dicom_frame_note(d) == "frame 2 of 3");
  d.frames = 1;
  d.frame = 0;
  CHECK(dicom_frame_note(d) == "");
}

TEST_CASE("a DICOM file whose modality, body part or view contradicts the card is warned about",
          "[dicom][intended-use]") {
  const nlohmann::json stated = {{"modality", {"CR", "DX"}}, {"body_part", {"CHEST"}}, {"view_position", {"PA", "AP"}}};
  const IntendedImages intended = IntendedImages::from_json(stated);
  CHECK(intended.to_json() == stated);
  CHECK(intended.summary() == "CR/DX, CHEST, PA/AP");
  CHECK(intended.contradiction("DX", "CHEST", "PA") == "");
  CHECK(intended.contradiction("dx ", "chest", "") == "");  // case, spaces; a missing attribute says nothing
  CHECK(intended.contradiction("", "", "") == "");
  CHECK(intended.contradiction("MR", "CHEST", "AP") == "Modality MR (the model was trained for CR/DX)");
  CHECK(intended.contradiction("CT", "HEAD", "LL") ==
        "Modality CT (the model was trained for CR/DX); Body Part Examined HEAD (the model was trained for CHEST); "
        "View Position LL (the model was trained for PA/AP)");
  const IntendedImages modality_only = IntendedImages::from_json({{"modality", {"MR"}}});
  CHECK(modality_only.contradiction("MR", "HEAD", "") == "");  // the card leaves body part open
  CHECK_THROWS_WITH(IntendedImages::from_json({{"modality", "CR"}}),
                    Catch::Contains("intended_images.modality: expected a non-empty array"));
  CHECK_THROWS_WITH(IntendedImages::from_json({{"laterality", {"L"}}}),
                    Catch::Contains("intended_images.laterality: unknown key"));
  CHECK_THROWS_WITH(IntendedImages::from_json({{"body_part", {" "}}}), Catch::Contains("non-empty strings"));

  SECTION("the card carries it; the results table says so") {
    ModelCard card;
    card.class_names = {"a", "b"};
    card.intended_images = intended;
    const ModelCard back = ModelCard::from_json([&] {
      nlohmann::json j = card.to_json();
      j["architecture"] = "simple_cnn";
      j["model"] = nlohmann::json::object();
      j["outputs"] = {{{"name", "logits"}, {"shape", {"batch", 2}}}};
      return j;
    }());
    REQUIRE(back.intended_images);
    CHECK(back.intended_images->to_json() == stated);
    ResultRow row;
    row.path = "scans/brain.dcm";
    row.status = ResultStatus::ok;
    row.prediction.probabilities = {0.25f, 0.75f};
    row.prediction.top = 1;
    row.prediction.confidence = 0.75f;
    row.intended_use_warning = intended.contradiction("MR", "", "");
    ResultRow frames = row;
    frames.path = "scans/cine.dcm";
    frames.intended_use_warning.clear();
    frames.frame = 0;
    frames.frames = 3;
    const std::string csv = results_csv({row, frames}, card);
    CHECK(csv.rfind("path,label,predicted,confidence,p_a,p_b,intended_use_warning,frame,status,error\n", 0) == 0);
    CHECK_THAT(csv, Catch::Contains("scans/brain.dcm,,b,0.75,0.25,0.75,Modality MR (the model was trained for CR/DX),,ok,"));
    CHECK_THAT(csv, Catch::Contains("scans/cine.dcm,,b,0.75,0.25,0.75,,1 of 3,ok,"));
    const nlohmann::json json = results_json({row, frames}, card);
    CHECK(json[0]["intended_use_warning"] == "Modality MR (the model was trained for CR/DX)");
    CHECK(json[1]["frame"] == 1);
    CHECK(json[1]["frames"] == 3);
    card.intended_images.reset();  // no statement, no column; no multi-frame row, no frame column
    CHECK(results_csv({row}, card).rfind("path,label,predicted,confidence,p_a,p_b,status,error\n", 0) == 0);
  }
}

TEST_CASE("transfer syntax names", "[dicom]") {
  CHECK(dicom_transfer_syntax_name(kJpeg2000) == "JPEG 2000 Lossless");
  CHECK(dicom_transfer_syntax_name(kRle) == "RLE Lossless");
  CHECK(dicom_transfer_syntax_name("1.2.3") == "");
}
