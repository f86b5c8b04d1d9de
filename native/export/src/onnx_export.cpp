// ONNX export: the outputs, the model card and the ModelProto (export_onnx), checking and
// serialisation. The pieces it assembles:
//   onnx_graph.h          helpers, values, the graph builder (initializers kept as tensors until the end)
//   onnx_emitter.h        the module tree -> nodes, one emitter per block type
//   onnx_graph_passes.cpp batch-norm folding, the "ood_distance" nodes (calibration.h)
// Index:
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
#include "loupe/version.h"
#include "onnx_emitter.h"
#include "onnx_graph.h"
#include "weights_hash.h"

namespace loupe::exporter {

namespace nn = torch::nn;
using namespace detail;  // the graph builder, emitters and passes (onnx_graph.h, onnx_emitter.h)

namespace {

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
  card.intended_images = info.intended_images;
  card.producer_version = loupe::version();
  card.opset = options.opset;
  card.precision = kPrecisionFp32;  // the int8 form is loupe quantize's (quantize.h)
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
    card.ood = OodCheck::from_json(entry);
  }
  if (scaled) {
    if (!std::isfinite(options.temperature)) fail("the temperature is not finite");
    nlohmann::json entry = options.card.calibration.is_object() ? options.card.calibration : nlohmann::json::object();
    entry["method"] = "temperature_scaling";
    entry["temperature"] = static_cast<double>(static_cast<float>(options.temperature));
    card.calibration = Calibration::from_json(entry);
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
  if (options.self_test) card.self_test = make_self_test(model, card, options);
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
