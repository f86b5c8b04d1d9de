// Passes over the exported graph (onnx_graph.h): batch-norm folding and the out-of-distribution
// nodes.
#include <unordered_map>

#include "onnx_graph.h"

namespace loupe::exporter::detail {

// [SECTION] Batch-norm folding

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

}  // namespace loupe::exporter::detail
