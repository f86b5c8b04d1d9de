// Writes the fuzzers' seed corpora: small valid inputs of every kind, generated here (patterns,
// DICOM files written with DCMTK, configs of the repository), never files of ../shared/data.
//   fuzz_make_seeds OUT_DIR REPO_DIR      -> OUT_DIR/<target>/<seed>
// The ONNX seeds (a tiny model with a card) come from tests/browser/helpers.mjs (scripts/fuzz).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/dicom_fixtures.h"
#include "../core/test_support.h"
#include "../native/format_fixtures.h"
#include "loupe/dicom.h"
#include "loupe/image.h"
#include "loupe/model_card.h"
#include "targets.h"

namespace fs = std::filesystem;
using namespace loupe;

namespace {

void write(const fs::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                    static_cast<std::streamsize>(bytes.size()));
}

void write_text(const fs::path& dir, const std::string& name, const std::string& text) {
  write(dir, name, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<uint8_t> read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fuzz_make_seeds OUT_DIR REPO_DIR\n");
    return 2;
  }
  const fs::path out = argv[1], repo = argv[2];
  // Generated patterns only: the fixtures fall back to them without a data folder.
  setenv("LOUPE_DATA_DIR", "/nonexistent/loupe-fuzz-seeds", 1);

  // image: every format and depth the decoder reads, small.
  int n = 0;
  for (const int channels : {1, 3, 4}) {
    for (const auto& ext : {".png", ".jpg", ".bmp", ".tif"}) {
      if (channels == 4 && std::string(ext) == ".jpg") continue;
      write(out / "image", "pattern" + std::to_string(n++) + ext, test::encode(test::make_pattern(17, 11, channels), ext));
    }
  }
  write(out / "image", "pattern16.png", test::encode(test::make_pattern(9, 7, 1, PixelDepth::U16), ".png"));

  // dicom_file and dicom_attributes: the DICOM fixtures (every transfer syntax the tests write,
  // JPEG 2000 and multi-frame files included), as files and as what the page hands the core
  // (attributes + the pixel data of the fixture's frame: a JPEG 2000 codestream goes to OpenJPEG).
  const fs::path scratch = fs::temp_directory_path() / ("loupe-fuzz-dicom-" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  for (const auto& fixture : test::write_dicom_fixtures(scratch.string())) {
    const std::vector<uint8_t> bytes = read(fixture.path);
    write(out / "dicom_file", fixture.name, bytes);
    try {
      const DicomPixels pixels = read_dicom(bytes.data(), bytes.size(), {}, fixture.frame);
      write(out / "dicom_attributes", fixture.frame == 0 ? fixture.name : fixture.name + ".frame" + std::to_string(fixture.frame),
            fuzz::pack_dicom_attributes(dicom_pixels_to_json(pixels).dump(), pixels.pixel_data));
    } catch (const Error&) {
      // the fixtures that are meant to fail have no attributes to hand over
    }
  }
  fs::remove_all(scratch);

  // model_card and preprocess_spec: the shipped models' cards and their preprocess entries.
  for (const auto& entry : fs::directory_iterator(repo / "models" / "shipped")) {
    if (entry.path().extension() != ".json" || entry.path().filename() == "models.json") continue;
    const std::vector<uint8_t> bytes = read(entry.path());
    write(out / "model_card", entry.path().filename().string(), bytes);
    const nlohmann::json card = nlohmann::json::parse(bytes.begin(), bytes.end());
    write_text(out / "preprocess_spec", entry.path().filename().string(), card.at("preprocess").dump());
  }
  write_text(out / "preprocess_spec", "imagenet.json", PreprocessSpec::imagenet(32).to_json().dump());

  // train_config: the repository's configs.
  for (const auto& folder : {repo / "models" / "configs", repo / "models" / "configs" / "smoke"}) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      if (entry.path().extension() == ".json") write(out / "train_config", entry.path().filename().string(), read(entry.path()));
    }
  }

  // manifest: the CSV layouts read_manifest takes.
  write_text(out / "manifest", "basic.csv", "path,label\nimages/a.png,normal\nimages/b.png,pneumonia\n");
  write_text(out / "manifest", "split.csv",
             "label,path,split\nnormal,\"images/x,1.png\",train\npneumonia,images/y.png,val\nnormal,/abs/z.png,test\n");
  write_text(out / "manifest", "crlf.csv", "Path,Label,Split\r\na.png,one,train\r\nb.png,two,test\r\n");

  // npz and tflite: the binary fixtures of the native tests.
  fs::create_directories(out / "npz");
  test::write_npz(out / "npz" / "tiny.npz");
  write(out / "tflite", "tiny.tflite", test::tiny_tflite());

  for (const auto& target : fs::directory_iterator(out)) {
    size_t files = 0;
    for ([[maybe_unused]] const auto& f : fs::directory_iterator(target)) ++files;
    std::printf("%s: %zu seeds\n", target.path().filename().c_str(), files);
  }
  return 0;
}
