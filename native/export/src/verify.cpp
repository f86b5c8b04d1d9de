// Parity of an exported model: ONNX Runtime against LibTorch on the same inputs.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <limits>

#include "loupe/error.h"
#include "loupe/export/onnx_export.h"

namespace loupe::exporter {

namespace {

Tensor to_loupe(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  Tensor out;
  out.shape = c.sizes().vec();
  out.data.resize(static_cast<size_t>(c.numel()));
  if (c.numel() > 0) std::memcpy(out.data.data(), c.data_ptr<float>(), out.data.size() * sizeof(float));
  return out;
}

torch::Tensor to_torch(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).clone();
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
  return "[" + s + "]";
}

bool absolute_bound(const std::string& output) { return output == "logits" || output == "probabilities"; }

}  // namespace

double ParityReport::max_logits_diff() const {
  for (const auto& o : outputs) {
    if (o.output == "logits") return o.max_abs_diff;
  }
  return 0.0;
}

std::string ParityReport::to_text() const {
  std::string text;
  char line[256];
  for (const auto& o : outputs) {
    std::snprintf(line, sizeof line, "  %-14s max |ORT - LibTorch| %.3g  (max |LibTorch| %.3g)  %s\n", o.output.c_str(),
                  o.max_abs_diff, o.max_abs_reference, o.passed ? "ok" : "FAILED");
    text += line;
  }
  std::string compared;
  for (const auto& i : inputs) compared += (compared.empty() ? "" : ", ") + i;
  return "parity " + std::string(passed ? "passed" : "FAILED") + " on " + compared + "\n" + text;
}

nlohmann::json ParityReport::to_json() const {
  nlohmann::json outs = nlohmann::json::array();
  for (const auto& o : outputs) {
    outs.push_back({{"output", o.output}, {"max_abs_diff", o.max_abs_diff}, {"max_abs_reference", o.max_abs_reference},
                    {"passed", o.passed}});
  }
  return {{"passed", passed}, {"inputs", inputs}, {"outputs", outs}};
}

std::map<std::string, torch::Tensor> reference_outputs(models::Classifier& model, const torch::Tensor& x,
                                                       const std::vector<std::string>& names, double temperature,
                                                       const std::optional<MahalanobisFit>& ood) {
  const auto wants = [&](const char* name) { return std::find(names.begin(), names.end(), name) != names.end(); };
  std::map<std::string, torch::Tensor> reference;
  const torch::Tensor logits = model.forward(x);
  reference["logits"] = logits;
  if (wants("probabilities")) {
    const torch::Tensor scores = temperature > 0 ? logits / static_cast<float>(temperature) : logits;
    reference["probabilities"] = logits.size(1) == 1 ? torch::sigmoid(scores) : torch::softmax(scores, 1);
  }
  if (wants("embedding") || wants("ood_distance")) {
    const torch::Tensor embedding = model.embed(x);
    reference["embedding"] = embedding;
    if (wants("ood_distance")) {
      if (!ood) throw Error(ErrorCode::InvalidArgument, "reference_outputs: 'ood_distance' needs the out-of-distribution fit");
      reference["ood_distance"] = mahalanobis_distance(*ood, embedding);
    }
  }
  if (wants("cam") || wants("feature_map")) {
    const torch::Tensor fm = model.feature_map(x);
    reference["feature_map"] = fm;
    if (wants("cam")) reference["cam"] = model.class_activation_maps(fm);
  }
  return reference;
}

ParityReport verify_onnx(models::Classifier& model, const inference::OrtSession& session, const ParityOptions& options) {
  const bool was_training = model.is_training();
  model.eval();
  struct Restore {
    models::Classifier& m;
    bool training;
    ~Restore() { m.train(training); }
  } restore{model, was_training};
  torch::NoGradGuard no_grad;

  const auto& params = model.parameters();
  const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  const auto& config = model.config();
  const std::vector<int64_t>& declared = session.input_shape();
  if (declared.size() != 4 || declared[1] != config.in_channels || declared[2] < 1 || declared[3] < 1) {
    throw Error(ErrorCode::InvalidArgument, "verify_onnx: the ONNX input " + shape_text(declared) +
                                                " is not [batch, " + std::to_string(config.in_channels) + ", H, W]");
  }
  std::vector<torch::Tensor> inputs;
  std::vector<std::string> described;
  auto generator = at::detail::createCPUGenerator(options.seed);
  for (int64_t n : options.batch_sizes) {
    inputs.push_back(torch::randn({n, declared[1], declared[2], declared[3]}, generator,
                                  torch::TensorOptions(torch::kFloat32)));
    described.push_back("random " + shape_text(inputs.back().sizes().vec()));
  }
  for (const auto& extra : options.extra_inputs) {
    inputs.push_back(extra);
    described.push_back("images " + shape_text(extra.sizes().vec()));
  }

  const std::vector<std::string> known{"logits", "probabilities", "embedding", "cam", "feature_map", "ood_distance"};
  std::vector<std::string> compared;
  for (const auto& name : known) {
    if (std::find(session.output_names().begin(), session.output_names().end(), name) != session.output_names().end()) {
      compared.push_back(name);
    }
  }
  const auto wants = [&](const char* name) { return std::find(compared.begin(), compared.end(), name) != compared.end(); };
  if (!wants("logits")) throw Error(ErrorCode::InvalidArgument, "verify_onnx: the ONNX model has no 'logits' output");
  if (wants("ood_distance") && !options.ood) {
    throw Error(ErrorCode::InvalidArgument,
                "verify_onnx: the ONNX model has an 'ood_distance' output: give its fit (ParityOptions::ood)");
  }
  if (options.temperature < 0 || !std::isfinite(options.temperature)) {
    throw Error(ErrorCode::InvalidArgument, "verify_onnx: the temperature must be finite and >= 0 (0: none)");
  }

  ParityReport report;
  report.inputs = described;
  for (const auto& name : compared) report.outputs.push_back({name, 0.0, 0.0, true});
  for (const auto& input : inputs) {
    const auto reference = reference_outputs(model, input.to(device, torch::kFloat32), compared, options.temperature, options.ood);
    const auto ort = session.run(to_loupe(input), compared);
    for (auto& o : report.outputs) {
      const torch::Tensor ref = reference.at(o.output).to(torch::kCPU, torch::kFloat32);
      const torch::Tensor got = to_torch(ort.at(o.output));
      if (!ref.sizes().equals(got.sizes())) {
        o.passed = false;
        o.max_abs_diff = std::numeric_limits<double>::infinity();
        continue;
      }
      o.max_abs_diff = std::max(o.max_abs_diff, (ref - got).abs().max().item<double>());
      o.max_abs_reference = std::max(o.max_abs_reference, ref.abs().max().item<double>());
    }
  }
  report.passed = true;
  for (auto& o : report.outputs) {
    const double bound =
        absolute_bound(o.output) ? options.tolerance : options.feature_tolerance * std::max(1.0, o.max_abs_reference);
    o.passed = o.passed && std::isfinite(o.max_abs_diff) && o.max_abs_diff <= bound;
    report.passed = report.passed && o.passed;
  }
  return report;
}

}  // namespace loupe::exporter
