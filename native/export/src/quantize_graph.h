// The int8 pass's view of an ONNX graph (private to native/export): helpers for nodes and
// initializers, the weighted ops it quantises, and their per-channel int8 weights, shared by the
// calibration (quantize_calibration.cpp) and the rewrite (quantize_qdq.cpp) so that both use the
// same rounded weights.
#pragma once

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "loupe/error.h"

namespace loupe::exporter::qdq {

[[noreturn]] inline void fail(const std::string& message) { throw Error(ErrorCode::InvalidArgument, "int8 quantisation: " + message); }

// A node's key in the plan: its name, or its first output for unnamed nodes (files from elsewhere).
inline std::string node_key(const onnx::NodeProto& node) {
  return !node.name().empty() ? node.name() : "#" + (node.output_size() > 0 ? node.output(0) : std::string());
}

inline const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

inline int64_t int_attribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->i() : fallback;
}

inline float float_attribute(const onnx::NodeProto& node, const std::string& name, float fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->f() : fallback;
}

// Everything the pass asks about the graph: initializers by name, producers and consumers.
struct GraphIndex {
  explicit GraphIndex(const onnx::GraphProto& g) : graph(g) {
    for (const auto& init : g.initializer()) initializers[init.name()] = &init;
    for (int i = 0; i < g.node_size(); ++i) {
      for (const auto& out : g.node(i).output()) producer[out] = i;
      for (const auto& in : g.node(i).input()) {
        if (!in.empty()) consumers[in].push_back(i);
      }
    }
    for (const auto& out : g.output()) outputs.insert(out.name());
  }

  const onnx::TensorProto* initializer(const std::string& name) const {
    const auto it = initializers.find(name);
    return it == initializers.end() ? nullptr : it->second;
  }
  const std::vector<int>& consumers_of(const std::string& tensor) const {
    static const std::vector<int> none;
    const auto it = consumers.find(tensor);
    return it == consumers.end() ? none : it->second;
  }
  int producer_of(const std::string& tensor) const {
    const auto it = producer.find(tensor);
    return it == producer.end() ? -1 : it->second;
  }

  const onnx::GraphProto& graph;
  std::unordered_map<std::string, const onnx::TensorProto*> initializers;
  std::unordered_map<std::string, int> producer;
  std::unordered_map<std::string, std::vector<int>> consumers;
  std::set<std::string> outputs;
};

// The float32 values of an initializer Loupe wrote (raw little-endian data).
inline std::vector<float> float_values(const onnx::TensorProto& t) {
  if (t.data_type() != onnx::TensorProto::FLOAT) fail("initializer '" + t.name() + "' is not float32");
  int64_t count = 1;
  for (int64_t d : t.dims()) count *= d;
  std::vector<float> values(static_cast<size_t>(count));
  if (!t.raw_data().empty()) {
    if (t.raw_data().size() != values.size() * sizeof(float)) fail("initializer '" + t.name() + "' has the wrong size");
    std::memcpy(values.data(), t.raw_data().data(), t.raw_data().size());
  } else if (t.float_data_size() == count) {
    std::copy(t.float_data().begin(), t.float_data().end(), values.begin());
  } else if (count != 0) {
    fail("initializer '" + t.name() + "' has no data");
  }
  return values;
}

// A scalar float initializer (Clip's bounds), or nullopt.
inline std::optional<float> scalar_value(const GraphIndex& index, const std::string& name) {
  const onnx::TensorProto* t = name.empty() ? nullptr : index.initializer(name);
  if (!t || t->data_type() != onnx::TensorProto::FLOAT) return std::nullopt;
  const std::vector<float> v = float_values(*t);
  if (v.size() != 1) return std::nullopt;
  return v[0];
}

// Conv, Gemm or MatMul whose weight is a float initializer of the expected rank, with what the
// pass needs about it; nullopt for any other node.
struct WeightedOp {
  int weight_input = 1;
  int axis = 0;             // the weight's output-channel axis
  int bias_input = -1;      // Conv/Gemm bias, when there is one
};

inline std::optional<WeightedOp> weighted_op(const GraphIndex& index, const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  if ((op != "Conv" && op != "Gemm" && op != "MatMul") || node.input_size() < 2) return std::nullopt;
  if (index.initializer(node.input(0))) return std::nullopt;  // a constant input: nothing to calibrate
  const onnx::TensorProto* w = index.initializer(node.input(1));
  if (!w || w->data_type() != onnx::TensorProto::FLOAT) return std::nullopt;
  WeightedOp out;
  if (op == "Conv") {
    if (w->dims_size() < 3) return std::nullopt;
    out.axis = 0;
  } else if (op == "Gemm") {
    if (w->dims_size() != 2 || int_attribute(node, "transA", 0) != 0 || float_attribute(node, "alpha", 1) != 1.0f ||
        float_attribute(node, "beta", 1) != 1.0f) {
      return std::nullopt;
    }
    out.axis = int_attribute(node, "transB", 0) != 0 ? 0 : 1;
  } else {
    if (w->dims_size() != 2) return std::nullopt;
    out.axis = 1;
  }
  if (op != "MatMul" && node.input_size() > 2 && !node.input(2).empty()) {
    const onnx::TensorProto* b = index.initializer(node.input(2));
    if (!b || b->data_type() != onnx::TensorProto::FLOAT || b->dims_size() != 1 || b->dims(0) != w->dims(out.axis)) {
      return std::nullopt;  // a bias the int32 form cannot hold (broadcast, computed): stays float
    }
    out.bias_input = 2;
  }
  return out;
}

// A weight tensor in int8, symmetric, one scale per channel along `axis`: scale = max |w| / qmax
// (1 for an all-zero channel), q = round(w / scale) clamped to [-qmax, qmax]. With a bias and
// the input's scale, a channel whose int32 bias b / (x_scale * scale) would overflow gets a wider
// scale.
struct PerChannelInt8 {
  std::vector<int8_t> values;
  std::vector<float> scales;
  int64_t inner = 1;  // elements after the axis: values[i] belongs to channel (i / inner) % channels
  float dequantized(size_t i) const { return static_cast<float>(values[i]) * scales[(i / inner) % scales.size()]; }
};

inline PerChannelInt8 quantize_per_channel(const std::vector<float>& w, const std::vector<int64_t>& dims, int axis,
                                           int qmax, const std::vector<float>* bias = nullptr, double x_scale = 0) {
  PerChannelInt8 q;
  const size_t channels = static_cast<size_t>(dims[static_cast<size_t>(axis)]);
  for (size_t d = static_cast<size_t>(axis) + 1; d < dims.size(); ++d) q.inner *= dims[d];
  const auto channel = [&](size_t i) { return (i / static_cast<size_t>(q.inner)) % channels; };
  std::vector<double> max_abs(channels, 0.0);
  for (size_t i = 0; i < w.size(); ++i) max_abs[channel(i)] = std::max(max_abs[channel(i)], std::fabs(static_cast<double>(w[i])));
  q.scales.resize(channels);
  for (size_t c = 0; c < channels; ++c) {
    double s = max_abs[c] > 0 ? max_abs[c] / qmax : 1.0;
    if (bias && x_scale > 0) s = std::max(s, std::fabs(static_cast<double>((*bias)[c])) / (x_scale * 2147483000.0) * 1.001);
    q.scales[c] = static_cast<float>(s);
  }
  q.values.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const double v = std::nearbyint(static_cast<double>(w[i]) / static_cast<double>(q.scales[channel(i)]));
    q.values[i] = static_cast<int8_t>(std::clamp(v, static_cast<double>(-qmax), static_cast<double>(qmax)));
  }
  return q;
}

}  // namespace loupe::exporter::qdq
