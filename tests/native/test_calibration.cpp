// Calibrated confidence and the out-of-distribution check of `loupe export` (ood_fit.h; the
// temperature fit is the shared core's, tested in tests/core/test_calibration.cpp): the
// Mahalanobis distance in the graph against a direct computation, its split-conformal threshold
// (the Beta interval, cross-fitting by groups, the stated rate on fresh data), an exported model
// with both against LibTorch under ONNX Runtime, the card's entries, a run export with them
// (split.json paths resolved from elsewhere), and `loupe ood-threshold`'s re-estimate from the
// exported file alone, which must agree with the export's.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>

#include "fixtures.h"
#include "loupe/export/ood_fit.h"
#include "loupe/export/ood_threshold.h"
#include "loupe/export/onnx_file.h"
#include "loupe/export/onnx_export.h"
#include "loupe/inference/ort_session.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/export/run_export.h"
#include "loupe/loupe.h"
#include "loupe/models/zoo.h"
#include "loupe/train/train_config.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::exporter;
using namespace loupe::inference;
using Catch::Matchers::Contains;

namespace {

Tensor to_loupe(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  Tensor out;
  out.shape = c.sizes().vec();
  out.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return out;
}

torch::Tensor to_torch(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).clone();
}

// max_i |a_i - b_i| / max(1, |b_i|)
double max_relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.to(torch::kFloat64), y = b.to(torch::kFloat64);
  return ((x - y).abs() / y.abs().clamp_min(1.0)).max().item<double>();
}

OrtSessionOptions two_threads() {
  OrtSessionOptions o;
  o.threads = 2;
  return o;
}

// Changes the working folder for a scope (split.json paths are relative to it).
struct WorkingFolder {
  explicit WorkingFolder(const fs::path& dir) : previous(fs::current_path()) { fs::current_path(dir); }
  ~WorkingFolder() { fs::current_path(previous); }
  WorkingFolder(const WorkingFolder&) = delete;
  WorkingFolder& operator=(const WorkingFolder&) = delete;
  fs::path previous;
};

models::ModelConfig smoke_config() {
  models::ModelConfig c;
  c.architecture = "simple_cnn";
  c.num_classes = 3;
  c.input_size = 32;
  c.conv_channels = {4, 8};
  c.hidden_units = 16;
  return c;
}

}  // namespace

TEST_CASE("numpy's linear quantile", "[export][ood]") {
  CHECK(quantile(std::vector<double>{4, 1, 3, 2}, 0.95) == Approx(3.85));
  CHECK(quantile(std::vector<double>{7}, 0.95) == 7.0);
  CHECK(quantile(std::vector<double>{1, 2}, 0.0) == 1.0);
}

TEST_CASE("the split-conformal threshold and its Beta interval", "[export][ood]") {
  // Beta quantiles against closed forms: Beta(1, b): 1 - (1 - p)^(1/b); Beta(a, 1): p^(1/a);
  // symmetric ones: the median is 1/2.
  CHECK(beta_quantile(0.3, 1, 7) == Approx(1 - std::pow(0.7, 1.0 / 7)).margin(1e-9));
  CHECK(beta_quantile(0.975, 4, 1) == Approx(std::pow(0.975, 0.25)).margin(1e-9));
  CHECK(beta_quantile(0.5, 5, 5) == Approx(0.5).margin(1e-9));
  CHECK(beta_quantile(0.5, 2, 2) == Approx(0.5).margin(1e-9));
  CHECK(beta_quantile(0.025, 42, 817) < 42.0 / 859);
  // 100 distances 0..99, alpha 0.05: k = ceil(101 * 0.95) = 96, the threshold the 96th smallest.
  std::vector<double> d(100);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<double>(99 - i);  // order does not matter
  const ConformalThreshold c = conformal_threshold(d, 0.05);
  CHECK(c.rank == 96);
  CHECK(c.threshold == 95.0);
  CHECK(c.distances == 100);
  CHECK(c.false_alarm_rate == Approx(5.0 / 101));
  CHECK(c.false_alarm_interval.low == Approx(beta_quantile(0.025, 5, 96)));
  CHECK(c.false_alarm_interval.low < c.false_alarm_rate);
  CHECK(c.false_alarm_rate < c.false_alarm_interval.high);
  // (99 + 1) * 0.95 is 95 exactly: no rounding up to 96.
  CHECK(conformal_threshold(std::vector<double>(99, 1.0), 0.05).rank == 95);
  CHECK_THAT(test::error_of([] { conformal_threshold(std::vector<double>(10, 1.0), 0.05); }),
             Contains("10 distances are too few for a false-alarm rate of 5.0% (at least 19)"));
  CHECK_THAT(test::error_of([] { conformal_threshold({1.0, std::nan("")}, 0.05); }), Contains("not a finite number"));
  CHECK_THAT(test::error_of([] { conformal_threshold({1.0}, 1.5); }), Contains("alpha"));
}

TEST_CASE("cross-fitting folds keep groups whole and the threshold keeps its rate on fresh data", "[export][ood]") {
  // Folds: whole groups, every fold with each label, the same folds for the same seed.
  std::vector<int64_t> labels;
  std::vector<std::string> groups;
  for (int g = 0; g < 60; ++g) {
    for (int i = 0; i < 1 + g % 4; ++i) {
      labels.push_back(g % 3);
      groups.push_back(g % 5 == 0 ? "" : "patient" + std::to_string(g));  // some images without a group
    }
  }
  const std::vector<int> folds = assign_folds(labels, groups, 5, 42);
  CHECK(folds == assign_folds(labels, groups, 5, 42));
  std::map<std::string, std::set<int>> folds_of_group;
  std::vector<std::set<int64_t>> labels_in_fold(5);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!groups[i].empty()) folds_of_group[groups[i]].insert(folds[i]);
    labels_in_fold[static_cast<size_t>(folds[i])].insert(labels[i]);
  }
  for (const auto& [group, in] : folds_of_group) CHECK(in.size() == 1);
  for (const auto& in : labels_in_fold) CHECK(in.size() == 3);

  // Gaussian classes in 40 dims: the cross-fitted split-conformal threshold flags about alpha of
  // fresh in-distribution images; the 95th percentile of the training images' own (in-sample)
  // distances is printed beside it, for comparison.
  torch::manual_seed(11);
  const int64_t width = 40, classes = 3;
  const torch::Tensor mixing = torch::randn({width, width}, torch::kFloat64) * 0.5;
  const torch::Tensor centers = torch::randn({classes, width}, torch::kFloat64) * 2.0;
  const auto draw = [&](int64_t per_class, torch::Tensor& y) {
    std::vector<torch::Tensor> rows, ys;
    for (int64_t k = 0; k < classes; ++k) {
      rows.push_back(centers[k] + torch::randn({per_class, width}, torch::kFloat64).matmul(mixing));
      ys.push_back(torch::full({per_class}, k, torch::kInt64));
    }
    y = torch::cat(ys);
    return torch::cat(rows);
  };
  torch::Tensor train_y, val_y, fresh_y;
  const torch::Tensor train = draw(150, train_y), val = draw(30, val_y), fresh = draw(1000, fresh_y);
  const MahalanobisFit fit = fit_mahalanobis(train, train_y, classes, 16);
  const OodThresholdEstimate estimate =
      estimate_ood_threshold(train, train_y, {}, classes, fit.dims, mahalanobis_distance(fit, val), {});
  CHECK(estimate.cross_fitted == 450);
  CHECK(estimate.validation == 90);
  CHECK(estimate.folds == 10);
  CHECK_FALSE(estimate.grouped);
  // No network trained on these: the cross-fitted distances' tail passes as the validation one's.
  CHECK(estimate.exchangeability.p_value >= 0.05);
  CHECK(estimate.exchangeability.training == 450);
  CHECK(estimate.exchangeability.threshold == estimate.conformal.threshold);
  CHECK(estimate.training_used);
  CHECK(estimate.conformal.distances == 540);
  const double fresh_rate = (mahalanobis_distance(fit, fresh) > estimate.conformal.threshold).to(torch::kFloat64).mean().item<double>();
  const double in_sample = tensor_quantile(mahalanobis_distance(fit, train), 0.95);
  const double in_sample_rate = (mahalanobis_distance(fit, fresh) > in_sample).to(torch::kFloat64).mean().item<double>();
  std::printf("\nsplit-conformal threshold %.2f (stated %.1f%% [%.1f%%, %.1f%%]): %.1f%% of 3000 fresh in-distribution "
              "embeddings flagged; the training distances' own 95th percentile %.2f would flag %.1f%%\n",
              estimate.conformal.threshold, 100 * estimate.conformal.false_alarm_rate,
              100 * estimate.conformal.false_alarm_interval.low, 100 * estimate.conformal.false_alarm_interval.high,
              100 * fresh_rate, in_sample, 100 * in_sample_rate);
  CHECK(fresh_rate > 0.02);
  CHECK(fresh_rate < 0.085);
  const nlohmann::json fields = estimate.card_fields();
  CHECK(fields["threshold"] == estimate.conformal.threshold);
  CHECK(fields["calibration_distances"] == 540);
  CHECK_THAT(fields["threshold_method"].get<std::string>(), Contains("split-conformal"));
  CHECK(fields["false_alarm_interval"].size() == 2);
  CHECK_THAT(estimate.summary(), Contains("cross-fitted in 10 folds") && Contains("90 validation"));

  // Training distances that are clearly smaller than the validation ones (what a network that fits
  // its training images closely gives them): not used; the threshold rests on validation alone.
  const OodThresholdEstimate shifted =
      estimate_ood_threshold(train, train_y, {}, classes, fit.dims, mahalanobis_distance(fit, val) * 1.5, {});
  CHECK(static_cast<double>(shifted.exchangeability.validation_beyond) / 90.0 >
        static_cast<double>(shifted.exchangeability.training_beyond) / 450.0);
  CHECK(shifted.exchangeability.p_value < 0.05);
  CHECK_FALSE(shifted.training_used);
  CHECK(shifted.conformal.distances == 90);
  CHECK(shifted.conformal.rank == 87);  // ceil(91 * 0.95)
  CHECK(shifted.card_fields()["cross_fit_exchangeability"]["used"] == false);
  CHECK_THAT(shifted.summary(), Contains("not used (their tails differ"));
  // The two-proportion test against a hand computation: 2 of 10 vs 5 of 100, z = 1.8528.
  CHECK(two_proportion_p(2, 10, 5, 100) == Approx(0.0639163).epsilon(1e-5));
  CHECK(two_proportion_p(0, 10, 0, 100) == 1.0);
  const ExchangeabilityTest t = tail_exchangeability({3.0, 1.0, 5.0}, {1.0, 2.0, 0.5, 4.5}, 2.5);
  CHECK(t.validation_beyond == 2);
  CHECK(t.training_beyond == 1);
  CHECK(t.p_value == Approx(two_proportion_p(2, 3, 1, 4)));
}

TEST_CASE("the Mahalanobis distance in the graph equals a direct computation", "[export][ood]") {
  torch::manual_seed(7);
  const int64_t width = 40, classes = 4, per_class = 100;
  const torch::Tensor mixing = torch::randn({width, width}, torch::kFloat64) * 0.5;  // correlated features
  const torch::Tensor class_centers = torch::randn({classes, width}, torch::kFloat64) * 3.0;
  std::vector<torch::Tensor> rows, labels;
  for (int64_t k = 0; k < classes; ++k) {
    rows.push_back(class_centers[k] + torch::randn({per_class, width}, torch::kFloat64).matmul(mixing) + 2.0);
    labels.push_back(torch::full({per_class}, k, torch::kInt64));
  }
  const torch::Tensor train = torch::cat(rows), train_labels = torch::cat(labels);
  const MahalanobisFit fit = fit_mahalanobis(train, train_labels, classes + 1, 16);  // class 4 has no images
  CHECK(fit.dims == 16);
  CHECK(fit.embedding_dims == width);
  CHECK(fit.classes == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(fit.shrinkage >= 0.0);
  CHECK(fit.shrinkage <= 1.0);
  CHECK(fit.explained_variance > 0.5);
  CHECK(fit.explained_variance <= 1.0);
  // The whitened form is the same distance: ||W P (e - mean) - W m_k||^2.
  const torch::Tensor z = (train - fit.mean).matmul(fit.projection);
  const torch::Tensor whitened = std::get<0>(torch::cdist(z, fit.centers).pow(2).min(1));
  CHECK(max_relative_diff(whitened, mahalanobis_distance(fit, train)) < 1e-9);

  // In distribution (new draws from the same classes) and out of it (scaled, shifted).
  const torch::Tensor near = class_centers[1] + torch::randn({25, width}, torch::kFloat64).matmul(mixing) + 2.0;
  const torch::Tensor far = torch::randn({25, width}, torch::kFloat64) * 6.0 - 4.0;
  const torch::Tensor queries = torch::cat({near, far}).to(torch::kFloat32);
  const torch::Tensor direct = mahalanobis_distance(fit, queries);

  const onnx::ModelProto graph = ood_distance_graph(fit, 13);
  std::set<std::string> ops;
  for (const auto& node : graph.graph().node()) ops.insert(node.op_type());
  CHECK(ops == std::set<std::string>{"Sub", "MatMul", "ReduceSumSquare", "Add", "ReduceMin", "Identity"});
  const OrtSession session = OrtSession::from_bytes(serialize_onnx(graph), two_threads());
  const auto out = session.run(to_loupe(queries), {"ood_distance"});
  const torch::Tensor in_graph = to_torch(out.at("ood_distance"));
  REQUIRE(in_graph.sizes() == torch::IntArrayRef({50}));
  const double diff = max_relative_diff(in_graph, direct);
  std::printf("\nMahalanobis (40 -> 16 dims, 4 classes): ONNX Runtime vs direct float64, max relative difference %.3g; "
              "median distance near %.1f, far %.1f\n",
              diff, direct.slice(0, 0, 25).median().item<double>(), direct.slice(0, 25).median().item<double>());
  CHECK(diff <= 1e-4);
  // The check separates the two: every far embedding is beyond the 95th percentile of the near ones.
  const double threshold = tensor_quantile(mahalanobis_distance(fit, train), 0.95);
  CHECK(direct.slice(0, 25).min().item<double>() > threshold);
  CHECK((direct.slice(0, 0, 25) > threshold).sum().item<int64_t>() <= 5);
  CHECK_THAT(test::error_of([&] { mahalanobis_distance(fit, torch::zeros({2, 3})); }), Contains("[N, 40]"));
}

TEST_CASE("an exported model with calibration and the OOD output matches LibTorch", "[export][ood][calibration]") {
  torch::manual_seed(3);
  auto model = models::create_model(smoke_config());
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({120, 3, 32, 32});
  const torch::Tensor embeddings = model->embed(images);
  const torch::Tensor labels = model->forward(images).argmax(1);
  const MahalanobisFit fit = fit_mahalanobis(embeddings, labels, 3, 8);
  const double threshold = tensor_quantile(mahalanobis_distance(fit, embeddings), 0.95);
  const double temperature = 1.7;

  ExportOptions options;
  options.temperature = temperature;
  options.ood = OodOutput{fit, threshold};
  options.card.calibration = {{"fitted_on", "unit test"}, {"method", "ignored: export writes its own"}};
  options.card.ood = {{"fitted_on", "train embeddings (120 images)"}};
  const std::string bytes = serialize_onnx(export_onnx(*model, options));

  // The card: both entries, the new output, and a round trip through JSON.
  const OnnxFileInfo info = read_onnx_bytes(bytes, "smoke");
  const ModelCard& card = info.card;
  CHECK(info.weights_verified);
  CHECK(card.has_output("ood_distance"));
  REQUIRE(card.calibration.has_value());
  CHECK(card.calibration->to_json()["method"] == "temperature_scaling");
  CHECK(card.calibration->to_json()["temperature"].get<double>() == Approx(temperature).epsilon(1e-6));
  CHECK(card.calibration->to_json()["fitted_on"] == "unit test");
  REQUIRE(card.ood.has_value());
  CHECK(card.ood->to_json()["method"] == "mahalanobis_shared_covariance");
  CHECK(card.ood->to_json()["output"] == "ood_distance");
  CHECK(card.ood->to_json()["threshold"].get<double>() == threshold);
  CHECK(card.ood->to_json()["dims"] == fit.dims);
  CHECK(card.ood->to_json()["fitted_on"] == "train embeddings (120 images)");
  CHECK(ModelCard::from_json(card.to_json()).to_json() == card.to_json());
  CHECK_THAT(describe(info), Contains("calibration: temperature_scaling, T = 1.7000") &&
                                 Contains("output 'ood_distance' >") && Contains("output ood_distance float32 [batch]"));
  std::string probabilities_description;
  for (const auto& o : card.outputs) {
    if (o.name == "probabilities") probabilities_description = o.description;
    if (o.name == "ood_distance") CHECK(o.shape == nlohmann::json::array({"batch"}));
  }
  CHECK_THAT(probabilities_description, Contains("logits / T, T = 1.7"));

  // ONNX Runtime against LibTorch + the C++ distance, on random inputs and on fitted ones.
  const OrtSession session = OrtSession::from_bytes(bytes, two_threads());
  const torch::Tensor x = torch::cat({torch::randn({5, 3, 32, 32}), images.slice(0, 0, 5)});
  const auto out = session.run(to_loupe(x));
  const torch::Tensor logits = model->forward(x);
  CHECK(max_relative_diff(to_torch(out.at("logits")), logits) <= 1e-4);
  const torch::Tensor p = to_torch(out.at("probabilities"));
  CHECK(max_relative_diff(p, torch::softmax(logits.to(torch::kFloat64) / temperature, 1)) <= 1e-4);
  CHECK((p.sum(1) - 1.0).abs().max().item<double>() < 1e-5);
  const torch::Tensor distance = to_torch(out.at("ood_distance"));
  REQUIRE(distance.sizes() == torch::IntArrayRef({10}));
  CHECK(max_relative_diff(distance, mahalanobis_distance(fit, model->embed(x))) <= 1e-4);

  // verify_onnx knows both outputs, and only with what the export used.
  ParityOptions parity;
  parity.temperature = temperature;
  parity.ood = fit;
  const ParityReport report = verify_onnx(*model, session, parity);
  CHECK(report.passed);
  CHECK_THAT(report.to_text(), Contains("ood_distance"));
  parity.ood.reset();
  CHECK_THAT(test::error_of([&] { verify_onnx(*model, session, parity); }), Contains("ParityOptions::ood"));
  parity.ood = fit;
  parity.temperature = 0;
  CHECK_FALSE(verify_onnx(*model, session, parity).passed);  // the plain softmax is not what the graph computes

  // The weights hash covers the new initializers.
  ExportOptions other = options;
  other.temperature = 1.8;
  CHECK(read_onnx_bytes(serialize_onnx(export_onnx(*model, other)), "other").card.weights_sha256 != card.weights_sha256);
  other = options;
  other.ood->fit.centers = fit.centers + 0.01;
  CHECK(read_onnx_bytes(serialize_onnx(export_onnx(*model, other)), "other").card.weights_sha256 != card.weights_sha256);
  // Without either: the graph and card of before.
  const OnnxFileInfo plain = read_onnx_bytes(serialize_onnx(export_onnx(*model, ExportOptions{})), "plain");
  CHECK(!plain.card.calibration.has_value());
  CHECK(!plain.card.ood.has_value());
  CHECK_FALSE(plain.card.has_output("ood_distance"));
  CHECK_THAT(describe(plain), Contains("calibration: none") && Contains("out-of-distribution check: none"));

  // Bad options.
  other = options;
  other.ood->threshold = std::numeric_limits<double>::infinity();
  CHECK_THAT(test::error_of([&] { export_onnx(*model, other); }), Contains("threshold is not finite"));
  other = options;
  other.probabilities = false;
  CHECK_THAT(test::error_of([&] { export_onnx(*model, other); }), Contains("needs the probabilities output"));
  other = options;
  other.ood->fit = fit_mahalanobis(torch::randn({20, 5}), torch::zeros({20}, torch::kInt64), 3, 4);
  CHECK_THAT(test::error_of([&] { export_onnx(*model, other); }), Contains("5-value embeddings"));
}

TEST_CASE("the model card's calibration and ood entries are checked", "[export][card]") {
  torch::manual_seed(4);
  auto model = models::create_model(smoke_config());
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor images = torch::randn({40, 3, 32, 32});
  ExportOptions options;
  options.temperature = 2.0;
  options.ood = OodOutput{fit_mahalanobis(model->embed(images), model->forward(images).argmax(1), 3, 8), 10.0};
  onnx::ModelProto proto = export_onnx(*model, options);
  const nlohmann::json good = nlohmann::json::parse(proto.metadata_props(0).value());
  const auto check_error = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& expected) {
    nlohmann::json j = good;
    edit(j);
    CHECK_THAT(test::error_of([&] { ModelCard::from_json(j); }), Contains(expected));
  };
  check_error([](nlohmann::json& j) { j["calibration"]["temperature"] = -1.0; }, "calibration.temperature");
  check_error([](nlohmann::json& j) { j["calibration"]["temperature"] = 0.0; }, "calibration.temperature");
  check_error([](nlohmann::json& j) { j["calibration"]["temperature"] = "2"; }, "calibration.temperature");
  check_error([](nlohmann::json& j) { j["calibration"].erase("temperature"); }, "calibration.temperature");
  check_error([](nlohmann::json& j) { j["calibration"] = 3; }, "calibration: expected an object or null");
  check_error([](nlohmann::json& j) { j["ood"]["output"] = "nowhere"; }, "ood.output: 'nowhere' is not one of");
  check_error([](nlohmann::json& j) { j["ood"].erase("output"); }, "ood.output");
  check_error([](nlohmann::json& j) { j["ood"]["threshold"] = nullptr; }, "ood.threshold");
  check_error([](nlohmann::json& j) { j["ood"] = "yes"; }, "ood: expected an object or null");
  // A calibration method Loupe cannot apply is refused: the shared core computes the calibrated
  // probabilities from the logits (loupe/prediction.h), and showing uncalibrated ones as
  // calibrated would mislead.
  check_error([](nlohmann::json& j) { j["calibration"] = {{"method", "vector_scaling"}, {"weights", {1, 2, 3}}}; },
              "calibration.method: 'vector_scaling' is not a method this Loupe applies");
  // Tolerated: extra keys, absent entries.
  nlohmann::json j = good;
  j["calibration"]["future_key"] = "kept";
  j["ood"]["future_key"] = {1, 2};
  CHECK(ModelCard::from_json(j).calibration->to_json()["future_key"] == "kept");
  CHECK(ModelCard::from_json(j).ood->to_json()["future_key"] == nlohmann::json({1, 2}));
  j.erase("calibration");
  j.erase("ood");
  CHECK_FALSE(ModelCard::from_json(j).calibration.has_value());
  CHECK_FALSE(ModelCard::from_json(j).ood.has_value());
  // In a file, the shared reader checks the same (what the browser runs).
  proto.mutable_metadata_props(0)->set_value([&] {
    nlohmann::json bad = good;
    bad["ood"]["threshold"] = "high";
    return bad.dump();
  }());
  CHECK_THAT(test::error_of([&] { read_onnx_bytes(serialize_onnx(proto), "bad.onnx"); }),
             Contains("bad.onnx") && Contains("ood.threshold"));
}

TEST_CASE("a run export fits calibration and the OOD check on the run's split", "[export][ood][calibration]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "data", {"disc", "square", "stripes"}, 12, 32);
  const nlohmann::json doc = {
      {"name", "export-calibration"},
      {"data", {{"path", "data"}}},  // relative: split.json lists "data/<class>/<i>.png"
      {"split", {{"val", 0.25}, {"test", 0.25}, {"seed", 5}}},
      {"preprocess", {{"color", "rgb"}, {"size", 32}}},
      {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {8, 16}}, {"hidden_units", 16}}},
      {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}},
      {"epochs", 2},
      {"batch_size", 8},
      {"threads", 2}};
  const fs::path run = dir.path / "runs" / "r";
  {
    const WorkingFolder here(dir.path);
    train::RunOptions quiet;
    quiet.progress = false;
    train::run_training(train::TrainConfig::from_json(doc), run.string(), quiet);
  }
  fs::create_directories(dir.path / "elsewhere");
  const WorkingFolder elsewhere(dir.path / "elsewhere");

  SECTION("split.json's relative paths are found from another folder, or named in the error") {
    const SplitFiles files = read_split_files((run / "split.json").string());
    CHECK(fs::equivalent(files.resolved_from, dir.path));
    CHECK(files.classes == std::vector<std::string>{"disc", "square", "stripes"});
    CHECK(files.train.size() + files.val.size() + files.test.size() == 36);
    CHECK(files.val.size() == 9);
    for (const auto& [path, label] : files.test) {
      CHECK(fs::exists(path));
      CHECK(fs::path(path).parent_path().filename() == files.classes[static_cast<size_t>(label)]);
    }
    fs::rename(dir.path / "data", dir.path / "moved");
    const std::string message = test::error_of([&] { read_split_files((run / "split.json").string()); });
    CHECK_THAT(message, Contains("data/") && Contains("does not exist") && Contains("--data-root") &&
                            Contains("relative to the folder `loupe train` ran from"));
    const SplitFiles moved = read_split_files((run / "split.json").string(), (dir.path / "moved").string());
    CHECK(moved.val.size() == 9);
    for (const auto& [path, label] : moved.val) CHECK(fs::exists(path));
    CHECK_THAT(test::error_of([&] { read_split_files((run / "split.json").string(), (dir.path / "nothing").string()); }),
               Contains("under the data root"));
    // Export with the data gone: the model is exported, calibration and the OOD check are skipped.
    RunExportOptions options;
    options.threads = 2;
    options.real_images = 0;
    const RunExportResult result = run_export(run.string(), (dir.path / "gone.onnx").string(), options);
    CHECK_THAT(result.note, Contains("calibration and out-of-distribution check skipped") && Contains("--data-root"));
    CHECK(!result.card.calibration.has_value());
    CHECK_FALSE(result.card.has_output("ood_distance"));
    options.data_root = (dir.path / "moved").string();
    CHECK(run_export(run.string(), (dir.path / "found.onnx").string(), options).card.has_output("ood_distance"));
  }

  SECTION("the export: card entries, figures, parity, and the options") {
    RunExportOptions options;
    options.threads = 2;
    const RunExportResult result = run_export(run.string(), "", options);
    std::printf("\nrun export with calibration and OOD check (simple_cnn, 3 classes):\n%s%s", result.parity.to_text().c_str(),
                result.summary.c_str());
    CHECK(result.parity.passed);
    CHECK(result.note.empty());
    CHECK_THAT(result.parity.to_text(), Contains("ood_distance") && Contains("probabilities"));
    const ModelCard card = read_onnx_file(result.onnx_path).card;
    REQUIRE(card.calibration.has_value());
    CHECK(card.calibration->to_json()["method"] == "temperature_scaling");
    CHECK(card.calibration->to_json()["temperature"].get<double>() > 0);
    CHECK(card.calibration->to_json()["fitted_on"] == "validation split (9 images)");
    CHECK(card.calibration->to_json()["ece_bins"] == 15);
    for (const char* part : {"val", "test"}) {
      for (const char* key : {"ece_before", "ece_after", "nll_before", "nll_after"}) {
        CAPTURE(part, key);
        CHECK(card.calibration->to_json()[part][key].is_number());
      }
    }
    // Temperature scaling minimises the validation NLL: never worse than T = 1 there.
    CHECK(card.calibration->to_json()["val"]["nll_after"].get<double>() <= card.calibration->to_json()["val"]["nll_before"].get<double>() + 1e-12);
    REQUIRE(card.ood.has_value());
    CHECK(card.ood->to_json()["output"] == "ood_distance");
    const nlohmann::json ood = card.ood->to_json();
    CHECK_FALSE(ood.contains("threshold_quantile"));  // the old rule
    CHECK_THAT(ood["threshold_method"].get<std::string>(), Contains("split-conformal"));
    CHECK(ood["alpha"] == 0.05);
    CHECK(ood["dims"] == 16);  // min(64, training images - 1 = 17, embedding 16)
    CHECK(ood["fitted_on"] == "train embeddings (18 images)");
    // 18 cross-fitted training distances and 9 validation ones: k = ceil(28 * 0.95) = 27, the
    // largest; if the training distances do not pass as exchangeable, the 9 validation ones alone,
    // too few for 5%: the largest, stating 1 / 10.
    const bool training_used = ood["cross_fit_exchangeability"]["used"].get<bool>();
    CHECK(ood["cross_fit_exchangeability"]["training_distances"] == 18);
    CHECK(ood["calibration_distances"] == (training_used ? 27 : 9));
    CHECK(ood["threshold_rank"] == (training_used ? 27 : 9));
    CHECK(ood["alpha"].get<double>() == Approx(training_used ? 0.05 : 0.1));
    CHECK(ood["alpha_requested"] == 0.05);
    CHECK(ood["val_false_alarm_rate"].get<double>() <= 1.0 / 9.0);
    CHECK(ood["false_alarm_interval"].size() == 2);
    CHECK(ood["test_false_alarm_rate"].is_number());
    CHECK(ood["test_false_alarm_interval"].size() == 2);
    CHECK_THAT(describe(read_onnx_file(result.onnx_path)), Contains("false alarms on new in-distribution images: "));
    CHECK(card.has_output("ood_distance"));
    CHECK(result.calibration == card.calibration->to_json());
    CHECK(fs::exists(result.reliability_png));
    CHECK(decode_image(read_file(result.reliability_png)).width == 880);  // 2 panels per row
    std::ifstream report(result.report_path);
    const std::string report_text((std::istreambuf_iterator<char>(report)), std::istreambuf_iterator<char>());
    CHECK_THAT(report_text, Contains("ECE (15 bins) validation") && Contains("reliability.png") &&
                                Contains("split-conformal, the ") && Contains("two-proportion p = ") &&
                                Contains("measured false alarms: validation "));
    std::ifstream log(run / "log.txt");
    const std::string log_text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    CHECK_THAT(log_text, Contains("export: calibration: temperature scaling, T = "));

    // `loupe ood-threshold` on the exported file: the fit in the graph reproduced from ONNX Runtime's
    // embeddings, and the same threshold as the export's (LibTorch's embeddings); only the card changes.
    RethresholdOptions rethreshold;
    rethreshold.split_file = (run / "split.json").string();
    rethreshold.threads = 2;
    const RethresholdResult again = rethreshold_ood(result.onnx_path, rethreshold);
    std::printf("ood-threshold on the export: %s", again.to_text().c_str());
    CHECK(again.reproduced_difference < 1e-4);
    CHECK(again.fit_images == 18);
    CHECK(again.estimate.conformal.threshold == Approx(card.ood->threshold).epsilon(1e-4));
    CHECK(again.old_threshold == card.ood->threshold);
    CHECK(again.ood["previous_threshold"]["threshold"] == card.ood->threshold);
    CHECK(again.ood["threshold_estimated"]["by"] == "loupe ood-threshold");
    CHECK(again.card.weights_sha256 == card.weights_sha256);
    REQUIRE(again.card.self_test);
    const std::string rewritten(again.onnx.begin(), again.onnx.end());
    CHECK(read_onnx_bytes(rewritten, "again.onnx").weights_verified);
    CHECK(run_self_test(again.card, OrtSession::from_bytes(rewritten, two_threads())).passed);
    // A split that is not the export's: refused, nothing returned.
    rethreshold.max_train_images = 12;
    CHECK_THAT(test::error_of([&] { rethreshold_ood(result.onnx_path, rethreshold); }),
               Contains("the card's fit used 18 training images") && Contains("gives 12"));

    // The options: neither, or one of them.
    options.calibration = false;
    options.ood = false;
    const RunExportResult neither = run_export(run.string(), (dir.path / "neither.onnx").string(), options);
    CHECK(!neither.card.calibration.has_value());
    CHECK(!neither.card.ood.has_value());
    CHECK_FALSE(neither.card.has_output("ood_distance"));
    CHECK(neither.summary.empty());
    options.ood = true;
    const RunExportResult ood_only = run_export(run.string(), (dir.path / "ood.onnx").string(), options);
    CHECK(!ood_only.card.calibration.has_value());
    CHECK(ood_only.card.has_output("ood_distance"));
    CHECK(ood_only.parity.passed);

    // A split without validation images: a clear notice, an export without either.
    std::ifstream split_in(run / "split.json");
    nlohmann::json split = nlohmann::json::parse(split_in);
    split_in.close();
    split["files"]["val"] = nlohmann::json::array();
    std::ofstream(run / "split.json") << split.dump();
    options.calibration = true;
    const RunExportResult no_val = run_export(run.string(), (dir.path / "noval.onnx").string(), options);
    CHECK_THAT(no_val.note, Contains("skipped: the run has no validation split"));
    CHECK(!no_val.card.calibration.has_value());
    CHECK_FALSE(no_val.card.has_output("ood_distance"));
  }
}
