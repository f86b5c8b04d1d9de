// ONNX export: every architecture of the zoo against LibTorch under ONNX Runtime (logits, softmax,
// embedding, CAM, feature map; two batch sizes through the dynamic batch dimension), the model card
// of a real (tiny) training run, and the errors for bad models and bad files.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)

#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <regex>

#include "fixtures.h"
#include "loupe/export/onnx_file.h"
#include "loupe/export/onnx_export.h"
#include "loupe/inference/ort_session.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/inference/sha256.h"
#include "loupe/export/run_export.h"
#include "loupe/loupe.h"
#include "loupe/models/zoo.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;
namespace nn = torch::nn;
using namespace loupe;
using namespace loupe::exporter;
using namespace loupe::inference;
using Catch::Matchers::Contains;

namespace {

std::string error_of(const std::function<void()>& fn, ErrorCode* code = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "no error";
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Fresh models have batch norms that are identities in eval (mean 0, var 1, gamma 1, beta 0), which
// would leave half of the batch-norm export untested and let deep nets' activations grow without
// bound. Give every batch norm random affine parameters, then set its running statistics to those
// of a random batch (momentum 1 for one train-mode pass with dropout and stochastic depth off), as
// training on data would: activations stay normalised, as in a trained model.
void randomize_batch_norms(models::Classifier& model, int64_t size) {
  torch::NoGradGuard no_grad;
  std::vector<nn::BatchNorm2dImpl*> norms;
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (auto* bn = m->as<nn::BatchNorm2d>()) {
      bn->weight.uniform_(0.5, 1.0);
      bn->bias.normal_(0.0, 0.1);
      bn->options.momentum(1.0);
      norms.push_back(bn);
    }
  }
  if (norms.empty()) return;
  model.train();
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (m->as<nn::Dropout>() || m->as<models::StochasticDepth>()) m->eval();
  }
  model.forward(torch::randn({8, model.config().in_channels, size, size}));
  model.eval();
  for (auto* bn : norms) bn->options.momentum(0.1);
}

struct ParityCase {
  std::string label;
  models::ModelConfig config;
  ExportOptions options;
};

ParityCase make_case(const std::string& architecture) {
  ParityCase c;
  c.label = architecture;
  c.config.architecture = architecture;
  c.config.num_classes = 3;
  c.config.input_size = architecture == "vgg16" ? 32 : 64;  // vgg16 at 32: its 7x7 pool upsamples 1x1
  c.options.feature_map = true;
  return c;
}

// A random model in a trained model's regime: batch norms as above, and the head at the scale of
// torchvision's vgg/mobilenet init, N(0, 0.01) (efficientnet's init for 3 classes, U(+-1/sqrt(3)),
// gives logits near 100 whose float32 rounding noise alone, LibTorch against itself in float64,
// exceeds 1e-4). The bias is random so that its export is tested too.
std::shared_ptr<models::Classifier> make_model(const models::ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  auto model = models::create_model(config);
  randomize_batch_norms(*model, config.input_size);
  {
    torch::NoGradGuard no_grad;
    model->head()->weight.normal_(0.0, 0.01);
    model->head()->bias.uniform_(-0.5, 0.5);
  }
  model->eval();
  return model;
}

OrtSessionOptions two_threads() {
  OrtSessionOptions o;
  o.threads = 2;
  return o;
}

// A classifier with a module the exporter does not know (Tanh) inside its features.
class TanhNet : public models::Classifier {
 public:
  TanhNet() : Classifier(tanh_config()) {
    features = register_module("features", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 4, 3).padding(1)), nn::Tanh()));
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
    flatten = register_module("flatten", nn::Flatten());
    fc = register_module("fc", nn::Linear(4, 2));
  }
  torch::Tensor embed(torch::Tensor x) override { return flatten->forward(avgpool->forward(feature_map(x))); }
  torch::Tensor feature_map(torch::Tensor x) override { return features->forward(x); }
  std::string feature_map_output() const override { return "features"; }
  nn::Linear head() override { return fc; }

 private:
  static models::ModelConfig tanh_config() {
    models::ModelConfig c;
    c.architecture = "simple_cnn";
    c.input_size = 32;
    return c;
  }
  nn::Sequential features{nullptr};
  nn::AdaptiveAvgPool2d avgpool{nullptr};
  nn::Flatten flatten{nullptr};
  nn::Linear fc{nullptr};
};

// Every primitive the zoo does not use in that form: "same" padding with an odd total, dilated
// convolutions and max pooling, a bias-free Linear, the activations one after another, an
// AdaptiveAvgPool2d that becomes AveragePool (14 -> 7) and one that needs the general averaging
// matrices (7 -> 3), and a single-logit head (sigmoid probabilities).
class PrimitivesNet : public models::Classifier {
 public:
  PrimitivesNet() : Classifier(primitives_config()) {
    features = register_module(
        "features",
        nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 8, 4).padding(torch::kSame)), nn::ReLU6(),
                       nn::Conv2d(nn::Conv2dOptions(8, 8, 3).stride(2).padding(1).groups(8)), models::Hardswish(),
                       nn::Conv2d(nn::Conv2dOptions(8, 8, 3).padding(2).dilation(2).bias(false)), nn::SiLU(),
                       nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(1).dilation(2)), models::Hardsigmoid(),
                       nn::Identity(), nn::Dropout2d(0.5), nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(7))));
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({3, 3})));
    flatten = register_module("flatten", nn::Flatten());
    classifier = register_module(
        "classifier", nn::Sequential(nn::Linear(nn::LinearOptions(72, 16).bias(false)), nn::Sigmoid(), nn::Linear(16, 1)));
  }
  torch::Tensor embed(torch::Tensor x) override {
    auto v = flatten->forward(avgpool->forward(feature_map(x)));
    return classifier[1]->as<nn::Sigmoid>()->forward(classifier[0]->as<nn::Linear>()->forward(v));
  }
  torch::Tensor feature_map(torch::Tensor x) override { return features->forward(x); }
  std::string feature_map_output() const override { return "features"; }
  nn::Linear head() override { return nn::Linear(classifier->ptr<nn::LinearImpl>(2)); }

 private:
  static models::ModelConfig primitives_config() {
    models::ModelConfig c;
    c.architecture = "simple_cnn";
    c.num_classes = 1;
    c.input_size = 32;
    return c;
  }
  nn::Sequential features{nullptr};
  nn::AdaptiveAvgPool2d avgpool{nullptr};
  nn::Flatten flatten{nullptr};
  nn::Sequential classifier{nullptr};
};

models::ModelConfig small_cnn_config() {
  models::ModelConfig c;
  c.architecture = "simple_cnn";
  c.num_classes = 2;
  c.input_size = 32;
  c.conv_channels = {4, 8};
  c.hidden_units = 8;
  return c;
}

std::string exported_bytes(ExportOptions options = {}) {
  torch::manual_seed(5);
  auto model = models::create_model(small_cnn_config());
  return serialize_onnx(export_onnx(*model, options));
}

// The shared core's wire-format reader (what the browser runs) against libprotobuf on the same
// bytes: the graph's inputs and outputs, the parameter count, and the weight ranges, whose SHA-256
// is the card's weights_sha256 (weights_sha256(proto), what export writes). `exported`: bytes as
// export wrote them, whose card must also be the metadata's JSON text byte for byte.
void check_reader_agrees_with_protobuf(const std::string& bytes, const OnnxFileInfo& info, bool exported = true) {
  onnx::ModelProto proto;
  REQUIRE(proto.ParseFromString(bytes));
  CHECK(info.ir_version == proto.ir_version());
  CHECK(info.producer == proto.producer_name() + (proto.producer_version().empty() ? "" : " " + proto.producer_version()));
  int64_t opset = 0;
  for (const auto& o : proto.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  }
  CHECK(info.opset == opset);
  const std::map<int32_t, std::string> type_names = {{1, "float32"}, {10, "float16"}, {11, "float64"}, {7, "int64"},
                                                     {6, "int32"},   {2, "uint8"},    {3, "int8"},     {9, "bool"}};
  const auto same_tensors = [&](const std::vector<TensorInfo>& ours,
                                const google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>& theirs) {
    REQUIRE(ours.size() == static_cast<size_t>(theirs.size()));
    for (int i = 0; i < theirs.size(); ++i) {
      const auto& t = ours[static_cast<size_t>(i)];
      CHECK(t.name == theirs[i].name());
      std::vector<std::string> dims;
      std::string element_type;
      if (theirs[i].type().has_tensor_type()) {
        const auto& tensor = theirs[i].type().tensor_type();
        element_type = type_names.count(tensor.elem_type()) ? type_names.at(tensor.elem_type())
                                                            : "type " + std::to_string(tensor.elem_type());
        for (const auto& d : tensor.shape().dim()) {
          dims.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : d.dim_param().empty() ? "?" : d.dim_param());
        }
      }
      CHECK(t.element_type == element_type);
      CHECK(t.dims == dims);
    }
  };
  same_tensors(info.inputs, proto.graph().input());
  same_tensors(info.outputs, proto.graph().output());
  const auto& initializers = proto.graph().initializer();
  REQUIRE(info.weight_ranges.size() == static_cast<size_t>(initializers.size()));
  uint64_t parameters = 0;
  for (int i = 0; i < initializers.size(); ++i) {
    const ByteRange& r = info.weight_ranges[static_cast<size_t>(i)];
    CHECK(bytes.compare(r.offset, r.size, initializers[i].raw_data()) == 0);
    uint64_t n = 1;
    for (int64_t d : initializers[i].dims()) n *= static_cast<uint64_t>(d);
    parameters += n;
  }
  CHECK(info.parameters == static_cast<int64_t>(parameters));
  const std::string hash = sha256_of_ranges(reinterpret_cast<const uint8_t*>(bytes.data()), info.weight_ranges);
  CHECK(hash == weights_sha256(proto));
  if (!info.card.weights_sha256.empty()) {
    CHECK(info.card.weights_sha256 == hash);
    CHECK(info.weights_verified);
  }
  if (exported) {
    REQUIRE(proto.metadata_props_size() == 1);
    CHECK(info.card.to_json().dump() == proto.metadata_props(0).value());  // the card's JSON, byte for byte
  }
}

}  // namespace

TEST_CASE("every architecture exports and matches LibTorch under ONNX Runtime", "[export][parity]") {
  std::vector<ParityCase> cases;
  for (const auto& architecture : models::architectures()) cases.push_back(make_case(architecture));
  {  // simple_cnn with global pooling and no hidden layer: the CAM variant
    ParityCase c = make_case("simple_cnn");
    c.label = "simple_cnn (global avg, CAM)";
    c.config.pooling = models::Pooling::GlobalAvg;
    c.config.hidden_units = 0;
    cases.push_back(c);
  }
  {  // one gray input
    ParityCase c = make_case("resnet18");
    c.label = "resnet18 (1 channel)";
    c.config.in_channels = 1;
    cases.push_back(c);
  }
  {  // batch norm as BatchNormalization nodes instead of folded
    ParityCase c = make_case("resnet18");
    c.label = "resnet18 (batch norm not folded)";
    c.options.fold_batch_norm = false;
    cases.push_back(c);
  }
  {  // opset 14+: the HardSwish op instead of x * HardSigmoid(x)
    ParityCase c = make_case("mobilenet_v3_large");
    c.label = "mobilenet_v3_large (opset 17)";
    c.options.opset = 17;
    cases.push_back(c);
  }

  // Catch runs the test case once per section: print the table's header once.
  static bool header_printed = false;
  if (!header_printed) {
    header_printed = true;
    std::printf("\nONNX export parity: max |ONNX Runtime %s - LibTorch| per output, random N(0,1) inputs, batches 2 "
                "and 3\n%-34s %-6s %-9s %-9s %-9s %-9s %-9s %-9s %s\n",
                OrtSession::runtime_version().c_str(), "model", "input", "max|logit|", "logits", "probs", "embedding",
                "cam", "feat.map", "seconds");
  }
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.label) {
      const auto start = std::chrono::steady_clock::now();
      auto model = make_model(c.config, std::hash<std::string>()(c.label));
      const onnx::ModelProto proto = export_onnx(*model, c.options);  // checker + strict shape inference inside
      const std::string bytes = serialize_onnx(proto);
      const OnnxFileInfo info = read_onnx_bytes(bytes, c.label);
      check_reader_agrees_with_protobuf(bytes, info);
      CHECK(info.card.architecture == c.config.architecture);
      CHECK(info.inputs.at(0).dims ==
            std::vector<std::string>{"batch", std::to_string(c.config.in_channels), std::to_string(c.config.input_size),
                                     std::to_string(c.config.input_size)});
      CHECK(info.card.has_output("cam") == model->has_cam());

      const OrtSession session = OrtSession::from_bytes(bytes, two_threads());
      const ParityReport report = verify_onnx(*model, session);
      const auto diff = [&](const std::string& name, bool reference = false) {
        for (const auto& o : report.outputs) {
          if (o.output == name) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.2e", reference ? o.max_abs_reference : o.max_abs_diff);
            return std::string(buf);
          }
        }
        return std::string("-");
      };
      std::printf("%-34s %-6s %-10s %-9s %-9s %-9s %-9s %-9s %.1f\n", c.label.c_str(),
                  (std::to_string(c.config.in_channels) + "x" + std::to_string(c.config.input_size)).c_str(),
                  diff("logits", true).c_str(), diff("logits").c_str(), diff("probabilities").c_str(), diff("embedding").c_str(), diff("cam").c_str(),
                  diff("feature_map").c_str(), seconds_since(start));
      std::fflush(stdout);
      INFO(report.to_text());
      CHECK(report.passed);
      CHECK(report.max_logits_diff() <= 1e-4);
      CHECK(report.outputs.size() == (model->has_cam() ? 5u : 4u));
      CHECK(report.inputs.size() == 2);
    }
  }
}

TEST_CASE("primitives outside the zoo's usual forms export exactly", "[export][parity]") {
  torch::manual_seed(21);
  PrimitivesNet model;
  model.eval();
  ExportOptions options;
  options.feature_map = true;
  const onnx::ModelProto proto = export_onnx(model, options);
  std::map<std::string, int> ops;
  for (const auto& node : proto.graph().node()) ++ops[node.op_type()];
  CHECK(ops["AveragePool"] == 1);
  CHECK(ops["MatMul"] == 2);
  CHECK(ops["Sigmoid"] == 3);  // SiLU's gate, the hidden activation, the single logit's probability
  const ParityReport report = verify_onnx(model, OrtSession::from_bytes(serialize_onnx(proto), two_threads()));
  INFO(report.to_text());
  CHECK(report.passed);
  CHECK(report.max_logits_diff() <= 1e-4);
  CHECK(report.outputs.size() == 4);  // logits, probabilities (sigmoid), embedding, feature_map
}

TEST_CASE("exporting a training run embeds a complete model card", "[export][card]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 10, 32);
  const nlohmann::json doc = {
      {"name", "export-unit"},
      {"description", "shapes, for the export test"},
      {"data", {{"path", (dir.path / "data").string()}}},
      {"split", {{"val", 0.2}, {"test", 0.3}, {"seed", 11}}},
      {"preprocess", {{"color", "rgb"}, {"size", 32}, {"mean", {0.5, 0.4, 0.3}}, {"std", {0.2, 0.25, 0.3}}}},
      {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {8, 16}}, {"hidden_units", 16}}},
      {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}},
      {"epochs", 2},
      {"batch_size", 8},
      {"threads", 2}};
  const train::TrainConfig config = train::TrainConfig::from_json(doc);
  const std::string run = (dir.path / "run").string();
  train::RunOptions quiet;
  quiet.progress = false;
  train::run_training(config, run, quiet);

  RunExportOptions options;
  options.threads = 2;
  const RunExportResult result = run_export(run, "", options);
  std::printf("\nrun export (simple_cnn, 3 classes, %d real images): %s%s\n", options.real_images,
              result.parity.to_text().c_str(), result.note.c_str());
  CHECK(result.onnx_path == (fs::path(run) / "model.onnx").string());
  CHECK(fs::exists(result.onnx_path));
  CHECK_FALSE(fs::exists(result.onnx_path + ".tmp"));
  CHECK(result.parity.passed);
  CHECK(result.note.empty());
  REQUIRE(result.parity.inputs.size() == 3);
  CHECK_THAT(result.parity.inputs[2], Contains("images [8, 3, 32, 32]"));

  const OnnxFileInfo info = read_onnx_file(result.onnx_path);
  const ModelCard& card = info.card;
  CHECK(info.weights_verified);
  CHECK(card.name == "export-unit");
  CHECK(card.description == "shapes, for the export test");
  CHECK(card.architecture == "simple_cnn");
  CHECK(card.class_names == std::vector<std::string>{"disc", "square", "stripes"});
  CHECK(card.preprocess == config.preprocess);
  CHECK(card.preprocess.to_json() == config.preprocess.to_json());
  std::ifstream config_json(fs::path(run) / "config.json");
  const train::TrainConfig resolved = train::TrainConfig::from_json(nlohmann::json::parse(config_json));
  CHECK(card_model_config(card) == resolved.model);
  CHECK(models::ModelConfig::from_json(card.model) == resolved.model);
  CHECK(card.model == resolved.model.to_json());
  CHECK(card.model.at("num_classes") == 3);
  CHECK(card.input_channels == 3);
  CHECK(card.input_height == 32);
  CHECK(card.input_width == 32);
  CHECK(std::regex_match(card.created_utc, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  CHECK(std::regex_match(card.weights_sha256, std::regex("[0-9a-f]{64}")));
  CHECK_THAT(card.disclaimer, Contains("not a diagnostic device"));
  CHECK_FALSE(card.intended_use.empty());
  CHECK(card.has_output("logits"));
  CHECK(card.has_output("probabilities"));
  CHECK(card.has_output("embedding"));
  CHECK_FALSE(card.has_output("cam"));  // flatten + hidden layer: no exact CAM
  // The self-test: LibTorch's outputs for the synthetic images, rerun by ONNX Runtime at export.
  REQUIRE(card.self_test);
  CHECK(card.self_test->images.size() == 4);
  CHECK(card.self_test->output_names() == std::vector<std::string>{"logits", "ood_distance", "probabilities"});
  CHECK(result.self_test.passed);
  CHECK(result.self_test.max_abs_diff <= result.self_test.worst_bound);

  REQUIRE(card.training_data.is_object());
  CHECK(card.training_data["folder"] == (dir.path / "data").string());
  CHECK(card.training_data["class_counts"] == nlohmann::json({10, 10, 10}));
  CHECK(card.training_data["split"]["seed"] == 11);
  REQUIRE(card.test_metrics.is_object());
  CHECK(card.test_metrics.contains("accuracy"));
  CHECK(card.test_metrics["classes"].size() == 3);
  for (const char* key : {"precision", "recall", "f1", "support"}) CHECK(card.test_metrics["classes"][0].contains(key));
  CHECK(card.test_metrics["confusion_matrix"]["matrix"].size() == 3);
  CHECK_FALSE(card.test_metrics.contains("report_text"));

  // The sidecar is the same card.
  std::ifstream sidecar(result.card_path);
  REQUIRE(sidecar);
  CHECK(ModelCard::from_json(nlohmann::json::parse(sidecar)).to_json() == card.to_json());
  CHECK_THAT(describe(info), Contains("disc square stripes") && Contains("output logits float32 [batch, 3]"));
  {
    std::ifstream in(result.onnx_path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    check_reader_agrees_with_protobuf(bytes, info);
  }

  // The ONNX model computes what the checkpoint computes on a real image.
  auto model = models::create_model(config.model);
  train::load_model_file(*model, (fs::path(run) / "checkpoints" / "best.pt").string());
  model->eval();
  const Image image = decode_image(read_file((dir.path / "data" / "square" / "3.png").string()));
  const Tensor x = preprocess(image, card.preprocess);
  const OrtSession session(result.onnx_path, two_threads());
  const auto out = session.run(x, {"logits", "probabilities"});
  torch::NoGradGuard no_grad;
  const torch::Tensor expected = model->forward(torch::from_blob(const_cast<float*>(x.data.data()), x.shape).clone());
  const Tensor& logits = out.at("logits");
  REQUIRE(logits.shape == std::vector<int64_t>{1, 3});
  for (int64_t k = 0; k < 3; ++k) CHECK(std::abs(logits.data[static_cast<size_t>(k)] - expected[0][k].item<float>()) <= 1e-4);
  const auto& p = out.at("probabilities").data;
  CHECK(std::abs(p[0] + p[1] + p[2] - 1.0f) < 1e-5f);
}

namespace {

// The card inside an exported proto, edited in place (the file keeps its layout otherwise).
void edit_card(onnx::ModelProto& proto, const std::function<void(nlohmann::json&)>& edit) {
  for (auto& entry : *proto.mutable_metadata_props()) {
    if (entry.key() != kModelCardKey) continue;
    nlohmann::json card = nlohmann::json::parse(entry.value());
    edit(card);
    entry.set_value(card.dump());
    return;
  }
  FAIL("no model card in the proto");
}

SelfTestResult self_test_of(const onnx::ModelProto& proto) {
  const std::string bytes = serialize_onnx(proto);
  const OnnxFileInfo info = read_onnx_bytes(bytes, "edited.onnx");
  REQUIRE(info.card.self_test);
  return run_self_test(info.card, OrtSession::from_bytes(bytes, two_threads()));
}

}  // namespace

TEST_CASE("the self-test in the card: passes under ONNX Runtime, fails for changed expectations or weights",
          "[export][self-test]") {
  torch::manual_seed(5);
  auto model = models::create_model(small_cnn_config());
  const onnx::ModelProto exported = export_onnx(*model);
  const SelfTestResult passed = self_test_of(exported);
  CHECK(passed.passed);
  CHECK(passed.images == 4);
  CHECK(passed.max_abs_diff <= 1e-5);
  CAPTURE(passed.summary());

  SECTION("an expectation changed without its hash: the record is refused before anything runs") {
    onnx::ModelProto proto = exported;
    edit_card(proto, [](nlohmann::json& card) { card["self_test"]["outputs"]["logits"]["values"][0] = 0.123; });
    const SelfTestResult r = self_test_of(proto);
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.problem, Contains("SHA-256") && Contains("modified or damaged"));
  }
  SECTION("an expectation changed with a matching hash: the model's answer differs") {
    onnx::ModelProto proto = exported;
    edit_card(proto, [](nlohmann::json& card) {
      SelfTest test = SelfTest::from_json(card["self_test"]);
      test.outputs["logits"].values[1] += 0.05;
      test.sha256 = sha256_hex(self_test_digest_text(test));
      card["self_test"] = test.to_json();
    });
    const SelfTestResult r = self_test_of(proto);
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.problem, Contains("'logits' differs") && Contains("0.05"));
  }
  SECTION("weights changed, and the card's weights hash with them: the outputs give it away") {
    onnx::ModelProto proto = exported;
    std::string& raw = *proto.mutable_graph()->mutable_initializer(0)->mutable_raw_data();
    float first = 0;
    std::memcpy(&first, raw.data(), sizeof first);
    first += 0.25f;
    std::memcpy(raw.data(), &first, sizeof first);
    const std::string weights = weights_sha256(proto);
    edit_card(proto, [&](nlohmann::json& card) { card["weights_sha256"] = weights; });
    const SelfTestResult r = self_test_of(proto);
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.summary(), Contains("FAILED"));
  }
}

TEST_CASE("the shipped models: the shared reader and libprotobuf agree, the weights verify", "[export][card]") {
  const fs::path folder = fs::path(__FILE__).parent_path().parent_path().parent_path() / "models" / "shipped";
  std::vector<fs::path> models;
  if (fs::is_directory(folder)) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      if (entry.path().extension() == ".onnx") models.push_back(entry.path());
    }
  }
  REQUIRE(models.size() >= 2);  // the repository ships them: never a skip
  std::sort(models.begin(), models.end());
  for (const auto& path : models) {
    CAPTURE(path.string());
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const OnnxFileInfo info = read_onnx_bytes(bytes, path.string());
    CHECK(info.weights_verified);
    check_reader_agrees_with_protobuf(bytes, info);
    const models::ModelConfig config = card_model_config(info.card);
    CHECK(config.num_classes == static_cast<int>(info.card.class_names.size()));
    CHECK(config.to_json() == info.card.model);

    // The shared core's probabilities (from the logits, with the card's temperature) are the
    // graph's own "probabilities" output, and its flag is the card's threshold on ood_distance.
    const OrtSession session = OrtSession::from_bytes(bytes, two_threads());
    const PreprocessSpec& spec = info.card.preprocess;
    torch::manual_seed(3);
    const int64_t batch = 4;
    const torch::Tensor x = torch::randn({batch, spec.channels(), spec.height, spec.width}) * 1.5;
    Tensor input;
    input.shape = {batch, spec.channels(), spec.height, spec.width};
    input.data.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
    std::vector<std::string> names = prediction_outputs(info.card);
    names.push_back("probabilities");
    const auto out = session.run(input, names);
    const size_t classes = info.card.class_names.size();
    REQUIRE(info.card.ood);
    // The self-test the page runs before using the model, here with native ONNX Runtime.
    REQUIRE(info.card.self_test);
    const SelfTestResult self_test = run_self_test(info.card, session);
    CHECK(self_test.passed);
    CAPTURE(self_test.summary());
    for (int64_t i = 0; i < batch; ++i) {
      ImageOutputs image;
      image.logits = out.at("logits").data.data() + i * static_cast<int64_t>(classes);
      image.logits_size = classes;
      image.ood_distance = out.at(info.card.ood->output).data.data() + i;
      const Prediction p = interpret_outputs(info.card, image);
      for (size_t c = 0; c < classes; ++c) {
        CHECK(std::abs(p.probabilities[c] - out.at("probabilities").data[static_cast<size_t>(i) * classes + c]) <= 1e-6);
      }
      CHECK(p.out_of_distribution == (*image.ood_distance > info.card.ood->threshold));
    }
  }
}

TEST_CASE("export and ONNX-file errors name the problem", "[export][bad-input]") {
  const test::TempDir dir;
  const auto write = [&](const std::string& name, const std::string& bytes) {
    const std::string path = (dir.path / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  };
  ErrorCode code{};

  SECTION("an unsupported layer names its type and place") {
    TanhNet model;
    const std::string message = error_of([&] { export_onnx(model); }, &code);
    CHECK(code == ErrorCode::InvalidArgument);
    CHECK_THAT(message, Contains("unsupported module type") && Contains("Tanh") && Contains("'features.1'"));
  }
  SECTION("card fields that disagree with the model") {
    auto model = models::create_model(small_cnn_config());
    ExportOptions options;
    options.card.class_names = {"a", "b", "c"};
    CHECK_THAT(error_of([&] { export_onnx(*model, options); }), Contains("3 class names") && Contains("2 outputs"));
    options.card.class_names = {};
    options.card.preprocess = PreprocessSpec::unit_scale(64);
    CHECK_THAT(error_of([&] { export_onnx(*model, options); }), Contains("preprocess size 64x64"));
    ExportOptions opset;
    opset.opset = 11;
    CHECK_THAT(error_of([&] { export_onnx(*model, opset); }), Contains("opset 11"));
  }
  SECTION("files that are not ONNX, empty, truncated or corrupt") {
    CHECK_THAT(error_of([&] { read_onnx_file((dir.path / "missing.onnx").string()); }, &code), Contains("cannot open"));
    CHECK(code == ErrorCode::Io);
    CHECK_THAT(error_of([&] { read_onnx_file(write("empty.onnx", "")); }, &code), Contains("empty file"));
    CHECK(code == ErrorCode::EmptyInput);
    const std::string png("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    CHECK_THAT(error_of([&] { read_onnx_file(write("image.onnx", png)); }, &code),
               Contains("not an ONNX model") && Contains("89 50 4E 47"));
    CHECK(code == ErrorCode::UnknownFormat);
    CHECK_THAT(error_of([&] { read_onnx_file(write("text.onnx", "{\"hello\": 1}")); }), Contains("not an ONNX model"));

    const std::string bytes = exported_bytes();
    REQUIRE_NOTHROW(read_onnx_bytes(bytes, "whole"));
    for (const size_t cut : {bytes.size() / 2, bytes.size() - 100, static_cast<size_t>(40)}) {
      CAPTURE(cut);
      const std::string message = error_of([&] { read_onnx_file(write("cut.onnx", bytes.substr(0, cut))); }, &code);
      CHECK_THAT(message, Contains("truncated") || Contains("no Loupe model card"));
    }
    std::string flipped = bytes;
    flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x5A);
    CHECK_THAT(error_of([&] { read_onnx_bytes(flipped, "flipped"); }),
               Contains("truncated or corrupt") || Contains("SHA-256") || Contains("model card"));
  }
  SECTION("no card, a broken card, a card that disagrees with the graph, tampered weights") {
    torch::manual_seed(5);
    auto model = models::create_model(small_cnn_config());
    const onnx::ModelProto proto = export_onnx(*model);

    onnx::ModelProto no_card = proto;
    no_card.clear_metadata_props();
    CHECK_THAT(error_of([&] { read_onnx_file(write("no_card.onnx", serialize_onnx(no_card))); }, &code),
               Contains("no Loupe model card"));
    CHECK(code == ErrorCode::InvalidSpec);

    onnx::ModelProto not_json = proto;
    not_json.mutable_metadata_props(0)->set_value("{not json");
    CHECK_THAT(error_of([&] { read_onnx_bytes(serialize_onnx(not_json), "not_json"); }), Contains("not valid JSON"));

    // A card claiming 3 classes (consistently within itself) on a 2-class graph.
    nlohmann::json card = nlohmann::json::parse(proto.metadata_props(0).value());
    card["class_names"] = {"a", "b", "c"};
    card["model"]["num_classes"] = 3;
    onnx::ModelProto three = proto;
    three.mutable_metadata_props(0)->set_value(card.dump());
    CHECK_THAT(error_of([&] { read_onnx_file(write("three.onnx", serialize_onnx(three))); }, &code),
               Contains("lists 3 classes") && Contains("'logits' output has shape [batch, 2]"));
    CHECK(code == ErrorCode::InvalidSpec);

    card = nlohmann::json::parse(proto.metadata_props(0).value());
    card.erase("preprocess");
    onnx::ModelProto no_preprocess = proto;
    no_preprocess.mutable_metadata_props(0)->set_value(card.dump());
    CHECK_THAT(error_of([&] { read_onnx_bytes(serialize_onnx(no_preprocess), "x"); }),
               Contains("model card: preprocess: missing"));

    // The model config: the shared core keeps it as JSON, the native reader checks it strictly.
    card = nlohmann::json::parse(proto.metadata_props(0).value());
    card["model"]["pooling"] = "sideways";
    onnx::ModelProto bad_model = proto;
    bad_model.mutable_metadata_props(0)->set_value(card.dump());
    const std::string bad_model_bytes = serialize_onnx(bad_model);
    CHECK_NOTHROW(read_onnx_model(reinterpret_cast<const uint8_t*>(bad_model_bytes.data()), bad_model_bytes.size(), "x"));
    CHECK_THAT(error_of([&] { read_onnx_bytes(bad_model_bytes, "bad_model"); }, &code),
               Contains("bad_model: model card: model: ") && Contains("pooling") && Contains("sideways"));
    CHECK(code == ErrorCode::InvalidSpec);
    card = nlohmann::json::parse(proto.metadata_props(0).value());
    card["model"].erase("num_classes");  // ModelConfig's default, 2, is the class count here
    card["class_names"] = {"a", "b"};
    onnx::ModelProto default_classes = proto;
    default_classes.mutable_metadata_props(0)->set_value(card.dump());
    CHECK(card_model_config(read_onnx_bytes(serialize_onnx(default_classes), "default").card).num_classes == 2);

    onnx::ModelProto tampered = proto;
    std::string* raw = tampered.mutable_graph()->mutable_initializer(0)->mutable_raw_data();
    (*raw)[0] = static_cast<char>((*raw)[0] ^ 1);
    CHECK_THAT(error_of([&] { read_onnx_bytes(serialize_onnx(tampered), "tampered"); }),
               Contains("do not match the model card's SHA-256"));
    ReadOptions trusting;
    trusting.verify_weights = false;
    CHECK_NOTHROW(read_onnx_bytes(serialize_onnx(tampered), "tampered", trusting));
  }
  SECTION("damaged files: the shared reader calls corrupt exactly what libprotobuf cannot parse, and agrees with it") {
    const std::string original = exported_bytes();
    std::mt19937 rng(99);
    int protobuf_parsed = 0, agreed = 0;
    for (int trial = 0; trial < 300; ++trial) {
      std::string damaged = original;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < flips; ++i) damaged[rng() % damaged.size()] = static_cast<char>(rng());
      if (rng() % 4 == 0) damaged.resize(rng() % damaged.size());
      CAPTURE(trial);
      onnx::ModelProto proto;
      const bool parsed = proto.ParseFromString(damaged);
      protobuf_parsed += parsed ? 1 : 0;
      try {
        const OnnxFileInfo info = read_onnx_bytes(damaged, "damaged");
        REQUIRE(parsed);
        check_reader_agrees_with_protobuf(damaged, info, /*exported=*/false);
        ++agreed;
      } catch (const Error& e) {
        const std::string message = e.what();
        // Checked before parsing: the first byte, and zero bytes (which protobuf parses as an empty model).
        if (message.find("starts with bytes") != std::string::npos || message.find("empty file") != std::string::npos) continue;
        CHECK(parsed == (message.find("do not parse") == std::string::npos));
      }
    }
    CHECK(protobuf_parsed > 0);
    std::printf("\ndamaged ONNX files: libprotobuf parsed %d of 300, the shared reader read %d of those in full\n",
                protobuf_parsed, agreed);
  }
  SECTION("ONNX Runtime errors become loupe errors") {
    CHECK_THAT(error_of([&] { OrtSession((dir.path / "missing.onnx").string()); }), Contains("ONNX Runtime"));
    const OrtSession session = OrtSession::from_bytes(exported_bytes(), two_threads());
    Tensor wrong;
    wrong.shape = {1, 3, 16, 16};
    wrong.data.assign(3 * 16 * 16, 0.0f);
    CHECK_THAT(error_of([&] { session.run(wrong); }), Contains("ONNX Runtime"));
  }
  SECTION("a run folder that is not one") {
    CHECK_THAT(error_of([&] { run_export((dir.path / "nothing").string(), ""); }, &code), Contains("not a folder"));
    fs::create_directories(dir.path / "run");
    CHECK_THAT(error_of([&] { run_export((dir.path / "run").string(), ""); }), Contains("config.json"));
  }
}

