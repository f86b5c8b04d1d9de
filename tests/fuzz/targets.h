// The fuzz targets: one function per kind of input Loupe reads from a user's machine. Each feeds
// the bytes to Loupe's own reader the way the apps do and accepts exactly one kind of failure,
// loupe::Error (the message a user sees). Anything else escaping (another exception, a crash, a
// sanitizer report, a hang) is a finding.
//
// libFuzzer runs them through fuzz_main.cpp (scripts/fuzz); the test suites replay the committed
// regression inputs (regressions/<target>/) and a few generated ones through the same functions
// (tests/core/test_fuzz_targets.cpp natively and as wasm; tests/native/ for the native-only ones).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loupe::fuzz {

// Shared core (native and wasm).
void image(const uint8_t* data, size_t size);             // decode_image with the decode limits, then preprocess
void dicom_attributes(const uint8_t* data, size_t size);  // the browser's DICOM path: attribute JSON + pixel bytes
void onnx_model(const uint8_t* data, size_t size);        // read_onnx_model (protobuf walker + card) and describe()
void model_card(const uint8_t* data, size_t size);        // ModelCard::from_json + to_json round trip
void preprocess_spec(const uint8_t* data, size_t size);   // PreprocessSpec::from_json, then preprocess a small image
// Native only (DCMTK, libzip, flatbuffers, the training config).
void dicom_file(const uint8_t* data, size_t size);        // read_dicom (DCMTK) + dicom_to_image
void train_config(const uint8_t* data, size_t size);      // TrainConfig::from_json
void manifest(const uint8_t* data, size_t size);          // read_manifest on the bytes as a CSV file
void npz(const uint8_t* data, size_t size);               // read_npz on the bytes as an .npz file
void tflite(const uint8_t* data, size_t size);            // read_tflite

struct Target {
  const char* name;
  void (*run)(const uint8_t*, size_t);
};
// The targets this build has (the native-only ones only where their libraries are linked).
const std::vector<Target>& core_targets();
const std::vector<Target>& native_targets();

// dicom_attributes' input layout, for seeds: 4 bytes little-endian JSON length, JSON, pixel bytes.
std::vector<uint8_t> pack_dicom_attributes(const std::string& json, const std::vector<uint8_t>& pixels);

}  // namespace loupe::fuzz
