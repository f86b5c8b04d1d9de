// int8 models (native/export/.../quantize.h): the QDQ pass on a MobileNetV2 (every Conv of the body
// int8, fused by ONNX Runtime into QLinearConv and QLinearAdd, the CAM still summing to the
// logits), the whole step on a small trained model (outputs within a stated tolerance of fp32, the
// gate, the int8 card, the self-test, the weights hash over the int8 initializers), the gate
// refusing a model calibrated on degenerate images, an int8 operator ONNX Runtime lacks, and the
// shipped int8 models.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)

#include <onnxruntime_cxx_api.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "fixtures.h"
#include "loupe/export/onnx_export.h"
#include "loupe/export/onnx_file.h"
#include "loupe/export/quantize.h"
#include "loupe/export/run_export.h"
#include "loupe/inference/ort_session.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/loupe.h"
#include "loupe/models/zoo.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;
namespace nn = torch::nn;
using namespace loupe;
using namespace loupe::exporter;
using Catch::Matchers::Contains;

namespace {

// Batch norms with random affine parameters and the running statistics of `images` (what training
// on them leaves; fresh ones are identities, and a deep net's activations then grow unbounded or
// die, which says nothing about quantising a trained one).
void settle_batch_norms(models::Classifier& model, const torch::Tensor& images) {
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
  model.train();
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (m->as<nn::Dropout>() || m->as<models::StochasticDepth>()) m->eval();
  }
  model.forward(images);
  model.eval();
}

// Preprocessed images, stacked [n, C, H, W].
Tensor load_images(const std::vector<std::string>& files, const PreprocessSpec& spec) {
  Tensor x;
  x.shape = {static_cast<int64_t>(files.size()), spec.channels(), spec.height, spec.width};
  for (const std::string& file : files) {
    const Tensor one = preprocess(decode_image_file(file), spec);
    x.data.insert(x.data.end(), one.data.begin(), one.data.end());
  }
  return x;
}

std::vector<std::string> image_files(const fs::path& root) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The op types ONNX Runtime runs after its graph optimisations (QDQ fusion is a level-2, "extended",
// transformation), read back from the optimised model it saves.
std::map<std::string, int> ort_optimised_ops(const onnx::ModelProto& proto, const fs::path& saved) {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "loupe-test");
  const std::string bytes = serialize_onnx(proto);
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(1);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_EXTENDED);
  options.SetOptimizedModelFilePath(saved.c_str());
  Ort::Session session(env, bytes.data(), bytes.size(), options);
  onnx::ModelProto optimised;
  std::ifstream in(saved, std::ios::binary);
  REQUIRE(optimised.ParseFromIstream(&in));
  return count_ops(optimised);
}

const onnx::NodeProto* producer(const onnx::GraphProto& graph, const std::string& tensor) {
  for (const auto& node : graph.node()) {
    for (const auto& out : node.output()) {
      if (out == tensor) return &node;
    }
  }
  return nullptr;
}

const onnx::TensorProto* initializer(const onnx::GraphProto& graph, const std::string& name) {
  for (const auto& init : graph.initializer()) {
    if (init.name() == name) return &init;
  }
  return nullptr;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.data.size() == b.data.size());
  double d = 0;
  for (size_t i = 0; i < a.data.size(); ++i) d = std::max(d, std::fabs(static_cast<double>(a.data[i]) - b.data[i]));
  return d;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (float v : a.data) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

// A short training run on generated shapes (simple_cnn: Conv + Relu + MaxPool twice, Flatten, a
// hidden Gemm + Relu, the head), exported with its calibration and OOD check.
struct TrainedRun {
  test::TempDir dir;
  std::string run, model;
  TrainedRun() {
    test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 24, 32);
    const nlohmann::json doc = {
        {"name", "quantize-unit"},
        {"data", {{"path", (dir.path / "data").string()}}},
        {"split", {{"val", 0.25}, {"test", 0.25}, {"seed", 3}}},
        {"preprocess", {{"color", "rgb"}, {"size", 32}, {"mean", {0.5}}, {"std", {0.5}}}},
        {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {8, 16}}, {"hidden_units", 32}}},
        {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}},
        {"epochs", 6},
        {"batch_size", 8},
        {"seed", 3},
        {"threads", 2}};
    run = (dir.path / "run").string();
    train::RunOptions quiet;
    quiet.progress = false;
    train::run_training(train::TrainConfig::from_json(doc), run, quiet);
    RunExportOptions options;
    options.threads = 2;
    model = run_export(run, "", options).onnx_path;
  }
};

}  // namespace

TEST_CASE("the QDQ pass: every Conv of the body int8, fused by ONNX Runtime, the CAM intact", "[quantize]") {
  const test::TempDir dir;
  const int size = 64;
  // Calibrated on 24 generated images; compared on 12 others. The batch norms' statistics are the
  // calibration images', as training on them would leave them.
  test::write_shapes_dataset(dir.path / "calibration", {"a", "b", "c"}, 8, size);
  test::write_shapes_dataset(dir.path / "held-out", {"d", "e", "f"}, 4, 80);
  const PreprocessSpec spec = PreprocessSpec::unit_scale(size, ColorMode::Rgb);
  Tensor calibration_images = load_images(image_files(dir.path / "calibration"), spec);
  auto model = test::seeded_model("mobilenet_v2", 3, size, 17);
  settle_batch_norms(*model, torch::from_blob(calibration_images.data.data(), calibration_images.shape, torch::kFloat32));
  {
    torch::NoGradGuard no_grad;
    model->head()->weight.normal_(0.0, 0.05);
  }
  ExportOptions export_options;
  export_options.self_test = false;
  export_options.card.preprocess = spec;
  const onnx::ModelProto fp32 = export_onnx(*model, export_options);
  const ModelCard card = read_onnx_bytes(serialize_onnx(fp32), "fp32").card;

  const QdqPlan plan = plan_qdq(fp32);
  std::set<std::string> weighted(plan.weighted_nodes.begin(), plan.weighted_nodes.end());
  int body_convs = 0;
  for (const auto& node : fp32.graph().node()) {
    if (node.op_type() != "Conv") continue;
    if (node.name() == "cam") {
      CHECK_FALSE(weighted.count(node.name()));  // the CAM reuses the float head weights
    } else {
      CHECK(weighted.count(node.name()));
      ++body_convs;
    }
  }
  CHECK(body_convs == 52);                           // MobileNetV2: 52 convolutions
  CHECK(plan.weighted_nodes.size() == 52);           // and nothing else: its head Gemm stays float
  CHECK(plan.fused_activation.size() == 35);         // every ReLU6 (the projections are linear)
  CHECK(plan.head == "classifier.1");

  QuantizeOptions options;
  options.threads = 2;
  options.range = RangeMethod::min_max;
  const QdqCalibration calibration = calibrate_qdq(fp32, plan, image_files(dir.path / "calibration"), card.preprocess, options);
  CHECK(calibration.images == 24);
  CHECK(calibration.unreadable == 0);
  CHECK(calibration.ranges.size() == plan.calibrated.size());
  CHECK(calibration.output_shift.size() == 52);  // bias correction for every weighted node
  const onnx::ModelProto int8 = apply_qdq(fp32, plan, calibration, options);

  // Every body Conv reads int8 weights (per output channel) and a dequantised input, and its
  // output goes only to a QuantizeLinear; the CAM's Conv stays float.
  const onnx::GraphProto& graph = int8.graph();
  int int8_convs = 0;
  for (const auto& node : graph.node()) {
    if (node.op_type() != "Conv" || node.name() == "cam") continue;
    CAPTURE(node.name());
    const onnx::NodeProto* w = producer(graph, node.input(1));
    REQUIRE(w);
    CHECK(w->op_type() == "DequantizeLinear");
    const onnx::TensorProto* w_int8 = initializer(graph, w->input(0));
    REQUIRE(w_int8);
    CHECK(w_int8->data_type() == onnx::TensorProto::INT8);
    CHECK(initializer(graph, w->input(1))->dims(0) == w_int8->dims(0));  // a scale per output channel
    const onnx::NodeProto* x = producer(graph, node.input(0));
    REQUIRE(x);
    CHECK(x->op_type() == "DequantizeLinear");
    if (node.input_size() > 2) CHECK(producer(graph, node.input(2))->op_type() == "DequantizeLinear");
    int users = 0, quantizers = 0;
    for (const auto& other : graph.node()) {
      for (const auto& in : other.input()) {
        if (in != node.output(0)) continue;
        ++users;
        quantizers += other.op_type() == "QuantizeLinear";
      }
    }
    CHECK((users == 1 && quantizers == 1));
    ++int8_convs;
  }
  CHECK(int8_convs == 52);
  const std::map<std::string, int> ops = count_ops(int8);
  CHECK(ops.count("Clip") == 0);  // ReLU6 is the uint8 range [0, 6] now
  CHECK(ops.at("Gemm") == 1);     // the head

  // ONNX Runtime runs them as QLinearConv (and the residual sums as QLinearAdd).
  const std::map<std::string, int> optimised = ort_optimised_ops(int8, dir.path / "optimised.onnx");
  CHECK(optimised.at("QLinearConv") == 52);
  CHECK(optimised.at("QLinearAdd") == 10);
  std::printf("\nQDQ mobilenet_v2 at %d px: %d int8 Conv, ONNX Runtime: %d QLinearConv, %d QLinearAdd, %d Conv left "
              "(the CAM)\n",
              size, int8_convs, optimised.at("QLinearConv"), optimised.at("QLinearAdd"),
              optimised.count("Conv") ? optimised.at("Conv") : 0);

  // The CAM still sums to the logits: mean over its cells + the head's bias = the logits, in the
  // int8 graph too (both read the same dequantised feature map with the same float head weights).
  // (How close int8 stays to fp32 is checked on a trained model below: this one's weights are
  // random, and a random 52-layer net carries no signal for int8 rounding to preserve; its logits
  // differ by about their own size.)
  const inference::OrtSession int8_session = inference::OrtSession::from_bytes(serialize_onnx(int8));
  const Tensor x = load_images(image_files(dir.path / "held-out"), card.preprocess);
  const auto q = int8_session.run(x, {"logits", "cam"});
  const Tensor& cam = q.at("cam");
  const int64_t cells = cam.shape[2] * cam.shape[3];
  torch::Tensor bias = model->head()->bias.detach();
  double cam_diff = 0;
  for (int64_t i = 0; i < 12; ++i) {
    for (int64_t k = 0; k < 3; ++k) {
      double mean = 0;
      for (int64_t c = 0; c < cells; ++c) mean += cam.data[static_cast<size_t>((i * 3 + k) * cells + c)];
      mean = mean / static_cast<double>(cells) + bias[k].item<double>();
      cam_diff = std::max(cam_diff, std::fabs(mean - q.at("logits").data[static_cast<size_t>(i * 3 + k)]));
    }
  }
  CHECK(cam_diff <= 1e-4);
}

TEST_CASE("int8 from a trained run: the gate, the card, the self-test, the weights hash", "[quantize]") {
  const TrainedRun trained;
  const SplitFiles split = read_split_files((fs::path(trained.run) / "split.json").string());
  REQUIRE(split.test.size() == 18);
  QuantizeOptions options;
  options.threads = 2;
  const QuantizeResult result = quantize_model_file(trained.model, split, "", options);
  std::printf("\nint8 from a simple_cnn run:\n%s", result.summary.c_str());
  CHECK(result.onnx_path == (fs::path(trained.run) / "model.int8.onnx").string());
  CHECK(fs::exists(result.onnx_path));
  CHECK_FALSE(fs::exists(result.onnx_path + ".tmp"));
  CHECK(result.card_path == (fs::path(trained.run) / "model.int8.card.json").string());
  CHECK(result.gate.passed);
  CHECK(result.gate.test_images == 18);
  CHECK(result.gate.agreement >= 0.98);
  CHECK(result.file_bytes < result.float_bytes);
  CHECK(result.calibration_images == static_cast<int64_t>(split.train.size()));
  CHECK(result.ops.at("Conv") == 2);
  CHECK(result.ops.at("Gemm") == 2);  // the hidden layer (int8 weights) and the head (float)
  CHECK(result.ops.count("Relu") == 0);

  // Outputs within the stated tolerance of fp32 on the 18 held-out test images (never calibrated
  // on): logits within 5% of their largest value, probabilities within 0.05.
  {
    std::vector<std::string> files;
    for (const auto& [path, label] : split.test) files.push_back(path);
    const Tensor x = load_images(files, read_model_card(trained.model).preprocess);
    const inference::OrtSession f(trained.model), q(result.onnx_path);
    const auto a = f.run(x, {"logits", "probabilities"}), b = q.run(x, {"logits", "probabilities"});
    const double logits_diff = max_abs_diff(a.at("logits"), b.at("logits")), scale = max_abs(a.at("logits"));
    const double probability_diff = max_abs_diff(a.at("probabilities"), b.at("probabilities"));
    std::printf("int8 vs fp32 on the 18 test images: logits max |diff| %.4f (max |logit| %.3f), probabilities %.4f\n",
                logits_diff, scale, probability_diff);
    CHECK(logits_diff <= 0.05 * scale);
    CHECK(probability_diff <= 0.05);
  }

  // The card: precision, the quantization record with the gate's figures, the int8 model's own
  // test metrics, a refitted OOD threshold; the reader checks the hash of the int8 weights.
  const OnnxFileInfo info = read_onnx_file(result.onnx_path);
  const ModelCard& card = info.card;
  CHECK(info.weights_verified);
  CHECK(card.precision == "int8");
  CHECK(card.name == "quantize-unit-int8");
  REQUIRE(card.quantization);
  CHECK(card.quantization->method == "static_qdq");
  CHECK(card.quantization->calibration_method == "mse");
  CHECK(card.quantization->calibration_images == result.calibration_images);
  CHECK(card.quantization->test_images == 18);
  CHECK(card.quantization->float_accuracy == result.gate.float_accuracy);
  CHECK(card.quantization->int8_accuracy == result.gate.int8_accuracy);
  CHECK(card.quantization->agreement == result.gate.agreement);
  CHECK(card.test_metrics.at("accuracy").get<double>() == result.gate.int8_accuracy);
  CHECK(card.test_metrics.at("total") == 18);
  REQUIRE(card.ood);
  CHECK(card.ood->to_json().at("threshold_fitted_on").get<std::string>().find("int8") != std::string::npos);
  CHECK_THAT(card.precision_note(), Contains("int8 (static QDQ, mse ranges on"));
  CHECK(read_model_card(trained.model).precision == "fp32");  // export writes it on float models too
  int int8_initializers = 0;
  {
    onnx::ModelProto proto;
    std::ifstream in(result.onnx_path, std::ios::binary);
    REQUIRE(proto.ParseFromIstream(&in));
    for (const auto& init : proto.graph().initializer()) int8_initializers += init.data_type() == onnx::TensorProto::INT8;
    CHECK(weights_sha256(proto) == card.weights_sha256);
    // One int8 weight changed: the hash gives it away.
    for (auto& init : *proto.mutable_graph()->mutable_initializer()) {
      if (init.data_type() != onnx::TensorProto::INT8 || init.raw_data().size() < 2) continue;
      (*init.mutable_raw_data())[0] = static_cast<char>(init.raw_data()[0] + 1);
      break;
    }
    CHECK_THAT(test::error_of([&] { read_onnx_bytes(serialize_onnx(proto), "edited"); }),
               Contains("the weights do not match the model card's SHA-256"));
  }
  CHECK(int8_initializers >= 6);  // weights and zero points of 2 Conv and the hidden Gemm

  // The self-test holds the int8 model's own outputs (ONNX Runtime's), at the int8 tolerance; it
  // passes natively and tells the int8 model from the float one.
  REQUIRE(card.self_test);
  CHECK(card.self_test->absolute_tolerance == options.self_test_absolute_tolerance);
  const inference::OrtSession int8_session(result.onnx_path);
  const SelfTestResult passed = inference::run_self_test(card, int8_session);
  CHECK(passed.passed);
  CHECK(passed.max_abs_diff <= 1e-5);
  CHECK(result.self_test.passed);
  const ModelCard float_card = read_model_card(trained.model);
  const SelfTest& float_test = *float_card.self_test;
  double float_vs_int8 = 0;
  const auto& a = float_test.outputs.at("logits").values, &b = card.self_test->outputs.at("logits").values;
  for (size_t i = 0; i < a.size(); ++i) float_vs_int8 = std::max(float_vs_int8, std::fabs(a[i] - b[i]));
  std::printf("self-test logits, int8 vs fp32 expectations: max |diff| %.4f (int8 tolerance %.3g)\n", float_vs_int8,
              card.self_test->absolute_tolerance);
  CHECK(float_vs_int8 > 0);

  // The sidecar is the embedded card.
  CHECK(test::read_text(result.card_path) == card.to_json().dump(2) + "\n");

  // Bad inputs (plain blocks, not SECTIONs: each SECTION would train and quantise again).
  const std::string out = (fs::path(trained.run) / "other.int8.onnx").string();
  // An int8 model is not quantised again.
  CHECK_THAT(test::error_of([&] { quantize_model_file(result.onnx_path, split, out, options); }),
             Contains("already an int8 model"));
  // Another split than the model was tested on is refused before anything runs.
  SplitFiles other = split;
  other.test.pop_back();
  CHECK_THAT(test::error_of([&] { quantize_model_file(trained.model, other, out, options); }),
             Contains("the split has 17 test images but") && Contains("says it was tested on 18"));
  // Images inside an .npz, and calibration images none of which can be read.
  other = split;
  other.train = {{"data.npz:train_images[0]", 0}};
  CHECK_THAT(test::error_of([&] { quantize_model_file(trained.model, other, out, options); }),
             Contains("int8 quantisation reads image files, but the split's images are inside an .npz"));
  other.train = {{(trained.dir.path / "gone.png").string(), 0}, {(trained.dir.path / "gone-too.png").string(), 1}};
  CHECK_THAT(test::error_of([&] { quantize_model_file(trained.model, other, out, options); }),
             Contains("none of the 2 calibration images could be read"));
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(out + ".tmp"));
}

TEST_CASE("the gate refuses an int8 model calibrated on degenerate images, and writes nothing", "[quantize][bad-input]") {
  const TrainedRun trained;
  SplitFiles split = read_split_files((fs::path(trained.run) / "split.json").string());
  // Calibrated on black images: every activation range collapses to what a constant image gives
  // (the input's to [-1, 0]), and the real images saturate.
  const fs::path black = trained.dir.path / "black";
  fs::create_directories(black);
  split.train.clear();
  for (int i = 0; i < 8; ++i) {
    Image image;
    image.width = image.height = 32;
    image.channels = 3;
    image.data.assign(32 * 32 * 3, 0);
    const std::string path = (black / (std::to_string(i) + ".png")).string();
    const std::vector<uint8_t> png = encode_png(image);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                                static_cast<std::streamsize>(png.size()));
    split.train.emplace_back(path, 0);
  }
  QuantizeOptions options;
  options.threads = 2;
  options.range = RangeMethod::min_max;
  const std::string out = (trained.dir.path / "degenerate.int8.onnx").string();
  const std::string message = test::error_of([&] { quantize_model_file(trained.model, split, out, options); });
  std::printf("\ndegenerate calibration: %s\n", message.c_str());
  CHECK_THAT(message, Contains("the int8 model is refused (nothing written to " + out + ")") &&
                          Contains("test accuracy: fp32 ") && Contains("top class agrees on"));
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(out + ".tmp"));
  CHECK_FALSE(fs::exists((trained.dir.path / "degenerate.int8.card.json")));
}

// An int8 operator form ONNX Runtime has no kernel for (QLinearConv of int8 data with uint8
// weights; it has uint8 x uint8, uint8 x int8 and int8 x int8): the session is refused with ONNX
// Runtime's message naming the operator, before anything runs (the page says the same, with the
// active model kept: tests/browser/int8.test.mjs).
TEST_CASE("a model with an int8 operator ONNX Runtime lacks is refused, naming it", "[quantize][bad-input]") {
  onnx::ModelProto proto;
  proto.set_ir_version(8);
  proto.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = proto.mutable_graph();
  graph->set_name("int8-op");
  const auto add_tensor = [&](const std::string& name, int type, std::vector<int64_t> dims, std::string raw) {
    onnx::TensorProto* t = graph->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(raw);
  };
  const float scale = 1.0f / 64;
  add_tensor("scale", onnx::TensorProto::FLOAT, {}, std::string(reinterpret_cast<const char*>(&scale), 4));
  add_tensor("zero", onnx::TensorProto::INT8, {}, std::string(1, '\0'));
  add_tensor("zero_u8", onnx::TensorProto::UINT8, {}, std::string(1, '\0'));
  add_tensor("w", onnx::TensorProto::UINT8, {3, 3, 1, 1}, std::string("\1\0\0\0\1\0\0\0\1", 9));
  const auto add_node = [&](const std::string& op, std::vector<std::string> inputs, const std::string& output) {
    onnx::NodeProto* n = graph->add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (const auto& in : inputs) n->add_input(in);
    n->add_output(output);
  };
  add_node("QuantizeLinear", {"input", "scale", "zero"}, "xq");
  add_node("QLinearConv", {"xq", "scale", "zero", "w", "scale", "zero_u8", "scale", "zero"}, "yq");
  add_node("DequantizeLinear", {"yq", "scale", "zero"}, "y");
  add_node("GlobalAveragePool", {"y"}, "pooled");
  add_node("Flatten", {"pooled"}, "logits");
  for (const auto& [value, dims] : {std::pair{graph->add_input(), std::vector<int64_t>{-1, 3, 8, 8}},
                                    std::pair{graph->add_output(), std::vector<int64_t>{-1, 3}}}) {
    value->set_name(dims.size() == 4 ? "input" : "logits");
    auto* type = value->mutable_type()->mutable_tensor_type();
    type->set_elem_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) {
      if (d < 0) type->mutable_shape()->add_dim()->set_dim_param("batch");
      else type->mutable_shape()->add_dim()->set_dim_value(d);
    }
  }
  const std::string message =
      test::error_of([&] { inference::OrtSession::from_bytes(serialize_onnx(proto)); });
  CAPTURE(message);
  CHECK_THAT(message, Contains("ONNX Runtime") && Contains("Could not find an implementation for QLinearConv"));
}

// The int8 models the repository ships (models/shipped/*.int8.onnx): each reads with its
// calibration record, passes its self-test with native ONNX Runtime, has every body Conv int8,
// and its card's gate figures pass the gate. Never a skip: they are in the repository.
TEST_CASE("the shipped int8 models", "[quantize][shipped]") {
  const fs::path shipped = fs::path(__FILE__).parent_path().parent_path().parent_path() / "models" / "shipped";
  std::vector<fs::path> models;
  for (const auto& entry : fs::directory_iterator(shipped)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 10 && name.compare(name.size() - 10, 10, ".int8.onnx") == 0) models.push_back(entry.path());
  }
  REQUIRE(models.size() == 2);
  for (const fs::path& path : models) {
    CAPTURE(path.string());
    const OnnxFileInfo info = read_onnx_file(path.string());
    CHECK(info.weights_verified);
    CHECK(info.card.precision == "int8");
    REQUIRE(info.card.quantization);
    const Quantization& q = *info.card.quantization;
    CHECK(q.float_accuracy - q.int8_accuracy <= 0.01 + 1e-12);
    CHECK(q.agreement >= 0.98);
    const fs::path float_file = path.parent_path() / (path.stem().stem().string() + ".onnx");
    CHECK(q.record.at("float_model").at("weights_sha256") == read_model_card(float_file.string()).weights_sha256);
    const inference::OrtSession session(path.string());
    const SelfTestResult self_test = inference::run_self_test(info.card, session);
    CHECK(self_test.passed);
    CAPTURE(self_test.summary());
    onnx::ModelProto proto;
    std::ifstream in(path, std::ios::binary);
    REQUIRE(proto.ParseFromIstream(&in));
    const std::map<std::string, int> ops = count_ops(proto);
    CHECK(ops.at("Conv") == 53);  // 52 int8 and the CAM's
    CHECK(q.record.at("weights").at("nodes") == 52);
    CHECK(fs::file_size(path) * 3 < fs::file_size(float_file));
  }
}
