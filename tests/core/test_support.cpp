#include "test_support.h"

#include <algorithm>
#include <cstdlib>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <sys/stat.h>
#include <dirent.h>

#ifdef __EMSCRIPTEN__
#include <emscripten.h>
#endif

namespace loupe::test {

Image make_pattern(int width, int height, int channels, PixelDepth depth) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  image.depth = depth;
  image.data.resize(image.row_bytes() * static_cast<size_t>(height));
  const int max = depth == PixelDepth::U16 ? 65535 : 255;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        int v;
        if (c == 3) v = max - (x * max) / std::max(1, width - 1) / 2;                     // alpha ramp
        else if (((x / 4) + (y / 4)) % 2 == 0 && c == 0) v = max / 5;                       // checkerboard
        else v = ((x * (c + 1) + y * (3 - c)) * max) / std::max(1, (width + height) * 3);  // gradients
        v = std::min(max, std::max(0, v));
        const size_t i = (static_cast<size_t>(y) * width + x) * channels + c;
        if (depth == PixelDepth::U16) reinterpret_cast<uint16_t*>(image.data.data())[i] = static_cast<uint16_t>(v);
        else image.data[i] = static_cast<uint8_t>(v);
      }
    }
  }
  return image;
}

std::vector<uint8_t> encode(const Image& image, const std::string& extension, int jpeg_quality) {
  const int type = CV_MAKETYPE(image.depth == PixelDepth::U16 ? CV_16U : CV_8U, image.channels);
  const cv::Mat view(image.height, image.width, type, const_cast<uint8_t*>(image.data.data()));
  cv::Mat bgr;
  if (image.channels == 3) cv::cvtColor(view, bgr, cv::COLOR_RGB2BGR);
  else if (image.channels == 4) cv::cvtColor(view, bgr, cv::COLOR_RGBA2BGRA);
  else bgr = view;
  std::vector<uint8_t> bytes;
  if (!cv::imencode(extension, bgr, bytes, {cv::IMWRITE_JPEG_QUALITY, jpeg_quality})) {
    throw std::runtime_error("cannot encode " + extension);
  }
  return bytes;
}

std::string data_dir() {
  std::string dir;
#ifdef __EMSCRIPTEN__
  // Emscripten's getenv() does not see Node's environment.
  char* from_node = reinterpret_cast<char*>(EM_ASM_INT({
    const v = process.env.LOUPE_DATA_DIR;
    return v ? allocateUTF8(v) : 0;
  }));
  if (from_node) {
    dir = from_node;
    free(from_node);
  }
#else
  if (const char* env = std::getenv("LOUPE_DATA_DIR")) dir = env;
#endif
  if (dir.empty()) dir = LOUPE_DEFAULT_DATA_DIR;
  struct stat st {};
  return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) ? dir : std::string();
}

std::vector<std::string> data_files(const std::string& relative_folder, size_t count) {
  std::vector<std::string> files;
  const std::string root = data_dir();
  if (root.empty()) return files;
  const std::string folder = root + "/" + relative_folder;
  DIR* dir = opendir(folder.c_str());
  if (!dir) return files;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") files.push_back(folder + "/" + name);
  }
  closedir(dir);
  std::sort(files.begin(), files.end());
  if (files.size() > count) files.resize(count);
  return files;
}

uint32_t crc32(const uint8_t* data, size_t size) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

}  // namespace loupe::test
