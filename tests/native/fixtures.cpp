#include "fixtures.h"

#include <torch/torch.h>

#include <fstream>
#include <random>
#include <stdexcept>

#include "loupe/models/zoo.h"

namespace loupe::test {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "loupe-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

Image shape_image(int width, int height, int channels, int cls, uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + static_cast<uint64_t>(cls));
  Image img;
  img.width = width;
  img.height = height;
  img.channels = channels;
  img.data.resize(static_cast<size_t>(width) * height * channels);
  const int cx = width / 4 + static_cast<int>(rng() % static_cast<uint64_t>(width / 2 + 1));
  const int cy = height / 4 + static_cast<int>(rng() % static_cast<uint64_t>(height / 2 + 1));
  const int r = std::max(2, std::min(width, height) / 5);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      int v = 100 + static_cast<int>(rng() % 40);
      switch (cls % 4) {
        case 0: if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r) v = 235; break;
        case 1: if (std::abs(x - cx) < r && std::abs(y - cy) < r) v = 15; break;
        case 2: if ((y / 3) % 2 == 0) v += 80; break;
        default: if ((x / 3) % 2 == 0) v += 80; break;
      }
      for (int c = 0; c < channels; ++c) {
        img.data[(static_cast<size_t>(y) * width + x) * channels + c] = static_cast<uint8_t>(std::min(255, v + c * 5));
      }
    }
  }
  return img;
}

void write_shapes_dataset(const std::filesystem::path& root, const std::vector<std::string>& classes, int per_class,
                          int size, int channels) {
  for (size_t c = 0; c < classes.size(); ++c) {
    std::filesystem::create_directories(root / classes[c]);
    for (int i = 0; i < per_class; ++i) {
      const auto png = encode_png(shape_image(size, size, channels, static_cast<int>(c), static_cast<uint64_t>(i)));
      std::ofstream out(root / classes[c] / (std::to_string(i) + ".png"), std::ios::binary);
      out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
    }
  }
}

std::shared_ptr<models::Classifier> seeded_model(const std::string& architecture, int num_classes, int input_size,
                                                 uint64_t seed) {
  torch::manual_seed(seed);
  models::ModelConfig config;
  config.architecture = architecture;
  config.num_classes = num_classes;
  config.input_size = input_size;
  auto model = models::create_model(config);
  model->eval();
  return model;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace loupe::test
