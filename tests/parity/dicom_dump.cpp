// DICOM on both sides of the page: what the native reader (DCMTK) extracts and decodes, and what
// the shared pixel math makes of what the page parsed (web/dicom.mjs). tests/parity/dicom.test.mjs
// drives it natively and, when the web build has it, as wasm under Node.
//
//   dicom_dump --make-fixtures DIR      (native) write DICOM fixtures made from real images into
//                                       DIR; one JSON line per file: {"name", "path", "fails", ...}
//   dicom_dump --read LIST --out DIR    (native) LIST: one DICOM path per line, optionally followed
//       by a tab and the frame to read (0-based). Per file, one JSON
//       line {"index", "path", "attributes", "image": {width, height, channels, bits}} (+ DIR/<index>.pixels:
//       the extracted pixel data, DIR/<index>.image: the decoded samples) or {"index", "path", "code", "error"}
//   dicom_dump --from-page LIST --out DIR
//       LIST: "ATTRIBUTES.json<TAB>PIXELS.bin" per line (what the page parsed); the same JSON lines
//       from dicom_pixels_from_json + dicom_to_image, DIR/<index>.image.
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "loupe/dicom.h"
#include "loupe/image.h"

#ifdef LOUPE_DICOM_FIXTURES
#include "../core/dicom_fixtures.h"
#endif

namespace {

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw loupe::Error(loupe::ErrorCode::Io, path + ": write failed");
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw loupe::Error(loupe::ErrorCode::Io, path + ": cannot open list");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

nlohmann::json image_json(const loupe::Image& image) {
  return {{"width", image.width}, {"height", image.height}, {"channels", image.channels},
          {"bits", image.depth == loupe::PixelDepth::U16 ? 16 : 8}};
}

nlohmann::json error_json(nlohmann::json line, const loupe::Error& e) {
  line["code"] = loupe::to_string(e.code());
  line["error"] = e.what();
  return line;
}

int usage() {
  std::cerr << "usage: dicom_dump --make-fixtures DIR | --read LIST --out DIR | --from-page LIST --out DIR\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "--make-fixtures") {
#ifdef LOUPE_DICOM_FIXTURES
      for (const auto& f : loupe::test::write_dicom_fixtures(args[1])) {
        std::cout << nlohmann::json{{"name", f.name},           {"path", f.path},
                                    {"source", f.source},       {"fails", f.fails},
                                    {"native_only", f.native_only}, {"lossy", f.tolerance > 0}, {"frame", f.frame},
                                    {"error_contains", f.error_contains}}
                         .dump()
                  << "\n";
      }
      std::cout << nlohmann::json{{"patient_values", {loupe::test::kFixturePatientName, loupe::test::kFixturePatientId,
                                                      loupe::test::kFixtureBirthDate}}}
                       .dump()
                << "\n";
      return 0;
#else
      std::cerr << "dicom_dump: --make-fixtures needs the native build (DCMTK writes the files)\n";
      return 2;
#endif
    }
    if (args.size() != 4 || args[2] != "--out") return usage();
    const std::string out_dir = args[3];
    const auto lines = read_lines(args[1]);
    if (args[0] == "--read") {
      for (size_t i = 0; i < lines.size(); ++i) {
        const size_t tab = lines[i].find('\t');
        const std::string path = lines[i].substr(0, tab);
        const int frame = tab == std::string::npos ? 0 : std::stoi(lines[i].substr(tab + 1));
        nlohmann::json line = {{"index", i}, {"path", path}};
        try {
          const auto bytes = loupe::read_file(path);
          const loupe::DicomPixels dicom = loupe::read_dicom(bytes.data(), bytes.size(), {}, frame);
          line["attributes"] = loupe::dicom_pixels_to_json(dicom);
          write_bytes(out_dir + "/" + std::to_string(i) + ".pixels", dicom.pixel_data);
          const loupe::Image image = loupe::dicom_to_image(dicom);
          line["image"] = image_json(image);
          write_bytes(out_dir + "/" + std::to_string(i) + ".image", image.data);
        } catch (const loupe::Error& e) {
          line = error_json(line, e);
        }
        std::cout << line.dump() << "\n";
      }
      return 0;
    }
    if (args[0] == "--from-page") {
      for (size_t i = 0; i < lines.size(); ++i) {
        const size_t tab = lines[i].find('\t');
        if (tab == std::string::npos) return usage();
        nlohmann::json line = {{"index", i}, {"path", lines[i].substr(0, tab)}};
        try {
          std::ifstream attributes_file(lines[i].substr(0, tab));
          const nlohmann::json attributes = nlohmann::json::parse(attributes_file);
          const auto pixels = loupe::read_file(lines[i].substr(tab + 1));
          const loupe::DicomPixels dicom = loupe::dicom_pixels_from_json(attributes, pixels.data(), pixels.size());
          const loupe::Image image = loupe::dicom_to_image(dicom);
          line["image"] = image_json(image);
          write_bytes(out_dir + "/" + std::to_string(i) + ".image", image.data);
        } catch (const loupe::Error& e) {
          line = error_json(line, e);
        }
        std::cout << line.dump() << "\n";
      }
      return 0;
    }
    return usage();
  } catch (const std::exception& e) {
    std::cerr << "dicom_dump: " << e.what() << "\n";
    return 1;
  }
}
