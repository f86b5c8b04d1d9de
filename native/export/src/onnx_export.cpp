// ONNX export: a graph builder, the module walker (one emitter per block type of blocks.h),
// batch-norm folding, the model card, checking and serialisation.
// Index:
//   [SECTION] Helpers            errors, variants, attributes
//   [SECTION] GraphBuilder       values, nodes, initializers (kept as tensors until the end)
//   [SECTION] Emitter            module tree -> nodes, tracking a batch-of-one sample for shapes
//   [SECTION] Batch-norm folding Conv + BatchNormalization -> Conv
//   [SECTION] Out-of-distribution nodes  the "ood_distance" output (calibration.h)
//   [SECTION] export_onnx        outputs, card, ModelProto
//   [SECTION] Checking, hashing, writing
#include "loupe/export/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>
#include <variant>

#include "loupe/error.h"
#include "loupe/models/blocks.h"
#include "loupe/version.h"
#include "weights_hash.h"

namespace loupe::exporter {

namespace nn = torch::nn;

namespace {

// [SECTION] Helpers

[[noreturn]] void fail(const std::string& message) {
  throw Error(ErrorCode::InvalidArgument, "ONNX export: " + message);
}

std::string at_path(const std::string& path) { return path.empty() ? std::string("the model") : "'" + path + "'"; }

// LibTorch 1.x options hold c10::variant, 2.x std::variant: `using std::get_if` plus argument-
// dependent lookup picks whichever get_if belongs to the variant type.
template <typename T, typename Variant>
const T* variant_get_if(const Variant& v) {
  using std::get_if;
  return get_if<T>(&v);
}

// "torch::nn::TanhImpl" -> "torch::nn::Tanh", "loupe::models::HardswishImpl" -> "loupe::models::Hardswish".
std::string module_type_name(const nn::Module& module) {
  std::string name = module.name();
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  return name;
}

void attr_int(onnx::NodeProto& node, const std::string& name, int64_t value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void attr_float(onnx::NodeProto& node, const std::string& name, float value) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

void attr_ints(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

float float_attr_or(const onnx::NodeProto& node, const std::string& name, float fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.f();
  }
  return fallback;
}

std::string shape_text(const torch::Tensor& t) {
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

// [SECTION] Emitter

class Emitter {
 public:
  Emitter(GraphBuilder& graph, models::Classifier& model) : g_(graph), head_(model.head().ptr().get()) {}

  Value emit(const std::string& path, nn::Module& m, const Value& x) {
    try {
      return dispatch(path, m, x);
    } catch (const c10::Error& e) {
      // LibTorch refused the sample (e.g. a dense layer built for another input size).
      fail(at_path(path) + " (" + module_type_name(m) + ") cannot run on input " + shape_text(x.sample) + ": " +
           e.what_without_backtrace());
    }
  }

  std::optional<Value> embedding;  // the head Linear's input
  std::string head_weight;         // initializer name of the head Linear's weight

 private:
  Value dispatch(const std::string& path, nn::Module& m, const Value& x) {
    if (auto* conv = m.as<nn::Conv2d>()) return conv2d(path, *conv, x);
    if (auto* bn = m.as<nn::BatchNorm2d>()) return batch_norm(path, *bn, x);
    if (auto* relu = m.as<nn::ReLU>()) return unary("Relu", path, x, relu->forward(x.sample));
    if (auto* relu6 = m.as<nn::ReLU6>()) return clip(path, x, 0.0f, 6.0f, relu6->forward(x.sample));
    if (auto* silu = m.as<nn::SiLU>()) return mul_by("Sigmoid", path, x, silu->forward(x.sample));
    if (auto* sigmoid = m.as<nn::Sigmoid>()) return unary("Sigmoid", path, x, sigmoid->forward(x.sample));
    if (auto* hswish = m.as<models::Hardswish>()) return hardswish(path, x, hswish->forward(x.sample));
    if (auto* hsigmoid = m.as<models::Hardsigmoid>()) return hard_sigmoid(path, x, hsigmoid->forward(x.sample));
    if (auto* pool = m.as<nn::MaxPool2d>()) return max_pool(path, *pool, x);
    if (auto* pool = m.as<nn::AdaptiveAvgPool2d>()) return adaptive_avg_pool(path, *pool, x);
    if (auto* flatten = m.as<nn::Flatten>()) return flatten_(path, *flatten, x);
    if (auto* linear = m.as<nn::Linear>()) return linear_(path, *linear, x);
    if (m.as<nn::Dropout>() || m.as<nn::Dropout2d>() || m.as<nn::Identity>() || m.as<models::StochasticDepth>()) {
      return x;  // identities in eval mode
    }
    if (auto* block = m.as<models::BasicBlock>()) return basic_block(path, *block, x);
    if (auto* block = m.as<models::Bottleneck>()) return bottleneck(path, *block, x);
    if (auto* block = m.as<models::InvertedResidual>()) return inverted_residual(path, *block, x);
    if (auto* block = m.as<models::SqueezeExcitation>()) return squeeze_excitation(path, *block, x);
    if (auto* head = m.as<models::LstmHead>()) return lstm_head(path, *head, x);
    if (auto* seq = m.as<nn::Sequential>()) return sequence(path, *seq, x);
    fail("unsupported module type '" + module_type_name(m) + "' at " + at_path(path) +
         "; the exporter knows the block types of loupe/models/blocks.h");
  }

  std::string child_path(const std::string& path, const std::string& name) const {
    return path.empty() ? name : path + "." + name;
  }

  Value unary(const std::string& op_type, const std::string& path, const Value& x, torch::Tensor sample) {
    return {g_.op(op_type, {x.name}, path), std::move(sample)};
  }

  Value clip(const std::string& path, const Value& x, float lo, float hi, torch::Tensor sample) {
    const std::string min = g_.float_scalar(lo, "const_clip_min");
    const std::string max = g_.float_scalar(hi, "const_clip_max");
    return {g_.op("Clip", {x.name, min, max}, path), std::move(sample)};
  }

  // x * gate(x): SiLU (gate Sigmoid).
  Value mul_by(const std::string& gate, const std::string& path, const Value& x, torch::Tensor sample) {
    const std::string g = g_.op(gate, {x.name}, path + ".gate");
    return {g_.op("Mul", {x.name, g}, path), std::move(sample)};
  }

  std::string hard_sigmoid_op(const std::string& input, const std::string& path) {
    // torch: relu6(x + 3) / 6 = clamp(x / 6 + 0.5, 0, 1) = ONNX HardSigmoid(alpha 1/6, beta 0.5).
    return g_.op("HardSigmoid", {input}, path, [](onnx::NodeProto& n) {
      attr_float(n, "alpha", static_cast<float>(1.0 / 6.0));
      attr_float(n, "beta", 0.5f);
    });
  }

  Value hard_sigmoid(const std::string& path, const Value& x, torch::Tensor sample) {
    return {hard_sigmoid_op(x.name, path), std::move(sample)};
  }

  Value hardswish(const std::string& path, const Value& x, torch::Tensor sample) {
    if (g_.opset() >= 14) return {g_.op("HardSwish", {x.name}, path), std::move(sample)};
    const std::string gate = hard_sigmoid_op(x.name, path + ".gate");
    return {g_.op("Mul", {x.name, gate}, path), std::move(sample)};
  }

  Value conv2d(const std::string& path, nn::Conv2dImpl& conv, const Value& x) {
    const auto& o = conv.options;
    if (!variant_get_if<torch::enumtype::kZeros>(o.padding_mode())) {
      fail("Conv2d at " + at_path(path) + ": only zero padding is supported (padding_mode is not 'zeros')");
    }
    const std::vector<int64_t> kernel{(*o.kernel_size())[0], (*o.kernel_size())[1]};
    const std::vector<int64_t> dilation{(*o.dilation())[0], (*o.dilation())[1]};
    std::vector<int64_t> pads(4, 0);  // ONNX: [top, left, bottom, right]
    if (const auto* p = variant_get_if<torch::ExpandingArray<2>>(o.padding())) {
      pads = {(**p)[0], (**p)[1], (**p)[0], (**p)[1]};
    } else if (variant_get_if<torch::enumtype::kSame>(o.padding())) {
      for (size_t d = 0; d < 2; ++d) {  // LibTorch puts an odd extra pixel at the end
        const int64_t total = dilation[d] * (kernel[d] - 1);
        pads[d] = total / 2;
        pads[d + 2] = total - total / 2;
      }
    }
    std::vector<std::string> inputs{x.name, g_.initializer(path + ".weight", conv.weight)};
    if (conv.bias.defined()) inputs.push_back(g_.initializer(path + ".bias", conv.bias));
    const std::string out = g_.op("Conv", inputs, path, [&](onnx::NodeProto& n) {
      attr_ints(n, "kernel_shape", kernel);
      attr_ints(n, "strides", {(*o.stride())[0], (*o.stride())[1]});
      attr_ints(n, "pads", pads);
      attr_ints(n, "dilations", dilation);
      attr_int(n, "group", o.groups());
    });
    return {out, conv.forward(x.sample)};
  }

  Value batch_norm(const std::string& path, nn::BatchNorm2dImpl& bn, const Value& x) {
    const auto& o = bn.options;
    if (!o.track_running_stats() || !bn.running_mean.defined()) {
      fail("BatchNorm2d at " + at_path(path) +
           " has no running statistics (track_running_stats=false): in eval it normalises with batch statistics, "
           "which ONNX inference cannot reproduce");
    }
    const int64_t c = o.num_features();
    const torch::Tensor weight = o.affine() ? bn.weight : torch::ones({c});
    const torch::Tensor bias = o.affine() ? bn.bias : torch::zeros({c});
    const std::vector<std::string> inputs{x.name, g_.initializer(path + ".weight", weight),
                                          g_.initializer(path + ".bias", bias),
                                          g_.initializer(path + ".running_mean", bn.running_mean),
                                          g_.initializer(path + ".running_var", bn.running_var)};
    const std::string out = g_.op("BatchNormalization", inputs, path, [&](onnx::NodeProto& n) {
      attr_float(n, "epsilon", static_cast<float>(o.eps()));
    });
    return {out, bn.forward(x.sample)};
  }

  Value max_pool(const std::string& path, nn::MaxPool2dImpl& pool, const Value& x) {
    const auto& o = pool.options;
    const std::vector<int64_t> kernel{(*o.kernel_size())[0], (*o.kernel_size())[1]};
    const std::vector<int64_t> stride{(*o.stride())[0], (*o.stride())[1]};
    const std::vector<int64_t> pad{(*o.padding())[0], (*o.padding())[1]};
    const std::vector<int64_t> dilation{(*o.dilation())[0], (*o.dilation())[1]};
    torch::Tensor sample = pool.forward(x.sample);
    // ONNX's output size; with ceil_mode LibTorch also drops a last window starting in the padding.
    for (int64_t d = 0; d < 2; ++d) {
      const auto i = static_cast<size_t>(d);
      const double span = static_cast<double>(x.sample.size(2 + d) + 2 * pad[i] - dilation[i] * (kernel[i] - 1) - 1) /
                          static_cast<double>(stride[i]);
      const auto onnx_size = static_cast<int64_t>(o.ceil_mode() ? std::ceil(span) : std::floor(span)) + 1;
      if (onnx_size != sample.size(2 + d)) {
        fail("MaxPool2d at " + at_path(path) + " with ceil_mode on input " + shape_text(x.sample) +
             ": ONNX's output size differs from LibTorch's (unsupported case)");
      }
    }
    const std::string out = g_.op("MaxPool", {x.name}, path, [&](onnx::NodeProto& n) {
      attr_ints(n, "kernel_shape", kernel);
      attr_ints(n, "strides", stride);
      attr_ints(n, "pads", {pad[0], pad[1], pad[0], pad[1]});
      attr_ints(n, "dilations", dilation);
      attr_int(n, "ceil_mode", o.ceil_mode() ? 1 : 0);
    });
    return {out, sample};
  }

  Value adaptive_avg_pool(const std::string& path, nn::AdaptiveAvgPool2dImpl& pool, const Value& x) {
    if (x.sample.dim() != 4) fail("AdaptiveAvgPool2d at " + at_path(path) + " on a " + shape_text(x.sample) + " input");
    torch::Tensor sample = pool.forward(x.sample);
    const int64_t h = x.sample.size(2), w = x.sample.size(3), oh = sample.size(2), ow = sample.size(3);
    if (oh == h && ow == w) return {x.name, sample};  // e.g. vgg16's 7x7 pool at 224x224 input
    if (oh == 1 && ow == 1) return {g_.op("GlobalAveragePool", {x.name}, path), sample};
    if (h % oh == 0 && w % ow == 0) {
      const std::string out = g_.op("AveragePool", {x.name}, path, [&](onnx::NodeProto& n) {
        attr_ints(n, "kernel_shape", {h / oh, w / ow});
        attr_ints(n, "strides", {h / oh, w / ow});
      });
      return {out, sample};
    }
    // General case (e.g. a 1x1 map pooled "up" to 7x7): out = P_h . x . P_w^T with LibTorch's bins
    // [floor(i * in / out), ceil((i + 1) * in / out)), each averaged.
    const auto bins = [](int64_t in, int64_t out_size) {
      torch::Tensor p = torch::zeros({out_size, in});
      for (int64_t i = 0; i < out_size; ++i) {
        const int64_t start = (i * in) / out_size, end = ((i + 1) * in + out_size - 1) / out_size;
        p.index_put_({i, torch::indexing::Slice(start, end)}, 1.0 / static_cast<double>(end - start));
      }
      return p;
    };
    const std::string pw = g_.initializer(path + ".cols", bins(w, ow).t().contiguous());
    const std::string ph = g_.initializer(path + ".rows", bins(h, oh));
    const std::string cols = g_.op("MatMul", {x.name, pw}, path + ".cols");
    return {g_.op("MatMul", {ph, cols}, path), sample};
  }

  Value flatten_(const std::string& path, nn::FlattenImpl& flatten, const Value& x) {
    const int64_t rank = x.sample.dim();
    int64_t start = flatten.options.start_dim(), end = flatten.options.end_dim();
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    torch::Tensor sample = flatten.forward(x.sample);
    if (start == 1 && end == rank - 1) {
      return {g_.op("Flatten", {x.name}, path, [](onnx::NodeProto& n) { attr_int(n, "axis", 1); }), sample};
    }
    if (start < 1) fail("Flatten at " + at_path(path) + " merges the batch dimension (start_dim 0)");
    std::vector<int64_t> shape(sample.sizes().begin(), sample.sizes().end());
    shape[0] = 0;  // Reshape: 0 copies the input's (dynamic) batch size
    return {g_.op("Reshape", {x.name, g_.int64s(shape)}, path), sample};
  }

  Value linear_(const std::string& path, nn::LinearImpl& linear, const Value& x) {
    const bool is_head = &linear == head_;
    if (is_head) embedding = x;
    const std::string weight = g_.initializer(path + ".weight", linear.weight);
    if (is_head) head_weight = weight;
    std::string bias;
    if (linear.bias.defined()) bias = g_.initializer(path + ".bias", linear.bias);
    torch::Tensor sample = linear.forward(x.sample);
    if (x.sample.dim() == 2) {
      std::vector<std::string> inputs{x.name, weight};
      if (!bias.empty()) inputs.push_back(bias);
      return {g_.op("Gemm", inputs, path, [](onnx::NodeProto& n) { attr_int(n, "transB", 1); }), sample};
    }
    const std::string wt = g_.initializer(path + ".weight_t", linear.weight.t().contiguous());
    std::string out = g_.op("MatMul", {x.name, wt}, bias.empty() ? path : path + ".matmul");
    if (!bias.empty()) out = g_.op("Add", {out, bias}, path);
    return {out, sample};
  }

  Value sequence(const std::string& path, nn::SequentialImpl& seq, const Value& x) {
    Value v = x;
    for (const auto& child : seq.named_children()) v = emit(child_path(path, child.key()), *child.value(), v);
    return v;
  }

  Value add(const std::string& path, const Value& a, const Value& b) {
    return {g_.op("Add", {a.name, b.name}, path), a.sample + b.sample};
  }

  Value basic_block(const std::string& path, models::BasicBlockImpl& b, const Value& x) {
    const auto p = [&](const char* name) { return child_path(path, name); };
    Value out = emit(p("conv1"), *b.conv1, x);
    out = emit(p("bn1"), *b.bn1, out);
    out = emit(p("relu"), *b.relu, out);
    out = emit(p("conv2"), *b.conv2, out);
    out = emit(p("bn2"), *b.bn2, out);
    const Value identity = b.downsample ? emit(p("downsample"), *b.downsample, x) : x;
    return emit(p("relu"), *b.relu, add(p("add"), out, identity));
  }

  Value bottleneck(const std::string& path, models::BottleneckImpl& b, const Value& x) {
    const auto p = [&](const char* name) { return child_path(path, name); };
    Value out = emit(p("relu"), *b.relu, emit(p("bn1"), *b.bn1, emit(p("conv1"), *b.conv1, x)));
    out = emit(p("relu"), *b.relu, emit(p("bn2"), *b.bn2, emit(p("conv2"), *b.conv2, out)));
    out = emit(p("bn3"), *b.bn3, emit(p("conv3"), *b.conv3, out));
    const Value identity = b.downsample ? emit(p("downsample"), *b.downsample, x) : x;
    return emit(p("relu"), *b.relu, add(p("add"), out, identity));
  }

  Value inverted_residual(const std::string& path, models::InvertedResidualImpl& block, const Value& x) {
    std::string body_name = "block";
    for (const auto& child : block.named_children()) {
      if (child.value().get() == block.body.ptr().get()) body_name = child.key();
    }
    const Value out = emit(child_path(path, body_name), *block.body, x);
    if (!block.use_residual) return out;
    return add(child_path(path, "add"), out, x);  // stochastic_depth: the identity in eval
  }

  Value squeeze_excitation(const std::string& path, models::SqueezeExcitationImpl& se, const Value& x) {
    const auto p = [&](const char* name) { return child_path(path, name); };
    Value scale = emit(p("avgpool"), *se.avgpool, x);
    scale = emit(p("fc1"), *se.fc1, scale);
    scale = emit(p("activation"), *se.activation.ptr(), scale);
    scale = emit(p("fc2"), *se.fc2, scale);
    scale = emit(p("scale_activation"), *se.scale_activation.ptr(), scale);
    return {g_.op("Mul", {scale.name, x.name}, path), scale.sample * x.sample};
  }

  // PyTorch stacks the LSTM gates as (i, f, g, o), ONNX as (i, o, f, c): reorder the 4 row blocks.
  static torch::Tensor onnx_gate_order(const torch::Tensor& t) {
    const auto gates = t.chunk(4, 0);
    return torch::cat({gates[0], gates[3], gates[1], gates[2]}, 0);
  }

  // seq [T, N, C] (ONNX layout 0) through every layer of `lstm`; returns [T, N, H], or the last
  // step [N, H] when `last_step_only`.
  std::string lstm_layers(const std::string& path, nn::LSTMImpl& lstm, std::string seq, bool last_step_only) {
    const auto& o = lstm.options;
    if (o.bidirectional()) fail("LSTM at " + at_path(path) + ": bidirectional LSTMs are not supported");
    if (o.proj_size() > 0) fail("LSTM at " + at_path(path) + ": LSTMs with proj_size are not supported");
    const int64_t hidden = o.hidden_size();
    const auto params = lstm.named_parameters(/*recurse=*/false);
    const auto param = [&](const std::string& name) {
      const auto* p = params.find(name);
      if (p == nullptr) fail("LSTM at " + at_path(path) + " has no parameter '" + name + "'");
      return p->detach();
    };
    for (int64_t layer = 0; layer < o.num_layers(); ++layer) {
      const std::string l = std::to_string(layer);
      const std::string lp = o.num_layers() > 1 ? path + ".l" + l : path;
      const std::string w = g_.initializer(path + ".weight_ih_l" + l, onnx_gate_order(param("weight_ih_l" + l)).unsqueeze(0));
      const std::string r = g_.initializer(path + ".weight_hh_l" + l, onnx_gate_order(param("weight_hh_l" + l)).unsqueeze(0));
      const torch::Tensor b = o.bias() ? torch::cat({onnx_gate_order(param("bias_ih_l" + l)),
                                                     onnx_gate_order(param("bias_hh_l" + l))})
                                       : torch::zeros({8 * hidden});
      const std::string bias = g_.initializer(path + ".bias_l" + l, b.unsqueeze(0));
      const bool last = last_step_only && layer == o.num_layers() - 1;
      const std::string y = g_.value_name(lp + (last ? ".Y_h" : ".Y"));
      const std::vector<std::string> outputs = last ? std::vector<std::string>{"", y} : std::vector<std::string>{y};
      attr_int(g_.node("LSTM", {seq, w, r, bias}, outputs, lp), "hidden_size", hidden);
      // Y [T, 1, N, H] -> [T, N, H]; Y_h [1, N, H] (the last step of a forward LSTM) -> [N, H].
      seq = g_.op("Squeeze", {y, g_.int64s({last ? 0 : 1})}, lp + (last ? ".last_step" : ".out"));
    }
    return seq;
  }

  Value lstm_head(const std::string& path, models::LstmHeadImpl& head, const Value& x) {
    if (x.sample.dim() != 4) fail("LstmHead at " + at_path(path) + " on a " + shape_text(x.sample) + " input");
    // [N, C, h, w] -> [N, C, h*w] -> [h*w, N, C]: the positions in row-major order are the time steps.
    const std::string flat = g_.op("Reshape", {x.name, g_.int64s({0, 0, -1})}, child_path(path, "sequence"));
    std::string seq = g_.op("Transpose", {flat}, child_path(path, "time_major"),
                            [](onnx::NodeProto& n) { attr_ints(n, "perm", {2, 0, 1}); });
    const auto children = head.named_children();
    for (size_t i = 0; i < head.lstms.size(); ++i) {
      std::string name = "lstm" + std::to_string(i + 1);
      for (const auto& child : children) {
        if (child.value().get() == head.lstms[i].ptr().get()) name = child.key();
      }
      seq = lstm_layers(child_path(path, name), *head.lstms[i], seq, i + 1 == head.lstms.size());
    }
    return {seq, head.forward(x.sample)};
  }

  GraphBuilder& g_;
  const nn::Module* head_;
};

// [SECTION] Batch-norm folding

// Conv -> BatchNormalization (the conv's output used by nothing else) becomes one Conv with
// W' = W * s and b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps), computed in double.
void fold_batch_norms(GraphBuilder& g) {
  std::unordered_map<std::string, int> uses;
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& in : g.nodes[i].input()) ++uses[in];
    for (const auto& out : g.nodes[i].output()) producer[out] = i;
  }
  std::vector<bool> removed(g.nodes.size(), false);
  for (size_t j = 0; j < g.nodes.size(); ++j) {
    const onnx::NodeProto& bn = g.nodes[j];
    if (bn.op_type() != "BatchNormalization") continue;
    const auto it = producer.find(bn.input(0));
    if (it == producer.end() || uses[bn.input(0)] != 1) continue;
    onnx::NodeProto& conv = g.nodes[it->second];
    if (conv.op_type() != "Conv" || !g.is_initializer(conv.input(1))) continue;
    const torch::Tensor w = g.tensor(conv.input(1)).to(torch::kFloat64);
    const int64_t out_channels = w.size(0);
    const bool has_bias = conv.input_size() > 2;
    const torch::Tensor b = has_bias ? g.tensor(conv.input(2)).to(torch::kFloat64) : torch::zeros({out_channels}, torch::kFloat64);
    const torch::Tensor gamma = g.tensor(bn.input(1)).to(torch::kFloat64), beta = g.tensor(bn.input(2)).to(torch::kFloat64);
    const torch::Tensor mean = g.tensor(bn.input(3)).to(torch::kFloat64), var = g.tensor(bn.input(4)).to(torch::kFloat64);
    const double eps = float_attr_or(bn, "epsilon", 1e-5f);
    const torch::Tensor s = gamma / torch::sqrt(var + eps);
    const torch::Tensor folded_w = (w * s.view({-1, 1, 1, 1})).to(torch::kFloat32);
    const torch::Tensor folded_b = ((b - mean) * s + beta).to(torch::kFloat32);
    if (uses[conv.input(1)] == 1) g.tensor(conv.input(1)) = folded_w;
    else conv.set_input(1, g.initializer(conv.input(1) + ".folded", folded_w));
    if (has_bias && uses[conv.input(2)] == 1) {
      g.tensor(conv.input(2)) = folded_b;
    } else {
      std::string hint = conv.input(1);
      if (hint.size() > 7 && hint.compare(hint.size() - 7, 7, ".weight") == 0) hint.replace(hint.size() - 7, 7, ".bias");
      else hint += ".bias";
      const std::string name = g.initializer(hint, folded_b);
      if (has_bias) conv.set_input(2, name);
      else conv.add_input(name);
    }
    conv.set_output(0, bn.output(0));
    removed[j] = true;
  }
  std::vector<onnx::NodeProto> kept;
  kept.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!removed[i]) kept.push_back(std::move(g.nodes[i]));
  }
  g.nodes = std::move(kept);
}

// [SECTION] Out-of-distribution nodes

// Appends the nodes of the "ood_distance" output (onnx_export.h) on `embedding` [batch, D]; returns
// the name of the [batch] distance value.
std::string append_ood_nodes(GraphBuilder& g, const std::string& embedding, const MahalanobisFit& fit) {
  if (!fit.mean.defined() || !fit.projection.defined() || !fit.centers.defined() || fit.centers.size(0) < 1) {
    fail("the out-of-distribution fit is empty");
  }
  const torch::Tensor centers = fit.centers.to(torch::kFloat64);  // [K', d]
  const std::string mean = g.initializer("ood.mean", fit.mean);
  const std::string projection = g.initializer("ood.projection", fit.projection);
  const std::string centers_m2 = g.initializer("ood.centers_m2", (-2.0 * centers).t().contiguous());  // [d, K']
  const std::string centers_sq = g.initializer("ood.centers_sq", centers.pow(2).sum(1));             // [K']
  const std::string centered = g.op("Sub", {embedding, mean}, "ood.centered");
  const std::string z = g.op("MatMul", {centered, projection}, "ood.z");
  const std::string z_sq = g.op("ReduceSumSquare", {z}, "ood.z_sq", [](onnx::NodeProto& n) {
    attr_ints(n, "axes", {1});
    attr_int(n, "keepdims", 1);
  });
  const std::string cross = g.op("MatMul", {z, centers_m2}, "ood.cross");
  const std::string partial = g.op("Add", {cross, z_sq}, "ood.partial");
  const std::string squared = g.op("Add", {partial, centers_sq}, "ood.squared_distances");
  return g.op("ReduceMin", {squared}, "ood.distance", [](onnx::NodeProto& n) {
    attr_ints(n, "axes", {1});
    attr_int(n, "keepdims", 0);
  });
}

// [SECTION] export_onnx

// One graph initializer from a float32 or int64 tensor, as raw little-endian bytes.
void add_initializer(onnx::GraphProto* graph, const std::string& name, const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kCPU).contiguous();
  onnx::TensorProto* init = graph->add_initializer();
  init->set_name(name);
  for (int64_t d : t.sizes()) init->add_dims(d);
  init->set_data_type(t.scalar_type() == torch::kFloat32 ? onnx::TensorProto::FLOAT : onnx::TensorProto::INT64);
  init->set_raw_data(static_cast<const char*>(t.data_ptr()), t.nbytes());
}

void set_tensor_type(onnx::ValueInfoProto* info, const std::string& name, const std::vector<int64_t>& dims) {
  info->set_name(name);
  auto* tensor_type = info->mutable_type()->mutable_tensor_type();
  tensor_type->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = tensor_type->mutable_shape();
  for (size_t i = 0; i < dims.size(); ++i) {
    auto* dim = shape->add_dim();
    if (i == 0) dim->set_dim_param("batch");
    else dim->set_dim_value(dims[i]);
  }
}

nlohmann::json card_shape(const torch::Tensor& sample) {
  nlohmann::json shape = nlohmann::json::array({"batch"});
  for (int64_t i = 1; i < sample.dim(); ++i) shape.push_back(sample.size(i));
  return shape;
}

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

ModelCard make_card(models::Classifier& model, const ExportOptions& options, int size) {
  const auto& config = model.config();
  const CardInfo& info = options.card;
  ModelCard card;
  card.name = info.name.empty() ? config.architecture : info.name;
  card.version = info.version;
  card.description = info.description;
  card.created_utc = info.created_utc.empty() ? utc_now_iso8601() : info.created_utc;
  card.architecture = config.architecture;
  models::ModelConfig exported = config;
  exported.input_size = size;
  card.model = exported.to_json();
  card.input_channels = config.in_channels;
  card.input_height = card.input_width = size;
  if (info.class_names.empty()) {
    for (int k = 0; k < config.num_classes; ++k) card.class_names.push_back("class_" + std::to_string(k));
  } else {
    card.class_names = info.class_names;
  }
  if (static_cast<int>(card.class_names.size()) != config.num_classes) {
    fail("the card lists " + std::to_string(card.class_names.size()) + " class names but the model has " +
         std::to_string(config.num_classes) + " outputs");
  }
  if (info.preprocess) {
    card.preprocess = *info.preprocess;
    card.preprocess.validate();
    if (card.preprocess.channels() != config.in_channels) {
      fail("preprocess.color '" + std::string(to_string(card.preprocess.color)) + "' gives " +
           std::to_string(card.preprocess.channels()) + " channels but the model takes " +
           std::to_string(config.in_channels));
    }
    if (card.preprocess.width != size || card.preprocess.height != size) {
      fail("preprocess size " + std::to_string(card.preprocess.width) + "x" + std::to_string(card.preprocess.height) +
           " differs from the export input size " + std::to_string(size) + "x" + std::to_string(size));
    }
  } else {
    card.preprocess = PreprocessSpec::unit_scale(size, config.in_channels == 1 ? ColorMode::Gray : ColorMode::Rgb);
    if (card.preprocess.channels() != config.in_channels) {
      fail("no preprocess spec given and no default for " + std::to_string(config.in_channels) + " input channels");
    }
  }
  card.training_data = info.training_data;
  card.test_metrics = info.test_metrics;
  card.intended_use = info.intended_use;
  card.producer_version = loupe::version();
  card.opset = options.opset;
  return card;
}

}  // namespace

onnx::ModelProto export_onnx(models::Classifier& model, const ExportOptions& options) {
  if (options.opset < 13 || options.opset > 17) {
    fail("opset " + std::to_string(options.opset) + " is not supported (13 to 17)");
  }
  const auto& config = model.config();
  const int size = options.input_size > 0 ? options.input_size : config.input_size;
  if (size < models::min_input_size(config)) {
    fail("input size " + std::to_string(size) + " is below " + config.architecture + "'s minimum " +
         std::to_string(models::min_input_size(config)));
  }
  if (config.architecture == "simple_cnn" && config.pooling == models::Pooling::Flatten && size != config.input_size) {
    fail("simple_cnn with pooling 'flatten' is built for " + std::to_string(config.input_size) +
         "x" + std::to_string(config.input_size) + " inputs; it cannot be exported at " + std::to_string(size));
  }
  ModelCard card = make_card(model, options, size);

  EvalModeGuard eval(model);
  torch::NoGradGuard no_grad;
  GraphBuilder g(options.opset);
  // The public output names are reserved first, so that no internal value takes one of them.
  for (const char* name : {"logits", "probabilities", "embedding", "cam", "feature_map", "ood_distance"}) g.value_name(name);
  Emitter emitter(g, model);
  const auto& params = model.parameters();
  const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  const Value input{g.value_name("input"), torch::zeros({1, config.in_channels, size, size}, torch::TensorOptions(device))};

  Value x = input;
  std::optional<Value> feature_map;
  const std::string feature_map_child = model.feature_map_output();
  for (const auto& child : model.named_children()) {
    x = emitter.emit(child.key(), *child.value(), x);
    if (child.key() == feature_map_child) feature_map = x;
  }
  const int64_t classes = config.num_classes;
  if (x.sample.dim() != 2 || x.sample.size(1) != classes) {
    fail("the last module's output is " + shape_text(x.sample) + ", expected logits [1, " + std::to_string(classes) + "]");
  }
  if (!emitter.embedding || emitter.head_weight.empty()) fail("the head Linear (Classifier::head()) was not reached");
  if (!feature_map) fail("no top-level child named '" + feature_map_child + "' (feature_map_output())");

  // Outputs: Identity nodes give the internal values their public names.
  std::vector<std::pair<std::string, torch::Tensor>> outputs;
  const auto add_output = [&](const std::string& name, const std::string& value, const torch::Tensor& sample,
                              const std::string& description) {
    g.node("Identity", {value}, {name}, "output_" + name);
    outputs.emplace_back(name, sample);
    card.outputs.push_back({name, card_shape(sample), description});
  };
  add_output("logits", x.name, x.sample, "class scores before softmax, in class_names order");
  const bool scaled = options.temperature > 0;
  if (scaled && !options.probabilities) fail("temperature scaling needs the probabilities output");
  if (options.probabilities) {
    const bool sigmoid = classes == 1;
    std::string scores = x.name;
    torch::Tensor scores_sample = x.sample;
    std::string description = sigmoid ? "sigmoid of the single logit" : "softmax of the logits over the classes";
    if (scaled) {
      // Temperature scaling: the stored float32 T is the one the card states.
      const float t = static_cast<float>(options.temperature);
      const std::string temperature = g.initializer("temperature", torch::scalar_tensor(t, torch::kFloat32));
      scores = g.op("Div", {x.name, temperature}, "logits_over_temperature");
      scores_sample = x.sample / t;
      char text[160];
      std::snprintf(text, sizeof text, " of logits / T, T = %.6g (temperature scaling, see the card's calibration)",
                    static_cast<double>(t));
      description = (sigmoid ? "sigmoid" : "softmax over the classes") + std::string(text);
    }
    const std::string p = sigmoid ? g.op("Sigmoid", {scores}, "probabilities")
                                  : g.op("Softmax", {scores}, "probabilities",
                                         [](onnx::NodeProto& n) { attr_int(n, "axis", 1); });
    add_output("probabilities", p, sigmoid ? torch::sigmoid(scores_sample) : torch::softmax(scores_sample, 1),
               description);
  }
  if (options.embedding) {
    add_output("embedding", emitter.embedding->name, emitter.embedding->sample,
               "penultimate features: the input of the final Linear layer");
  }
  if (options.cam && model.has_cam()) {
    const torch::Tensor& fm = feature_map->sample;
    const int64_t width = emitter.embedding->sample.size(1);
    if (fm.dim() != 4 || fm.size(1) != width) {
      fail("class activation maps need a [N, " + std::to_string(width) + ", h, w] feature map, got " + shape_text(fm));
    }
    // CAM = head weights x feature map: a 1x1 convolution with W [K, C] viewed as [K, C, 1, 1], no bias.
    const std::string kernel = g.op("Reshape", {emitter.head_weight, g.int64s({classes, width, 1, 1})}, "cam.kernel");
    const std::string cam = g.op("Conv", {feature_map->name, kernel}, "cam", [](onnx::NodeProto& n) {
      attr_ints(n, "kernel_shape", {1, 1});
    });
    add_output("cam", cam, model.class_activation_maps(fm),
               "class activation maps: sum over channels of head weight x feature map (no bias); their spatial "
               "mean plus the head bias equals the logits");
  }
  if (options.feature_map) {
    add_output("feature_map", feature_map->name, feature_map->sample,
               "the last convolutional feature map ('" + feature_map_child + "')");
  }
  if (options.ood) {
    const OodOutput& ood = *options.ood;
    if (!std::isfinite(ood.threshold)) fail("the out-of-distribution threshold is not finite");
    if (ood.fit.embedding_dims != emitter.embedding->sample.size(1)) {
      fail("the out-of-distribution fit is for " + std::to_string(ood.fit.embedding_dims) +
           "-value embeddings but the model's embedding has " + std::to_string(emitter.embedding->sample.size(1)));
    }
    const std::string distance = append_ood_nodes(g, emitter.embedding->name, ood.fit);
    const torch::Tensor sample = mahalanobis_distance(ood.fit, emitter.embedding->sample).to(torch::kFloat32);
    add_output("ood_distance", distance, sample,
               "out-of-distribution distance: squared Mahalanobis distance of the embedding to the nearest class "
               "(see the card's ood); above ood.threshold the image is unlike the training data");
    nlohmann::json entry = options.card.ood.is_object() ? options.card.ood : nlohmann::json::object();
    entry["method"] = "mahalanobis_shared_covariance";
    entry["output"] = "ood_distance";
    entry["threshold"] = ood.threshold;
    entry["dims"] = ood.fit.dims;
    card.ood = entry;
  }
  if (scaled) {
    if (!std::isfinite(options.temperature)) fail("the temperature is not finite");
    nlohmann::json entry = options.card.calibration.is_object() ? options.card.calibration : nlohmann::json::object();
    entry["method"] = "temperature_scaling";
    entry["temperature"] = static_cast<double>(static_cast<float>(options.temperature));
    card.calibration = entry;
  }
  if (options.fold_batch_norm) fold_batch_norms(g);

  // The ModelProto.
  onnx::ModelProto proto;
  proto.set_ir_version(onnx::IR_VERSION);
  proto.set_producer_name("loupe");
  proto.set_producer_version(loupe::version());
  proto.set_domain("org.loupe");
  try {
    proto.set_model_version(std::stoll(card.version));
  } catch (const std::exception&) {
    proto.set_model_version(0);
  }
  proto.set_doc_string(card.name + " (" + card.architecture + "). " + kDisclaimer);
  auto* opset = proto.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  onnx::GraphProto* graph = proto.mutable_graph();
  graph->set_name(card.architecture);
  set_tensor_type(graph->add_input(), input.name, input.sample.sizes().vec());
  for (const auto& [name, sample] : outputs) set_tensor_type(graph->add_output(), name, sample.sizes().vec());
  std::set<std::string> used;
  for (auto& node : g.nodes) {
    for (const auto& in : node.input()) used.insert(in);
    *graph->add_node() = std::move(node);
  }
  g.nodes.clear();
  for (auto& [name, tensor] : g.initializers) {
    if (used.count(name) == 0) continue;  // e.g. batch-norm statistics after folding
    add_initializer(graph, name, tensor);
    tensor = torch::Tensor();  // free as we go (vgg16: 0.5 GB)
  }
  card.weights_sha256 = weights_sha256(proto);
  auto* entry = proto.add_metadata_props();
  entry->set_key(kModelCardKey);
  entry->set_value(card.to_json().dump());
  if (options.check) check_onnx(proto);
  return proto;
}

onnx::ModelProto ood_distance_graph(const MahalanobisFit& fit, int opset) {
  GraphBuilder g(opset);
  g.value_name("ood_distance");
  const std::string input = g.value_name("embedding");
  const std::string distance = append_ood_nodes(g, input, fit);
  g.node("Identity", {distance}, {"ood_distance"}, "output_ood_distance");
  onnx::ModelProto proto;
  proto.set_ir_version(onnx::IR_VERSION);
  proto.set_producer_name("loupe");
  proto.set_producer_version(loupe::version());
  auto* opset_import = proto.add_opset_import();
  opset_import->set_domain("");
  opset_import->set_version(opset);
  onnx::GraphProto* graph = proto.mutable_graph();
  graph->set_name("ood_distance");
  set_tensor_type(graph->add_input(), input, {1, fit.embedding_dims});
  set_tensor_type(graph->add_output(), "ood_distance", {1});
  for (auto& node : g.nodes) *graph->add_node() = std::move(node);
  for (auto& [name, tensor] : g.initializers) {
    add_initializer(graph, name, tensor);
  }
  check_onnx(proto);
  return proto;
}

// [SECTION] Checking, hashing, writing

void check_onnx(onnx::ModelProto& proto) {
  try {
    onnx::checker::check_model(proto);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::InvalidSpec, std::string("ONNX checker: ") + e.what());
  }
  try {
    // Strict: node-level inference errors throw, and inferred shapes must agree with the declared
    // output shapes. Adds value_info for the intermediate values (harmless, and useful to viewers).
    onnx::ShapeInferenceOptions strict(/*check_type=*/true, /*strict_mode=*/1, /*data_prop=*/false);
    onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), strict);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::InvalidSpec, std::string("ONNX shape inference: ") + e.what());
  }
}

std::string serialize_onnx(const onnx::ModelProto& proto) {
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) {
    throw Error(ErrorCode::InvalidArgument, "ONNX export: the model does not serialise (over protobuf's 2 GB limit?)");
  }
  return bytes;
}

void write_onnx(const onnx::ModelProto& proto, const std::string& path) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorCode::Io, path + ": cannot open for writing");
    const bool ok = proto.SerializeToOstream(&out);
    out.flush();
    if (!ok || !out) {
      out.close();
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw Error(ErrorCode::Io, path + ": write failed (disk full, or over protobuf's 2 GB limit?)");
    }
  }
  std::error_code error;
  fs::rename(tmp, path, error);
  if (error) throw Error(ErrorCode::Io, path + ": cannot rename " + tmp + " into place: " + error.message());
}

}  // namespace loupe::exporter
