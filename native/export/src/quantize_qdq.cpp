// The QDQ pass over an exported ONNX graph (quantize.h): which nodes and tensors become int8
// (plan_qdq), and the rewrite with QuantizeLinear/DequantizeLinear pairs and int8 weights (apply_qdq).
// The graph helpers and the per-channel weight rounding are quantize_graph.h's (shared with the
// calibration, so that the bias correction measures the weights written here).
// Index:
//   [SECTION] Activations the uint8 range computes, ops that pass a scale on
//   [SECTION] plan_qdq
//   [SECTION] apply_qdq: scales, weights, the new node list
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_map>

#include "loupe/error.h"
#include "loupe/export/onnx_export.h"
#include "loupe/export/quantize.h"
#include "quantize_graph.h"

namespace loupe::exporter {

using namespace qdq;

namespace {

// [SECTION] Activations the uint8 range computes, ops that pass a scale on

// Relu, or Clip with a lower bound of exactly 0: the activations a uint8 range with zero point 0
// computes by saturating. Returns the upper bound (infinity for Relu), or nullopt.
std::optional<double> saturating_activation(const GraphIndex& index, const onnx::NodeProto& node) {
  if (node.op_type() == "Relu") return std::numeric_limits<double>::infinity();
  if (node.op_type() != "Clip" || node.input_size() < 2) return std::nullopt;
  const std::optional<float> lo = scalar_value(index, node.input(1));
  if (!lo || *lo != 0.0f) return std::nullopt;
  if (node.input_size() < 3 || node.input(2).empty()) return std::numeric_limits<double>::infinity();
  const std::optional<float> hi = scalar_value(index, node.input(2));
  if (!hi || !(*hi > 0)) return std::nullopt;
  return *hi;
}

// Ops that move or select values without computing new ones: a quantised input keeps its scale.
bool passes_scale_on(const std::string& op) {
  return op == "MaxPool" || op == "Flatten" || op == "Reshape" || op == "Transpose" || op == "Identity";
}

}  // namespace

const char* to_string(RangeMethod method) {
  switch (method) {
    case RangeMethod::min_max: return "min_max";
    case RangeMethod::percentile: return "percentile";
    case RangeMethod::mse: return "mse";
  }
  return "?";
}

RangeMethod range_method_from_string(const std::string& name) {
  if (name == "min_max" || name == "minmax") return RangeMethod::min_max;
  if (name == "percentile") return RangeMethod::percentile;
  if (name == "mse") return RangeMethod::mse;
  throw Error(ErrorCode::InvalidArgument, "activation range method '" + name + "': expected min_max, percentile or mse");
}

std::map<std::string, int> count_ops(const onnx::ModelProto& proto) {
  std::map<std::string, int> counts;
  for (const auto& node : proto.graph().node()) ++counts[node.op_type()];
  return counts;
}

// [SECTION] plan_qdq

QdqPlan plan_qdq(const onnx::ModelProto& fp32) {
  const onnx::GraphProto& graph = fp32.graph();
  const GraphIndex index(graph);
  if (!index.outputs.count("logits")) fail("the graph has no 'logits' output");

  // The head: follow the logits back through Identity to the Gemm (or MatMul + bias Add) that
  // computes them. Its data input is where the body ends.
  std::string tensor = "logits";
  int head = index.producer_of(tensor);
  while (head >= 0 && graph.node(head).op_type() == "Identity") head = index.producer_of(graph.node(head).input(0));
  if (head >= 0 && graph.node(head).op_type() == "Add") {
    const onnx::NodeProto& add = graph.node(head);
    const int left = index.producer_of(add.input(0)), right = index.producer_of(add.input(1));
    head = left >= 0 && graph.node(left).op_type() == "MatMul" ? left
           : right >= 0 && graph.node(right).op_type() == "MatMul" ? right
                                                                     : -1;
  }
  if (head < 0 || (graph.node(head).op_type() != "Gemm" && graph.node(head).op_type() != "MatMul")) {
    fail("the logits do not come from a Gemm or MatMul head (not a graph `loupe export` wrote?)");
  }
  QdqPlan plan;
  plan.head = node_key(graph.node(head));

  // The body: every node the head's data input depends on.
  std::vector<bool> body(static_cast<size_t>(graph.node_size()), false);
  std::vector<std::string> pending{graph.node(head).input(0)};
  while (!pending.empty()) {
    const std::string t = pending.back();
    pending.pop_back();
    const int p = index.producer_of(t);
    if (p < 0 || body[static_cast<size_t>(p)]) continue;
    body[static_cast<size_t>(p)] = true;
    for (const auto& in : graph.node(p).input()) {
      if (!in.empty() && !index.initializer(in)) pending.push_back(in);
    }
  }

  // Which tensors are quantised, in graph order. A tensor is either calibrated or shares the scale
  // of the tensor it was moved from (same_range_as points to a calibrated one).
  std::set<std::string> quantized;
  const auto root = [&](const std::string& t) {
    const auto it = plan.same_range_as.find(t);
    return it == plan.same_range_as.end() ? t : it->second;
  };
  const auto calibrate = [&](const std::string& t) {
    if (quantized.insert(t).second) plan.calibrated.push_back(t);
  };
  std::set<int> absorbed;  // activation nodes folded into a weighted op
  for (int i = 0; i < graph.node_size(); ++i) {
    if (!body[static_cast<size_t>(i)] || absorbed.count(i)) continue;
    const onnx::NodeProto& node = graph.node(i);
    if (weighted_op(index, node)) {
      plan.weighted_nodes.push_back(node_key(node));
      calibrate(node.input(0));
      std::string out = node.output(0);
      const std::vector<int>& users = index.consumers_of(out);
      if (users.size() == 1 && !index.outputs.count(out) && body[static_cast<size_t>(users[0])]) {
        const onnx::NodeProto& act = graph.node(users[0]);
        if (const std::optional<double> hi = saturating_activation(index, act)) {
          plan.fused_activation[node_key(node)] = node_key(act);
          absorbed.insert(users[0]);
          out = act.output(0);
          if (std::isfinite(*hi)) plan.range_cap[out] = *hi;
        }
      }
      calibrate(out);
    } else if (node.op_type() == "Add" && node.input_size() == 2 && quantized.count(node.input(0)) &&
               quantized.count(node.input(1))) {
      calibrate(node.output(0));  // a residual sum: QLinearAdd
    } else if (passes_scale_on(node.op_type()) && node.input_size() >= 1 && quantized.count(node.input(0)) &&
               node.output_size() == 1) {
      quantized.insert(node.output(0));
      plan.same_range_as[node.output(0)] = root(node.input(0));
    }
  }
  if (plan.weighted_nodes.empty()) fail("no Conv, Gemm or MatMul with constant weights before the head: nothing to quantise");
  return plan;
}

// [SECTION] apply_qdq: scales, weights, the new node list

namespace {

struct ActivationScale {
  float scale = 1;
  uint8_t zero_point = 0;
  std::string scale_name, zero_point_name;
};

// uint8, asymmetric, with 0 exactly representable: scale = (hi - lo) / 255, zero point
// round(-lo / scale), lo <= 0 <= hi.
ActivationScale activation_scale(TensorRange range, double cap) {
  double lo = std::min(0.0, static_cast<double>(range.min));
  double hi = std::max(0.0, static_cast<double>(range.max));
  hi = std::min(hi, cap);
  ActivationScale s;
  const double scale = (hi - lo) / 255.0;
  if (!(scale > 1e-12) || !std::isfinite(scale)) return s;  // a constant zero tensor: any scale is exact
  s.scale = static_cast<float>(scale);
  s.zero_point = static_cast<uint8_t>(std::clamp(std::nearbyint(-lo / static_cast<double>(s.scale)), 0.0, 255.0));
  return s;
}

onnx::TensorProto make_tensor(const std::string& name, int data_type, const std::vector<int64_t>& dims, const void* data,
                              size_t bytes) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(data_type);
  for (int64_t d : dims) t.add_dims(d);
  t.set_raw_data(data, bytes);
  return t;
}

class UniqueNames {
 public:
  explicit UniqueNames(const onnx::GraphProto& graph) {
    for (const auto& init : graph.initializer()) used_.insert(init.name());
    for (const auto& node : graph.node()) {
      used_.insert(node.name());
      for (const auto& t : node.input()) used_.insert(t);
      for (const auto& t : node.output()) used_.insert(t);
    }
    for (const auto& v : graph.input()) used_.insert(v.name());
    for (const auto& v : graph.output()) used_.insert(v.name());
  }
  std::string operator()(const std::string& hint) {
    std::string name = hint;
    for (int i = 1; !used_.insert(name).second; ++i) name = hint + "_" + std::to_string(i);
    return name;
  }

 private:
  std::set<std::string> used_;
};

onnx::NodeProto make_node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                          const std::string& name) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (const auto& in : inputs) n.add_input(in);
  n.add_output(output);
  return n;
}

void set_axis(onnx::NodeProto& node, int64_t axis) {
  auto* a = node.add_attribute();
  a->set_name("axis");
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(axis);
}

}  // namespace

onnx::ModelProto apply_qdq(const onnx::ModelProto& fp32, const QdqPlan& plan, const QdqCalibration& calibration,
                           const QuantizeOptions& options) {
  const ActivationRanges& ranges = calibration.ranges;
  if (options.weight_bits != 8 && options.weight_bits != 7) fail("weight bits must be 8 or 7");
  const int qmax = options.weight_bits == 8 ? 127 : 63;
  const onnx::GraphProto& graph = fp32.graph();
  const GraphIndex index(graph);
  UniqueNames unique(graph);
  std::vector<onnx::TensorProto> new_initializers;

  // Activation scales: one pair of initializers per calibrated tensor, shared by the tensors that
  // pass it on.
  std::map<std::string, ActivationScale> scales;
  for (const std::string& t : plan.calibrated) {
    const auto range = ranges.find(t);
    if (range == ranges.end()) fail("no calibrated range for tensor '" + t + "'");
    const auto cap = plan.range_cap.find(t);
    ActivationScale s = activation_scale(range->second, cap == plan.range_cap.end()
                                                            ? std::numeric_limits<double>::infinity()
                                                            : cap->second);
    s.scale_name = unique(t + "_scale");
    s.zero_point_name = unique(t + "_zero_point");
    new_initializers.push_back(make_tensor(s.scale_name, onnx::TensorProto::FLOAT, {}, &s.scale, sizeof s.scale));
    new_initializers.push_back(make_tensor(s.zero_point_name, onnx::TensorProto::UINT8, {}, &s.zero_point, 1));
    scales[t] = s;
  }
  for (const auto& [t, from] : plan.same_range_as) scales[t] = scales.at(from);

  // Each quantised tensor is read through its DequantizeLinear output.
  std::map<std::string, std::string> dequantized;
  for (const auto& [t, s] : scales) dequantized[t] = unique(t + "_dequantized");
  const auto qdq_pair = [&](const std::string& t, std::vector<onnx::NodeProto>& nodes) {
    const ActivationScale& s = scales.at(t);
    const std::string q = unique(t + "_quantized");
    nodes.push_back(make_node("QuantizeLinear", {t, s.scale_name, s.zero_point_name}, q, unique(t + "_QuantizeLinear")));
    nodes.push_back(make_node("DequantizeLinear", {q, s.scale_name, s.zero_point_name}, dequantized.at(t),
                              unique(t + "_DequantizeLinear")));
  };

  std::set<std::string> weighted(plan.weighted_nodes.begin(), plan.weighted_nodes.end());
  std::set<std::string> absorbed;
  std::map<std::string, std::string> fused_output;  // weighted node -> the absorbed activation's output
  for (const auto& [node, act] : plan.fused_activation) {
    absorbed.insert(act);
    for (const auto& n : graph.node()) {
      if (node_key(n) == act) fused_output[node] = n.output(0);
    }
  }

  std::vector<onnx::NodeProto> nodes;
  for (const auto& input : graph.input()) {
    if (scales.count(input.name())) qdq_pair(input.name(), nodes);
  }
  for (const onnx::NodeProto& original : graph.node()) {
    const std::string key = node_key(original);
    if (absorbed.count(key)) continue;
    onnx::NodeProto node = original;
    if (weighted.count(key)) {
      const std::optional<WeightedOp> op = weighted_op(index, original);
      if (!op) fail("node '" + key + "' is no longer a Conv/Gemm/MatMul with constant weights");
      const auto input_scale = scales.find(original.input(0));
      if (input_scale == scales.end()) fail("the input of '" + key + "' has no scale");
      const double x_scale = input_scale->second.scale;

      // Weights: int8, symmetric, one scale per output channel.
      const onnx::TensorProto& w = *index.initializer(original.input(op->weight_input));
      const std::vector<float> values = float_values(w);
      const std::vector<int64_t> dims(w.dims().begin(), w.dims().end());
      const int64_t channels = dims[static_cast<size_t>(op->axis)];
      std::vector<float> bias;
      if (op->bias_input >= 0) bias = float_values(*index.initializer(original.input(op->bias_input)));
      const PerChannelInt8 q = quantize_per_channel(values, dims, op->axis, qmax, bias.empty() ? nullptr : &bias, x_scale);
      const std::vector<int8_t>& w_int8 = q.values;
      const std::vector<float>& w_scale = q.scales;
      // Bias correction: what weight rounding adds to the output on average, taken off the bias.
      const auto shift = calibration.output_shift.find(key);
      if (options.bias_correction && shift != calibration.output_shift.end() && original.op_type() != "MatMul") {
        if (bias.empty()) bias.assign(static_cast<size_t>(channels), 0.0f);
        for (size_t c = 0; c < bias.size() && c < shift->second.size(); ++c) {
          bias[c] = static_cast<float>(static_cast<double>(bias[c]) - shift->second[c]);
        }
      }
      const std::vector<int8_t> w_zero(static_cast<size_t>(channels), 0);
      const std::string wq = unique(w.name() + "_quantized"), ws = unique(w.name() + "_scale"),
                        wz = unique(w.name() + "_zero_point"), wd = unique(w.name() + "_dequantized");
      new_initializers.push_back(make_tensor(wq, onnx::TensorProto::INT8, dims, w_int8.data(), w_int8.size()));
      new_initializers.push_back(make_tensor(ws, onnx::TensorProto::FLOAT, {channels}, w_scale.data(), w_scale.size() * 4));
      new_initializers.push_back(make_tensor(wz, onnx::TensorProto::INT8, {channels}, w_zero.data(), w_zero.size()));
      onnx::NodeProto dq_w = make_node("DequantizeLinear", {wq, ws, wz}, wd, unique(w.name() + "_DequantizeLinear"));
      set_axis(dq_w, op->axis);
      nodes.push_back(dq_w);
      node.set_input(op->weight_input, wd);

      // Bias: int32 at scale x_scale * w_scale, zero point 0 (what QLinearConv adds to its int32 sums).
      if (!bias.empty()) {
        std::string base = op->bias_input >= 0 ? original.input(op->bias_input) : w.name();
        if (op->bias_input < 0) base = base.size() > 7 && base.compare(base.size() - 7, 7, ".weight") == 0
                                           ? base.substr(0, base.size() - 7) + ".bias" : base + ".bias";
        std::vector<int32_t> b_int32(bias.size());
        std::vector<float> b_scale(bias.size());
        for (size_t c = 0; c < bias.size(); ++c) {
          b_scale[c] = static_cast<float>(x_scale * static_cast<double>(w_scale[c]));
          const double rounded = std::nearbyint(static_cast<double>(bias[c]) / static_cast<double>(b_scale[c]));
          b_int32[c] = static_cast<int32_t>(std::clamp(rounded, -2147483647.0, 2147483647.0));
        }
        const std::vector<int32_t> b_zero(bias.size(), 0);
        const int64_t n = static_cast<int64_t>(bias.size());
        const std::string bq = unique(base + "_quantized"), bs = unique(base + "_scale"),
                          bz = unique(base + "_zero_point"), bd = unique(base + "_dequantized");
        new_initializers.push_back(make_tensor(bq, onnx::TensorProto::INT32, {n}, b_int32.data(), b_int32.size() * 4));
        new_initializers.push_back(make_tensor(bs, onnx::TensorProto::FLOAT, {n}, b_scale.data(), b_scale.size() * 4));
        new_initializers.push_back(make_tensor(bz, onnx::TensorProto::INT32, {n}, b_zero.data(), b_zero.size() * 4));
        onnx::NodeProto dq_b = make_node("DequantizeLinear", {bq, bs, bz}, bd, unique(base + "_DequantizeLinear"));
        set_axis(dq_b, 0);
        nodes.push_back(dq_b);
        if (op->bias_input >= 0) node.set_input(op->bias_input, bd);
        else node.add_input(bd);
      }
      const auto fused = fused_output.find(key);
      if (fused != fused_output.end()) node.set_output(0, fused->second);
    }
    // Quantised inputs are read dequantised (weights were replaced above).
    for (int i = 0; i < node.input_size(); ++i) {
      const auto it = dequantized.find(node.input(i));
      if (it != dequantized.end()) node.set_input(i, it->second);
    }
    const std::vector<std::string> outputs(node.output().begin(), node.output().end());
    nodes.push_back(std::move(node));
    for (const std::string& out : outputs) {
      if (scales.count(out)) qdq_pair(out, nodes);
    }
  }

  onnx::ModelProto out = fp32;
  onnx::GraphProto* g = out.mutable_graph();
  g->clear_node();
  g->clear_value_info();  // the float graph's inferred shapes name tensors that no longer exist
  std::set<std::string> used;
  for (auto& node : nodes) {
    for (const auto& in : node.input()) used.insert(in);
    *g->add_node() = std::move(node);
  }
  std::vector<onnx::TensorProto> kept;
  for (const auto& init : graph.initializer()) {
    if (used.count(init.name())) kept.push_back(init);
  }
  for (auto& init : new_initializers) {
    if (used.count(init.name())) kept.push_back(std::move(init));
  }
  g->clear_initializer();
  for (auto& init : kept) *g->add_initializer() = std::move(init);
  check_onnx(out);
  return out;
}

}  // namespace loupe::exporter
