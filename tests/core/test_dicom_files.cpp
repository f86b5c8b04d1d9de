// DICOM files written with DCMTK from real images (../shared/data: a chest X-ray PNG as 16-bit
// MONOCHROME2 with slope/intercept/window, a brain MRI JPEG as 8-bit MONOCHROME1, a leukemia
// smear as an RGB secondary capture, ...), decoded with decode_image() and compared with the
// source image: exactly for every lossless syntax. Plus the bad files the issue names.
// Native only (DCMTK writes the files); tests/parity/dicom.test.mjs checks the browser parser
// on the same files.
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "dicom_fixtures.h"
#include "loupe/dicom.h"
#include "test_support.h"

using namespace loupe;

namespace {

struct TempFolder {
  std::filesystem::path path;
  TempFolder() {
    std::string pattern = (std::filesystem::temp_directory_path() / "loupe-dicom-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  ~TempFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

const std::vector<test::DicomFixture>& fixtures() {
  static TempFolder folder;
  static const std::vector<test::DicomFixture> all = test::write_dicom_fixtures(folder.path.string());
  return all;
}

// decode_image_file, for the fixture's frame (errors prefixed with the path, as decode_image_file's).
Image decode_fixture(const test::DicomFixture& f) {
  if (f.frame == 0) return decode_image_file(f.path);
  const auto bytes = read_file(f.path);
  try {
    return decode_dicom(bytes.data(), bytes.size(), {}, f.frame);
  } catch (const Error& e) {
    throw Error(e.code(), f.path + ": " + e.what());
  }
}

}  // namespace

TEST_CASE("DICOM files written from real images decode to the source pixels", "[dicom][dicom-files]") {
  if (test::data_dir().empty()) WARN("no ../shared/data (LOUPE_DATA_DIR): fixtures are made from generated patterns");
  for (const auto& f : fixtures()) {
    if (f.fails) continue;
    CAPTURE(f.name, f.source, f.frame);
    const Image image = decode_fixture(f);
    REQUIRE(image.width == f.expected.width);
    REQUIRE(image.height == f.expected.height);
    REQUIRE(image.channels == f.expected.channels);
    REQUIRE(image.depth == f.expected.depth);
    if (f.tolerance == 0) {
      CHECK(image.data == f.expected.data);
      continue;
    }
    // Lossy JPEG baseline, JPEG 2000 and near-lossless JPEG-LS: close to the source on average,
    // bounded everywhere.
    double sum = 0;
    int worst = 0;
    for (size_t i = 0; i < image.data.size(); ++i) {
      const int diff = std::abs(int(image.data[i]) - int(f.expected.data[i]));
      sum += diff;
      worst = std::max(worst, diff);
    }
    const double mean = sum / double(image.data.size());
    CAPTURE(mean, worst);
    CHECK(mean < (image.depth == PixelDepth::U16 ? 2.5 * 257 : 2.5));
    CHECK(worst <= f.tolerance);
  }
}

TEST_CASE("bad DICOM files give a clear error, never a crash", "[dicom][dicom-files][bad-input]") {
  for (const auto& f : fixtures()) {
    if (!f.fails) continue;
    CAPTURE(f.name, f.frame);
    try {
      decode_fixture(f);
      FAIL("decoded " + f.name);
    } catch (const Error& e) {
      CHECK(e.code() == f.error);
      CHECK_THAT(std::string(e.what()), Catch::Contains(f.name));  // decode_image_file prefixes the path
      CHECK_THAT(std::string(e.what()), Catch::Contains(f.error_contains));
    }
  }
}

TEST_CASE("the native reader keeps the attributes decoding needs and nothing patient-identifying",
          "[dicom][dicom-files]") {
  for (const auto& f : fixtures()) {
    CAPTURE(f.name);
    const auto bytes = read_file(f.path);
    REQUIRE(is_dicom(bytes));
    DicomPixels d;
    try {
      d = read_dicom(bytes.data(), bytes.size(), {}, f.frame);
    } catch (const Error&) {
      CHECK(f.fails);
      continue;
    }
    const std::string json = dicom_pixels_to_json(d).dump();
    CHECK(json.find("Doe") == std::string::npos);
    CHECK(json.find(test::kFixturePatientId) == std::string::npos);
    CHECK(json.find(test::kFixtureBirthDate) == std::string::npos);
    CHECK(json.find("Hospital") == std::string::npos);
    const DicomPixels header = read_dicom_file_header(f.path);
    CHECK(header.has_pixel_data == d.has_pixel_data);
    CHECK(header.pixel_data.empty());
    CHECK(header.rows == d.rows);
    CHECK(header.transfer_syntax == d.transfer_syntax);
    if (f.name == "chest_dx_16bit_mono2.dcm") {
      CHECK(d.modality == "DX");
      CHECK(d.body_part == "CHEST");
      CHECK(d.bits_stored == 12);
      CHECK(d.slope == 0.0625);
      CHECK(d.intercept == -0.4375);
      CHECK(d.window_center == 128.0);
      CHECK(d.window_width == 256.0);
      CHECK(d.transfer_syntax == "1.2.840.10008.1.2.1");
    }
    if (f.name == "chest_jpeg_lossless.dcm") {
      CHECK(d.transfer_syntax == "1.2.840.10008.1.2.4.70");
      CHECK(d.pixel_syntax == "1.2.840.10008.1.2.1");  // decompressed by DCMTK
    }
    if (f.name == "chest_rle.dcm") CHECK(d.pixel_syntax == "1.2.840.10008.1.2.5");  // left to the shared decoder
    if (f.name == "chest_j2k_lossless.dcm") CHECK(d.pixel_syntax == "1.2.840.10008.1.2.4.90");  // OpenJPEG, shared
    if (f.name == "mr_multiframe.dcm" && f.frame == 2) {
      CHECK(d.frames == 3);
      CHECK(d.frame == 2);
      CHECK(dicom_frame_note(d) == "frame 3 of 3");
      CHECK(d.pixel_data.size() == size_t(d.rows) * size_t(d.columns));  // that frame only
    }
    if (f.name == "rgb_secondary_capture.dcm") CHECK(d.sop_class_uid == "1.2.840.10008.5.1.4.1.1.7");
  }
}

TEST_CASE("truncated and damaged DICOM bytes are errors", "[dicom][dicom-files][bad-input][fuzz]") {
  const auto& all = fixtures();
  const auto it = std::find_if(all.begin(), all.end(), [](const auto& f) { return f.name == "chest_rle.dcm"; });
  REQUIRE(it != all.end());
  const auto bytes = read_file(it->path);
  for (size_t keep : {size_t{132}, size_t{200}, bytes.size() / 3, bytes.size() - 100, bytes.size() - 1}) {
    CAPTURE(keep);
    const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + std::ptrdiff_t(keep));
    CHECK_THROWS_AS(decode_image(cut), Error);
  }
  uint32_t state = 12345;
  for (int round = 0; round < 40; ++round) {
    std::vector<uint8_t> damaged = bytes;
    for (int k = 0; k < 8; ++k) {
      state = state * 1664525u + 1013904223u;
      const size_t at = 132 + state % (damaged.size() - 132);
      damaged[at] = uint8_t(state >> 24);
    }
    try {
      const Image image = decode_image(damaged);
      CHECK(image.width > 0);
    } catch (const Error&) {
      // fine: any loupe::Error; a crash or another exception type fails the test
    }
  }
}

// Found by tests/fuzz (regressions/dicom_file/): a few kilobytes whose elements declare values of
// 2 to 4 GB. DCMTK used to allocate the declared length before finding the bytes missing. The
// scripts/fuzz --ci replay of that folder (2 GB limit) is what fails if one of them allocates again.
TEST_CASE("an element declaring more bytes than the file has is refused before anything is allocated",
          "[dicom][dicom-files][bad-input][fuzz]") {
  const std::string here = __FILE__;
  const std::string folder = here.substr(0, here.rfind("/core/")) + "/fuzz/regressions/dicom_file/";
  for (const char* name : {"declared-length-4gb-1.dcm", "declared-length-4gb-2.dcm",
                           "transfer-syntax-uid-4gb-after-failed-parse.dcm", "transfer-syntax-uid-length-loaded-to-measure.dcm"}) {
    CAPTURE(name);
    const auto bytes = read_file(folder + name);
    REQUIRE(bytes.size() < 10000);
    try {
      read_dicom(bytes.data(), bytes.size(), {}, 0);  // as tests/fuzz's dicom_file does: one has no preamble
      FAIL("decoded");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::CorruptImage);
      CHECK_THAT(e.what(), Catch::Contains("DICOM file is corrupt"));
    }
  }
}
