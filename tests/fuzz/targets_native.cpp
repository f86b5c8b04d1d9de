// The native-only fuzz targets (targets.h): DCMTK's DICOM reading, the training config, CSV
// manifests, .npz arrays and TFLite weights.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "loupe/data/dataset.h"
#include "loupe/dicom.h"
#include "loupe/error.h"
#include "loupe/models/pretrained.h"
#include "loupe/train/train_config.h"
#include "targets.h"

namespace loupe::fuzz {

namespace {

template <typename F>
void expecting_loupe_errors(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

// The readers take paths: the input goes to a file of this process's own.
std::string as_file(const uint8_t* data, size_t size, const char* extension) {
  const std::string path = "/tmp/loupe-fuzz-" + std::to_string(::getpid()) + extension;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                 static_cast<std::streamsize>(size));
  return path;
}

}  // namespace

void dicom_file(const uint8_t* data, size_t size) {
  expecting_loupe_errors([&] {
    DecodeLimits limits;
    limits.max_pixels = 4'000'000;
    (void)dicom_to_image(read_dicom(data, size, limits), limits);
  });
}

void train_config(const uint8_t* data, size_t size) {
  const nlohmann::json json = nlohmann::json::parse(data, data + size, nullptr, false);
  if (json.is_discarded()) return;
  expecting_loupe_errors([&] {
    const train::TrainConfig config = train::TrainConfig::from_json(json);
    (void)train::TrainConfig::from_json(config.to_json());  // what it writes (RUN/config.json) it reads back
  });
}

void manifest(const uint8_t* data, size_t size) {
  const std::string path = as_file(data, size, ".csv");
  expecting_loupe_errors([&] {
    data::LoadOptions options;
    options.check_headers = false;  // the rows name files that do not exist: the CSV is what is fuzzed
    (void)data::read_manifest(path, options);
  });
  std::remove(path.c_str());
}

void npz(const uint8_t* data, size_t size) {
  const std::string path = as_file(data, size, ".npz");
  expecting_loupe_errors([&] { (void)data::read_npz(path); });
  std::remove(path.c_str());
}

void tflite(const uint8_t* data, size_t size) {
  expecting_loupe_errors([&] { (void)models::read_tflite(data, size); });
}

const std::vector<Target>& native_targets() {
  static const std::vector<Target> targets = {
      {"dicom_file", dicom_file}, {"train_config", train_config}, {"manifest", manifest},
      {"npz", npz},               {"tflite", tflite},
  };
  return targets;
}

}  // namespace loupe::fuzz
