// The module walker of the ONNX export (private to the exporter): one emitter per block type of
// loupe/models/blocks.h and per LibTorch module the zoo uses, dispatched in Emitter::dispatch().
// Adding an architecture whose blocks are new means adding their emitter here; the exporter
// refuses any module type it does not know, naming it. Each emitter writes the block's nodes
// and computes the block's output on the batch-of-one sample with LibTorch itself, so shapes
// are exact and the parity check (verify.cpp) compares against the same module.
#pragma once

#include <optional>

#include "loupe/models/blocks.h"
#include "loupe/models/zoo.h"
#include "onnx_graph.h"

namespace loupe::exporter::detail {

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

}  // namespace loupe::exporter::detail
