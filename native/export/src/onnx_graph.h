// The ONNX graph being exported (private to the exporter): helpers for errors and attributes, the
// values (each with its batch-of-one sample, so every emitter knows exact shapes), the graph
// builder, and the passes over the finished graph (onnx_graph_passes.cpp).
#pragma once

#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "loupe/error.h"
#include "loupe/export/ood_fit.h"

namespace loupe::exporter::detail {

namespace nn = torch::nn;

// [SECTION] Helpers

// Restores the model's train/eval mode on scope exit.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(nn::Module& module) : module_(module), was_training_(module.is_training()) { module.eval(); }
  ~EvalModeGuard() { module_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  nn::Module& module_;
  bool was_training_;
};

[[noreturn]] inline void fail(const std::string& message) {
  throw Error(ErrorCode::InvalidArgument, "ONNX export: " + message);
}

inline std::string at_path(const std::string& path) { return path.empty() ? std::string("the model") : "'" + path + "'"; }

// LibTorch 1.x options hold c10::variant, 2.x std::variant: `using std::get_if` plus argument-
// dependent lookup picks whichever get_if belongs to the variant type.
template <typename T, typename Variant>
const T* variant_get_if(const Variant& v) {
  using std::get_if;
  return get_if<T>(&v);
}

// "torch::nn::TanhImpl" -> "torch::nn::Tanh", "loupe::models::HardswishImpl" -> "loupe::models::Hardswish".
inline std::string module_type_name(const nn::Module& module) {
  std::string name = module.name();
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  return name;
}

inline void attr_int(onnx::NodeProto& node, const std::string& name, int64_t value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

inline void attr_float(onnx::NodeProto& node, const std::string& name, float value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

inline void attr_ints(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

inline float float_attr_or(const onnx::NodeProto& node, const std::string& name, float fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.f();
  }
  return fallback;
}

inline std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// [SECTION] GraphBuilder

// A value in the graph being built, with what it holds for a batch of one image at the export input
// size (LibTorch's own modules compute it), so that every emitter knows its exact shapes.
struct Value {
  std::string name;
  torch::Tensor sample;
};

class GraphBuilder {
 public:
  explicit GraphBuilder(int opset) : opset_(opset) {}
  int opset() const { return opset_; }

  // A fresh value name, `hint` when it is still free.
  std::string value_name(const std::string& hint) { return unique(values_, hint.empty() ? "value" : hint); }

  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name_hint) {
    nodes.emplace_back();
    onnx::NodeProto& n = nodes.back();
    n.set_op_type(op);
    n.set_name(unique(node_names_, name_hint.empty() ? op : name_hint));
    for (const auto& i : inputs) n.add_input(i);
    for (const auto& o : outputs) n.add_output(o);
    return n;
  }

  // One node with one fresh output named after `path`; returns the output's name.
  std::string op(const std::string& op_type, const std::vector<std::string>& inputs, const std::string& path,
                 const std::function<void(onnx::NodeProto&)>& set_attributes = {}) {
    const std::string out = value_name(path);
    onnx::NodeProto& n = node(op_type, inputs, {out}, path);
    if (set_attributes) set_attributes(n);
    return out;
  }

  // An initializer holding `tensor` (float32 or int64); returns its (unique) name.
  std::string initializer(const std::string& hint, const torch::Tensor& tensor) {
    const std::string name = value_name(hint);
    torch::Tensor t = tensor.detach().to(torch::kCPU);
    t = t.is_floating_point() ? t.to(torch::kFloat32).contiguous() : t.to(torch::kInt64).contiguous();
    index_[name] = initializers.size();
    initializers.emplace_back(name, t);
    return name;
  }

  std::string int64s(const std::vector<int64_t>& values) {
    std::string key = "i64";
    for (int64_t v : values) key += ":" + std::to_string(v);
    auto it = constants_.find(key);
    if (it != constants_.end()) return it->second;
    std::string hint = "const";
    for (int64_t v : values) hint += "_" + std::string(v < 0 ? "m" : "") + std::to_string(v < 0 ? -v : v);
    const std::string name = initializer(hint, torch::tensor(values, torch::kInt64));
    constants_[key] = name;
    return name;
  }

  std::string float_scalar(float value, const std::string& hint) {
    const std::string key = "f32:" + std::to_string(value);
    auto it = constants_.find(key);
    if (it != constants_.end()) return it->second;
    const std::string name = initializer(hint, torch::scalar_tensor(value, torch::kFloat32));
    constants_[key] = name;
    return name;
  }

  bool is_initializer(const std::string& name) const { return index_.count(name) != 0; }
  torch::Tensor& tensor(const std::string& name) { return initializers.at(index_.at(name)).second; }

  std::vector<onnx::NodeProto> nodes;
  std::vector<std::pair<std::string, torch::Tensor>> initializers;  // in creation order

 private:
  static std::string unique(std::set<std::string>& used, const std::string& hint) {
    std::string name = hint;
    for (int i = 1; !used.insert(name).second; ++i) name = hint + "_" + std::to_string(i);
    return name;
  }

  int opset_;
  std::set<std::string> values_, node_names_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> constants_;
};

// [SECTION] Passes (onnx_graph_passes.cpp)

// Conv -> BatchNormalization (the conv's output used by nothing else) becomes one Conv with
// W' = W * s and b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps), computed in double.
void fold_batch_norms(GraphBuilder& g);

// Appends the nodes of the "ood_distance" output (onnx_export.h) on `embedding` [batch, D]; returns
// the name of the [batch] distance value.
std::string append_ood_nodes(GraphBuilder& g, const std::string& embedding, const MahalanobisFit& fit);

}  // namespace loupe::exporter::detail
