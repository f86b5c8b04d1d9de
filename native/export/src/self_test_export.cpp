// The self-test an export writes into the card (onnx_export.h make_self_test, shared/self_test.h):
// LibTorch's outputs for the synthetic images, so that every runtime that opens the file can be
// held to what training computed.
#include <torch/torch.h>


#include "loupe/error.h"
#include "loupe/export/onnx_export.h"
#include "loupe/inference/sha256.h"
#include "onnx_graph.h"

namespace loupe::exporter {

SelfTest make_self_test(models::Classifier& model, const ModelCard& card, const ExportOptions& options) {
  SelfTest test;
  test.seed = options.self_test_seed;
  test.channels = card.input_channels;
  test.images = default_self_test_sizes(card.input_width, card.input_height);
  test.absolute_tolerance = options.self_test_absolute_tolerance;
  test.relative_tolerance = options.self_test_relative_tolerance;
  std::vector<std::string> names{"logits"};
  if (card.has_output("probabilities")) names.push_back("probabilities");
  if (card.ood) names.push_back(card.ood->output);
  std::optional<MahalanobisFit> ood;
  if (options.ood) ood = options.ood->fit;

  detail::EvalModeGuard eval(model);
  torch::NoGradGuard no_grad;
  const auto& params = model.parameters();
  const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  Tensor input = self_test_input(test, card.preprocess);
  const torch::Tensor x = torch::from_blob(input.data.data(), input.shape, torch::kFloat32).to(device).clone();
  const auto reference = reference_outputs(model, x, names, options.temperature, ood);
  for (const std::string& name : names) {
    const torch::Tensor value = reference.at(name).to(torch::kCPU, torch::kFloat32).contiguous();
    SelfTestOutput out;
    out.shape = value.sizes().vec();
    const float* data = value.data_ptr<float>();
    out.values.assign(data, data + value.numel());  // float32 widened: exact in JSON and back
    test.outputs[name] = std::move(out);
  }
  test.sha256 = inference::sha256_hex(self_test_digest_text(test));
  return test;
}

}  // namespace loupe::exporter
