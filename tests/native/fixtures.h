// Generated data for the native suites: temporary folders and small labelled image sets whose
// classes are easy to tell apart (so a few epochs of training must beat chance).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loupe/image.h"

namespace loupe::models {
class Classifier;  // loupe/models/zoo.h (not included here: test files include LibTorch first)
}

namespace loupe::test {

struct TempDir {
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path path;
};

// An image of class `cls`: class 0 a bright disc, 1 a dark square, 2 horizontal stripes,
// 3 vertical stripes, ... on a noisy background; `seed` varies position and noise.
Image shape_image(int width, int height, int channels, int cls, uint64_t seed);

// root/<class>/<i>.png for each class, `per_class` images of side `size`.
void write_shapes_dataset(const std::filesystem::path& root, const std::vector<std::string>& classes, int per_class,
                          int size, int channels = 3);

// A model of the zoo with `seed`-initialised weights, in eval mode, for comparing layouts and
// precisions on the same weights.
std::shared_ptr<models::Classifier> seeded_model(const std::string& architecture, int num_classes, int input_size,
                                                 uint64_t seed);

// A whole file as text (logs, reports).
std::string read_text(const std::filesystem::path& path);

// The message of the loupe::Error that `fn` throws, or "no error".
std::string error_of(const std::function<void()>& fn);

}  // namespace loupe::test
