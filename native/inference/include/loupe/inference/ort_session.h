// Native inference with ONNX Runtime (the library of the npm package onnxruntime-node, see
// scripts/setup-onnxruntime), on the shared core's loupe::Tensor: no LibTorch needed.
//
//   loupe::inference::OrtSession session("model.onnx");            // or OrtSession::from_bytes(...)
//   loupe::Tensor x = loupe::preprocess(image, card.preprocess);   // {1, C, H, W}; N images: {N, C, H, W}
//   auto out = session.run(x, {"logits", "probabilities"});        // name -> tensor, {N, classes}
//
// run() is const and thread-safe (ONNX Runtime allows concurrent Run calls on one session).
// Errors from ONNX Runtime become loupe::Error(InvalidArgument) with ONNX Runtime's message.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loupe/preprocess.h"

namespace loupe::inference {

struct OrtSessionOptions {
  int threads = 0;        // intra-op threads; 0 = ONNX Runtime's default (one per physical core)
  bool optimize = true;   // ORT_ENABLE_ALL graph optimisations (what the browser runs too)
};

class OrtSession {
 public:
  explicit OrtSession(const std::string& path, const OrtSessionOptions& options = {});
  static OrtSession from_bytes(const std::string& bytes, const OrtSessionOptions& options = {});
  ~OrtSession();
  OrtSession(OrtSession&&) noexcept;
  OrtSession& operator=(OrtSession&&) noexcept;
  OrtSession(const OrtSession&) = delete;
  OrtSession& operator=(const OrtSession&) = delete;

  const std::vector<std::string>& input_names() const;
  const std::vector<std::string>& output_names() const;
  // Shape of the first input as declared by the model; -1 for a symbolic dimension (the batch).
  const std::vector<int64_t>& input_shape() const;

  // Feeds `input` (float32, any shape the model accepts) to the model's first input and returns
  // the requested outputs (all outputs when `outputs` is empty), as float32 tensors.
  std::map<std::string, Tensor> run(const Tensor& input, const std::vector<std::string>& outputs = {}) const;

  // ONNX Runtime's version string, e.g. "1.30.0".
  static std::string runtime_version();

 private:
  struct Impl;
  OrtSession();
  std::unique_ptr<Impl> impl_;
};

}  // namespace loupe::inference
