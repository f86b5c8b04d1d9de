// Runs the shared core's decode + preprocess on a list of images and writes each tensor as raw
// float32, so the same images can be compared across the native and the wasm build
// (tests/parity/parity.test.mjs drives both builds of this one source file).
//
//   preprocess_dump --make-fixtures DIR          write generated fixture images into DIR
//   preprocess_dump --spec JSON --out DIR --list FILE
//       FILE lists one image path per line; writes DIR/<line>.f32 and prints one JSON line per image:
//       {"index": 0, "path": "...", "shape": [1,3,224,224]} or {"index": 1, "path": "...", "error": "..."}
#include <cstdio>
#include <fstream>
#include <iostream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "loupe/loupe.h"

namespace {

loupe::Image pattern(int width, int height, int channels, loupe::PixelDepth depth) {
  loupe::Image img;
  img.width = width;
  img.height = height;
  img.channels = channels;
  img.depth = depth;
  img.data.resize(img.row_bytes() * static_cast<size_t>(height));
  const uint32_t max = depth == loupe::PixelDepth::U16 ? 65535 : 255;
  uint32_t state = 12345;  // LCG noise on top of gradients: resampling then has real work to do
  for (size_t i = 0; i < img.data.size() / img.bytes_per_sample(); ++i) {
    state = state * 1664525u + 1013904223u;
    const size_t pixel = i / channels;
    const uint32_t x = pixel % width, y = pixel / width;
    const uint32_t v = ((x * 7 + y * 3 + (i % channels) * 50) * max / (width * 7 + height * 3 + 150) +
                        (state >> 24) % 32 * (max / 255)) % (max + 1);
    if (depth == loupe::PixelDepth::U16) reinterpret_cast<uint16_t*>(img.data.data())[i] = uint16_t(v);
    else img.data[i] = uint8_t(v);
  }
  return img;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw loupe::Error(loupe::ErrorCode::Io, path + ": write failed");
}

void make_fixtures(const std::string& dir) {
  using loupe::PixelDepth;
  struct Fixture { const char* name; int w, h, channels; PixelDepth depth; };
  const Fixture pngs[] = {{"gray8_300x200.png", 300, 200, 1, PixelDepth::U8},
                          {"rgb8_257x311.png", 257, 311, 3, PixelDepth::U8},
                          {"rgba8_640x480.png", 640, 480, 4, PixelDepth::U8},
                          {"gray16_512x512.png", 512, 512, 1, PixelDepth::U16},
                          {"rgb16_100x90.png", 100, 90, 3, PixelDepth::U16}};
  for (const auto& f : pngs) write_bytes(dir + "/" + f.name, loupe::encode_png(pattern(f.w, f.h, f.channels, f.depth)));
  // JPEG and BMP through OpenCV's encoders (channel order does not matter for a pattern).
  const loupe::Image rgb = pattern(401, 333, 3, PixelDepth::U8);
  const cv::Mat mat(rgb.height, rgb.width, CV_8UC3, const_cast<uint8_t*>(rgb.data.data()));
  std::vector<uint8_t> bytes;
  cv::imencode(".jpg", mat, bytes, {cv::IMWRITE_JPEG_QUALITY, 90});
  write_bytes(dir + "/rgb_401x333.jpg", bytes);
  cv::imencode(".bmp", mat, bytes);
  write_bytes(dir + "/rgb_401x333.bmp", bytes);
  const loupe::Image gray = pattern(640, 640, 1, PixelDepth::U8);
  cv::imencode(".jpg", cv::Mat(gray.height, gray.width, CV_8UC1, const_cast<uint8_t*>(gray.data.data())), bytes);
  write_bytes(dir + "/gray_640x640.jpg", bytes);
}

std::string json_escape(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "--make-fixtures") {
      make_fixtures(args[1]);
      return 0;
    }
    std::string spec_text, out_dir, list_path;
    for (size_t i = 0; i + 1 < args.size(); i += 2) {
      if (args[i] == "--spec") spec_text = args[i + 1];
      else if (args[i] == "--out") out_dir = args[i + 1];
      else if (args[i] == "--list") list_path = args[i + 1];
      else throw loupe::Error(loupe::ErrorCode::InvalidArgument, "unknown option " + args[i]);
    }
    if (spec_text.empty() || out_dir.empty() || list_path.empty()) {
      std::fprintf(stderr, "usage: preprocess_dump --spec JSON --out DIR --list FILE | --make-fixtures DIR\n");
      return 2;
    }
    const loupe::PreprocessSpec spec = loupe::PreprocessSpec::from_json(nlohmann::json::parse(spec_text));
    std::ifstream list(list_path);
    std::string path;
    for (int index = 0; std::getline(list, path); ++index) {
      try {
        const loupe::Tensor t = loupe::preprocess(loupe::decode_image_file(path), spec);
        std::ofstream out(out_dir + "/" + std::to_string(index) + ".f32", std::ios::binary);
        out.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size() * 4));
        std::printf("{\"index\": %d, \"path\": %s, \"shape\": %s}\n", index, json_escape(path).c_str(),
                    nlohmann::json(t.shape).dump().c_str());
      } catch (const loupe::Error& e) {
        std::printf("{\"index\": %d, \"path\": %s, \"error\": %s}\n", index, json_escape(path).c_str(),
                    json_escape(e.what()).c_str());
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "preprocess_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}
