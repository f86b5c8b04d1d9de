// ONNX Runtime sessions through its C++ API (headers of API version <= the library's; see
// scripts/setup-onnxruntime). One Ort::Env per process, created on first use.
#include "loupe/inference/ort_session.h"

#include <onnxruntime_cxx_api.h>

#include <cstring>

#include "loupe/error.h"

namespace loupe::inference {

namespace {

Ort::Env& environment() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "loupe");
  return env;
}

[[noreturn]] void ort_failed(const std::string& what, const Ort::Exception& e) {
  throw Error(ErrorCode::InvalidArgument, what + ": ONNX Runtime: " + e.what());
}

Ort::SessionOptions session_options(const OrtSessionOptions& options) {
  Ort::SessionOptions so;
  if (options.threads > 0) so.SetIntraOpNumThreads(options.threads);
  so.SetInterOpNumThreads(1);
  so.SetGraphOptimizationLevel(options.optimize ? GraphOptimizationLevel::ORT_ENABLE_ALL
                                                : GraphOptimizationLevel::ORT_DISABLE_ALL);
  return so;
}

}  // namespace

struct OrtSession::Impl {
  Ort::Session session{nullptr};
  std::vector<std::string> inputs, outputs;
  std::vector<int64_t> input_shape;
  std::string what;

  void read_names() {
    Ort::AllocatorWithDefaultOptions allocator;
    for (size_t i = 0; i < session.GetInputCount(); ++i) inputs.emplace_back(session.GetInputNameAllocated(i, allocator).get());
    for (size_t i = 0; i < session.GetOutputCount(); ++i) {
      outputs.emplace_back(session.GetOutputNameAllocated(i, allocator).get());
    }
    if (inputs.empty()) throw Error(ErrorCode::InvalidArgument, what + ": the model has no inputs");
    input_shape = session.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape();
  }
};

OrtSession::OrtSession() : impl_(std::make_unique<Impl>()) {}

OrtSession::OrtSession(const std::string& path, const OrtSessionOptions& options) : OrtSession() {
  impl_->what = path;
  try {
    impl_->session = Ort::Session(environment(), path.c_str(), session_options(options));
    impl_->read_names();
  } catch (const Ort::Exception& e) {
    ort_failed(path, e);
  }
}

OrtSession OrtSession::from_bytes(const std::string& bytes, const OrtSessionOptions& options) {
  OrtSession s;
  s.impl_->what = "ONNX model in memory";
  try {
    s.impl_->session = Ort::Session(environment(), bytes.data(), bytes.size(), session_options(options));
    s.impl_->read_names();
  } catch (const Ort::Exception& e) {
    ort_failed(s.impl_->what, e);
  }
  return s;
}

OrtSession::~OrtSession() = default;
OrtSession::OrtSession(OrtSession&&) noexcept = default;
OrtSession& OrtSession::operator=(OrtSession&&) noexcept = default;

const std::vector<std::string>& OrtSession::input_names() const { return impl_->inputs; }
const std::vector<std::string>& OrtSession::output_names() const { return impl_->outputs; }
const std::vector<int64_t>& OrtSession::input_shape() const { return impl_->input_shape; }

std::map<std::string, Tensor> OrtSession::run(const Tensor& input, const std::vector<std::string>& outputs) const {
  if (input.data.size() != input.element_count()) {
    throw Error(ErrorCode::InvalidArgument, impl_->what + ": input tensor holds " + std::to_string(input.data.size()) +
                                                " values for its shape of " + std::to_string(input.element_count()));
  }
  const std::vector<std::string>& names = outputs.empty() ? impl_->outputs : outputs;
  std::vector<const char*> output_names;
  for (const auto& n : names) output_names.push_back(n.c_str());
  const char* input_name = impl_->inputs.front().c_str();
  try {
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    // ONNX Runtime only reads the input; its API takes a non-const pointer.
    Ort::Value in = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(input.data.data()), input.data.size(),
                                                   input.shape.data(), input.shape.size());
    std::vector<Ort::Value> results = impl_->session.Run(Ort::RunOptions{nullptr}, &input_name, &in, 1,
                                                         output_names.data(), output_names.size());
    std::map<std::string, Tensor> out;
    for (size_t i = 0; i < results.size(); ++i) {
      const auto info = results[i].GetTensorTypeAndShapeInfo();
      if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        throw Error(ErrorCode::InvalidArgument, impl_->what + ": output '" + names[i] + "' is not float32");
      }
      Tensor t;
      t.shape = info.GetShape();
      const size_t count = info.GetElementCount();
      t.data.resize(count);
      if (count > 0) std::memcpy(t.data.data(), results[i].GetTensorData<float>(), count * sizeof(float));
      out.emplace(names[i], std::move(t));
    }
    return out;
  } catch (const Ort::Exception& e) {
    ort_failed(impl_->what, e);
  }
}

std::string OrtSession::runtime_version() { return OrtGetApiBase()->GetVersionString(); }

}  // namespace loupe::inference
