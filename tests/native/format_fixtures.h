// Small valid files of the binary formats Loupe reads natively, written by the tests (never data
// from ../shared/data): a MedMNIST-style .npz and a one-operator TFLite model. The native suites
// and the fuzzers' seed corpora (tests/fuzz/make_seeds.cpp) use them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace loupe::test {

// One .npy array of uint8 with `shape`.
std::vector<uint8_t> npy_u8(const std::vector<int64_t>& shape, const std::vector<uint8_t>& data);
// The same with the header's shape written as given ("(2, 12, 12)"), for damaged headers.
std::vector<uint8_t> npy_u8_with_shape(const std::string& shape, const std::vector<uint8_t>& data);

// A zip archive of the given entries (name, bytes). Returns the path.
std::string write_zip(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, std::vector<uint8_t>>>& entries);

// A MedMNIST-style .npz: 12x12 images, 2 classes, train/val/test of 10/4/6 images. Returns the path.
std::string write_npz(const std::filesystem::path& path);

// One CONV_2D (int8 per-channel weights [2, 1, 1, 3], int32 bias) on a uint8 input [1, 4, 4, 3],
// built with flatbuffers' generic builder (field ids of TFLite's schema.fbs).
std::vector<uint8_t> tiny_tflite();

}  // namespace loupe::test
