// An exported float model to a gated int8 file (quantize.h quantize_model_file): calibration on
// the training split, the QDQ pass, the held-out gate, the int8 card (precision, quantization
// record, test metrics, OOD threshold, self-test, weights hash) and the checked, atomic write.
// Index:
//   [SECTION] Self-test from ONNX Runtime
//   [SECTION] Classifying a split part with one session
//   [SECTION] The gate
//   [SECTION] quantize_model_file
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "loupe/error.h"
#include "loupe/export/ood_fit.h"
#include "loupe/export/onnx_export.h"
#include "loupe/export/quantize.h"
#include "loupe/inference/batch_predict.h"
#include "loupe/inference/self_test_run.h"
#include "loupe/inference/sha256.h"
#include "loupe/metrics.h"
#include "loupe/results.h"
#include "loupe/version.h"

namespace fs = std::filesystem;

namespace loupe::exporter {

namespace {

using nlohmann::json;

std::string fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

void progress(const QuantizeOptions& options, const std::string& line) {
  if (options.progress) std::fprintf(stderr, "quantize: %s\n", line.c_str());
}

}  // namespace

// [SECTION] Self-test from ONNX Runtime

SelfTest record_self_test(const ModelCard& card, const inference::OrtSession& session, uint64_t seed,
                          double absolute_tolerance, double relative_tolerance) {
  SelfTest test;
  test.seed = seed;
  test.channels = card.input_channels;
  test.images = default_self_test_sizes(card.input_width, card.input_height);
  test.absolute_tolerance = absolute_tolerance;
  test.relative_tolerance = relative_tolerance;
  std::vector<std::string> names{"logits"};
  if (card.has_output("probabilities")) names.push_back("probabilities");
  if (card.ood) names.push_back(card.ood->output);
  const std::map<std::string, Tensor> outputs = session.run(self_test_input(test, card.preprocess), names);
  for (const std::string& name : names) {
    const Tensor& value = outputs.at(name);
    SelfTestOutput out;
    out.shape = value.shape;
    out.values.assign(value.data.begin(), value.data.end());  // float32 widened: exact in JSON
    test.outputs[name] = std::move(out);
  }
  test.sha256 = inference::sha256_hex(self_test_digest_text(test));
  return test;
}

namespace {

// [SECTION] Classifying a split part with one session

std::vector<ResultRow> classify(const inference::OrtSession& session, const ModelCard& card,
                                const std::vector<std::pair<std::string, int>>& files, const QuantizeOptions& options) {
  std::vector<ResultRow> rows;
  for (const auto& [path, label] : files) {
    ResultRow row;
    row.path = path;
    row.label = label;
    rows.push_back(row);
  }
  inference::BatchOptions batch;
  batch.batch = std::max(1, options.batch);
  batch.threads = options.threads;
  inference::predict_rows(session, card, rows, batch);
  return rows;
}

// [SECTION] The gate

QuantizeGate compare_on_test(const std::vector<ResultRow>& fp32, const std::vector<ResultRow>& int8,
                             const QuantizeOptions& options) {
  QuantizeGate gate;
  for (size_t i = 0; i < fp32.size(); ++i) {
    const ResultRow &f = fp32[i], &q = int8[i];
    if (f.status != ResultStatus::ok || q.status != ResultStatus::ok || f.label < 0) continue;
    ++gate.test_images;
    gate.float_correct += f.prediction.top == f.label;
    gate.int8_correct += q.prediction.top == q.label;
    gate.agreeing += f.prediction.top == q.prediction.top;
    for (size_t k = 0; k < f.prediction.probabilities.size() && k < q.prediction.probabilities.size(); ++k) {
      gate.max_probability_difference =
          std::max(gate.max_probability_difference,
                   std::fabs(static_cast<double>(f.prediction.probabilities[k]) - q.prediction.probabilities[k]));
    }
  }
  if (gate.test_images == 0) return gate;
  const double n = static_cast<double>(gate.test_images);
  gate.float_accuracy = static_cast<double>(gate.float_correct) / n;
  gate.int8_accuracy = static_cast<double>(gate.int8_correct) / n;
  gate.agreement = static_cast<double>(gate.agreeing) / n;
  // A drop, not a difference: an int8 model that gets more test images right is not refused for it
  // (the agreement bounds how different it may be). 1e-12: equal counts are equal accuracies.
  gate.passed = gate.float_accuracy - gate.int8_accuracy <= options.max_accuracy_drop + 1e-12 &&
                gate.agreement >= options.min_agreement - 1e-12;
  return gate;
}

}  // namespace

std::string QuantizeGate::to_text() const {
  const Interval f = wilson_interval(float_correct, test_images), q = wilson_interval(int8_correct, test_images);
  const Interval a = wilson_interval(agreeing, test_images);
  return "test accuracy: fp32 " + with_interval(float_accuracy, f, 4) + ", int8 " + with_interval(int8_accuracy, q, 4) +
         " (" + std::to_string(float_correct) + " and " + std::to_string(int8_correct) + " of " +
         std::to_string(test_images) + " held-out images; difference " +
         fixed(100 * (int8_accuracy - float_accuracy), 2) + " points)\ntop class agrees on " +
         std::to_string(agreeing) + " of " + std::to_string(test_images) + " (" + fixed(100 * agreement, 2) + "% " +
         "[" + fixed(100 * a.low, 1) + ", " + fixed(100 * a.high, 1) + "]); largest probability difference " +
         fixed(max_probability_difference, 4) + "\n";
}

// [SECTION] quantize_model_file

QuantizeResult quantize_model_file(const std::string& float_path, const SplitFiles& split, const std::string& out_path,
                                   const QuantizeOptions& options) {
  QuantizeResult result;
  // The float model: the shared reader (card, weights hash) and libprotobuf (the graph to rewrite).
  const OnnxFileInfo info = read_onnx_file(float_path);
  const ModelCard& card = info.card;
  if (card.is_int8()) {
    throw Error(ErrorCode::InvalidArgument, float_path + " is already an int8 model; quantise its float model");
  }
  if (split.classes != card.class_names) {
    throw Error(ErrorCode::InvalidArgument, float_path + ": the split's classes differ from the model's (is this the "
                                                         "config or run the model was trained with?)");
  }
  if (split.train.empty() || split.test.empty()) {
    throw Error(ErrorCode::InvalidArgument, "int8 quantisation needs training images (calibration) and test images "
                                            "(the gate); the split has " + std::to_string(split.train.size()) +
                                                " and " + std::to_string(split.test.size()));
  }
  // The card's test figures say which split the model was tested on: the same count, or another
  // split (config, data set or seed) that would make the gate meaningless.
  std::optional<double> recorded_accuracy;
  if (card.test_metrics.is_object() && card.test_metrics.contains("total") && card.test_metrics.contains("accuracy") &&
      card.test_metrics.at("total").is_number_integer() && card.test_metrics.at("accuracy").is_number()) {
    const int64_t total = card.test_metrics.at("total").get<int64_t>();
    if (total != static_cast<int64_t>(split.test.size())) {
      throw Error(ErrorCode::InvalidArgument,
                  "the split has " + std::to_string(split.test.size()) + " test images but " + float_path + "'s card "
                  "says it was tested on " + std::to_string(total) + ": not the split the model was trained with "
                  "(another config, data set or seed?); nothing written");
    }
    recorded_accuracy = card.test_metrics.at("accuracy").get<double>();
  }
  for (const auto* part : {&split.train, &split.val, &split.test}) {
    for (const auto& entry : *part) {
      if (entry.first.find(".npz:") != std::string::npos) {
        throw Error(ErrorCode::InvalidArgument, "int8 quantisation reads image files, but the split's images are inside "
                                                "an .npz (" + entry.first + ")");
      }
    }
  }
  onnx::ModelProto fp32;
  {
    std::ifstream in(float_path, std::ios::binary);
    if (!in || !fp32.ParseFromIstream(&in)) throw Error(ErrorCode::Io, float_path + ": cannot read the ONNX graph");
  }
  result.float_bytes = info.file_bytes;
  result.onnx_path = out_path;
  if (result.onnx_path.empty()) {
    fs::path p(float_path);
    result.onnx_path = (p.parent_path() / (p.stem().string() + ".int8.onnx")).string();
  }

  // Calibration: training images only, spread evenly over the split's list (sorted by class and
  // path, so every class is represented in its share).
  const size_t available = split.train.size();
  const size_t want = options.max_calibration_images > 0
                          ? std::min(available, static_cast<size_t>(options.max_calibration_images))
                          : available;
  std::vector<std::string> calibration;
  for (size_t i = 0; i < want; ++i) calibration.push_back(split.train[i * available / want].first);
  const QdqPlan plan = plan_qdq(fp32);
  progress(options, std::to_string(plan.weighted_nodes.size()) + " weighted nodes, " +
                        std::to_string(plan.calibrated.size()) + " activation ranges to measure on " +
                        std::to_string(calibration.size()) + " training images (" + to_string(options.range) + ")");
  const QdqCalibration calibrated = calibrate_qdq(fp32, plan, calibration, card.preprocess, options);
  result.calibration_images = calibrated.images;
  result.unreadable_calibration_images = calibrated.unreadable;
  onnx::ModelProto int8 = apply_qdq(fp32, plan, calibrated, options);
  result.ops = count_ops(int8);

  // The gate, on the test split: both models through ONNX Runtime, the card's preprocessing.
  inference::OrtSessionOptions session_options;
  session_options.threads = options.threads;
  const inference::OrtSession float_session(float_path, session_options);
  const inference::OrtSession int8_session = inference::OrtSession::from_bytes(serialize_onnx(int8), session_options);
  progress(options, "classifying " + std::to_string(split.test.size()) + " test images with both models");
  const std::vector<ResultRow> float_rows = classify(float_session, card, split.test, options);
  const std::vector<ResultRow> int8_rows = classify(int8_session, card, split.test, options);
  result.gate = compare_on_test(float_rows, int8_rows, options);
  if (result.gate.test_images == 0) {
    throw Error(ErrorCode::InvalidArgument, "int8 quantisation: none of the " + std::to_string(split.test.size()) +
                                                " test images could be classified; nothing written");
  }
  if (!result.gate.passed) {
    throw Error(ErrorCode::InvalidArgument,
                "the int8 model is refused (nothing written to " + result.onnx_path + "): its test accuracy may fall at "
                "most " + fixed(100 * options.max_accuracy_drop, 1) + " point(s) below the float model's and its top class "
                "must agree on at least " + fixed(100 * options.min_agreement, 1) + "% of the test images\n" + result.gate.to_text());
  }
  std::string notes;
  if (recorded_accuracy && std::fabs(*recorded_accuracy - result.gate.float_accuracy) > 1e-9) {
    notes = "the float model's test accuracy with ONNX Runtime (" + fixed(result.gate.float_accuracy, 4) +
            ") differs from its card's (" + fixed(*recorded_accuracy, 4) + ", from training)";
  }

  // The int8 card.
  ModelCard q = card;
  q.name = card.name + "-int8";
  q.precision = kPrecisionInt8;
  q.created_utc = utc_now_iso8601();
  q.producer_version = loupe::version();
  const Evaluation evaluation = evaluate(int8_rows, card.class_names, BootstrapOptions{});
  json test_metrics = evaluation.report ? evaluation.report->to_json() : json::object();
  if (evaluation.matrix) test_metrics["confusion_matrix"] = evaluation.matrix->to_json();
  test_metrics["unreadable_files"] = evaluation.failed;
  test_metrics["evaluated"] = "the int8 model, ONNX Runtime " + inference::OrtSession::runtime_version() +
                              ", on the held-out test split";
  q.test_metrics = test_metrics;
  if (card.ood) {
    // The threshold is re-estimated on the int8 model's own validation distances, split-conformal
    // as export and `loupe ood-threshold` do (ood_fit.h), so that its false-alarm rate is what the
    // card says. Only the validation distances: cross-fitting needs the training embeddings, which
    // the int8 graph does not give apart from its distances (the float card's cross-fit fields go).
    json ood = card.ood->to_json();
    const double alpha = ood.contains("alpha") && ood["alpha"].is_number() ? ood["alpha"].get<double>()
                         : ood.contains("threshold_quantile") && ood["threshold_quantile"].is_number()
                             ? 1 - ood["threshold_quantile"].get<double>()
                             : 0.05;
    ood["float_threshold"] = card.ood->threshold;
    for (const char* stale : {"threshold_quantile", "cross_fit_folds", "cross_fit_exchangeability", "previous_threshold",
                              "threshold_estimated", "test_false_alarm_interval"}) {
      ood.erase(stale);
    }
    const auto distances = [](const std::vector<ResultRow>& rows) {
      std::vector<double> d;
      for (const ResultRow& r : rows) {
        if (r.status == ResultStatus::ok && r.prediction.has_ood) d.push_back(r.prediction.ood_distance);
      }
      return d;
    };
    const auto above = [](const std::vector<double>& d, double threshold) {
      int64_t count = 0;
      for (double v : d) count += !(v <= threshold);
      return count;
    };
    const std::vector<double> test_d = distances(int8_rows);
    const std::vector<double> val_d = split.val.empty() ? std::vector<double>()
                                                         : distances(classify(int8_session, card, split.val, options));
    if (!val_d.empty()) {
      OodThresholdOptions threshold_options;
      threshold_options.alpha = alpha;
      threshold_options.folds = 0;
      const torch::Tensor val_tensor = torch::tensor(val_d, torch::kFloat64);
      const OodThresholdEstimate estimate =
          estimate_ood_threshold(torch::Tensor(), torch::Tensor(), {}, 0, 0, val_tensor, threshold_options);
      ood.update(estimate.card_fields());
      ood["threshold_fitted_on"] = "validation split (" + std::to_string(val_d.size()) + " images), int8 model";
      ood["val_false_alarm_rate"] = static_cast<double>(above(val_d, estimate.conformal.threshold)) /
                                    static_cast<double>(val_d.size());
    } else {
      ood["threshold_fitted_on"] = ood.value("threshold_fitted_on", std::string()) + " (the float model's; no "
                                   "validation split to refit it on)";
    }
    if (!test_d.empty()) {
      const int64_t flagged = above(test_d, ood["threshold"].get<double>());
      const Interval ci = wilson_interval(flagged, static_cast<int64_t>(test_d.size()));
      ood["test_false_alarm_rate"] = static_cast<double>(flagged) / static_cast<double>(test_d.size());
      ood["test_false_alarm_interval"] = {ci.low, ci.high};
      ood["test_images"] = test_d.size();
    }
    q.ood = OodCheck::from_json(ood);
  }
  const Interval fi = wilson_interval(result.gate.float_correct, result.gate.test_images);
  const Interval qi = wilson_interval(result.gate.int8_correct, result.gate.test_images);
  const Interval ai = wilson_interval(result.gate.agreeing, result.gate.test_images);
  json quantized_ops = json::object();
  for (const auto& [op, n] : result.ops) quantized_ops[op] = n;
  json record = {
      {"method", "static_qdq"},
      {"format", "ONNX QuantizeLinear/DequantizeLinear pairs (opset " + std::to_string(info.opset) +
                     "); ONNX Runtime fuses them into QLinearConv, QLinearAdd, ..."},
      {"weights", {{"type", "int8"}, {"bits", options.weight_bits}, {"scheme", "symmetric, zero point 0"},
                   {"granularity", "per output channel"}, {"bias", "int32 at input scale x weight scale"},
                   {"bias_correction", options.bias_correction},
                   {"nodes", plan.weighted_nodes.size()}}},
      {"activations", {{"type", "uint8"}, {"scheme", "asymmetric, the range holds 0"}, {"granularity", "per tensor"},
                       {"tensors", plan.calibrated.size()}}},
      {"calibration", {{"method", to_string(options.range)},
                       {"images", result.calibration_images},
                       {"unreadable_images", result.unreadable_calibration_images},
                       {"split", "train"},
                       {"selection", "evenly spread over the training split's " + std::to_string(available) + " images"}}},
      {"float", "the head (logits), cam, probabilities, embedding and out-of-distribution nodes stay float32"},
      {"float_model", {{"name", card.name}, {"weights_sha256", card.weights_sha256}, {"bytes", info.file_bytes}}},
      {"graph_ops", quantized_ops},
      {"gate", {{"max_accuracy_drop", options.max_accuracy_drop},
                {"min_agreement", options.min_agreement},
                {"passed", true}}},
      {"test", {{"images", result.gate.test_images},
                {"float_accuracy", result.gate.float_accuracy},
                {"float_accuracy_interval", {fi.low, fi.high}},
                {"int8_accuracy", result.gate.int8_accuracy},
                {"int8_accuracy_interval", {qi.low, qi.high}},
                {"agreement", result.gate.agreement},
                {"agreement_interval", {ai.low, ai.high}},
                {"max_probability_difference", result.gate.max_probability_difference},
                {"runtime", "ONNX Runtime " + inference::OrtSession::runtime_version()}}}};
  if (options.range == RangeMethod::percentile) record["calibration"]["percentile"] = options.percentile;
  if (!notes.empty()) record["note"] = notes;
  q.quantization = Quantization::from_json(record);
  const uint64_t seed = card.self_test ? card.self_test->seed : 20261203;
  q.self_test = record_self_test(q, int8_session, seed, options.self_test_absolute_tolerance,
                                 options.self_test_relative_tolerance);
  q.weights_sha256 = weights_sha256(int8);
  for (auto& entry : *int8.mutable_metadata_props()) {
    if (entry.key() == kModelCardKey) entry.set_value(q.to_json().dump());
  }
  check_onnx(int8);

  // Written as OUT.tmp, read back and self-tested, then renamed: a failure leaves nothing at OUT.
  const std::string tmp = result.onnx_path + ".tmp";
  std::error_code ignored;
  write_onnx(int8, tmp);
  try {
    const OnnxFileInfo written = read_onnx_file(tmp);
    result.card = written.card;
    result.file_bytes = written.file_bytes;
    const inference::OrtSession session(tmp, session_options);
    result.self_test = inference::run_self_test(written.card, session);
    if (!result.self_test.passed) {
      throw Error(ErrorCode::InvalidArgument, "the int8 file fails its own self-test with ONNX Runtime (please report "
                                              "this): " + result.self_test.summary());
    }
  } catch (...) {
    fs::remove(tmp, ignored);
    throw;
  }
  std::error_code renamed;
  fs::rename(tmp, result.onnx_path, renamed);
  if (renamed) {
    fs::remove(tmp, ignored);
    throw Error(ErrorCode::Io, result.onnx_path + ": cannot move the int8 model into place: " + renamed.message());
  }
  fs::path card_path(result.onnx_path);
  card_path.replace_extension(".card.json");
  {
    std::ofstream out(card_path);
    out << result.card.to_json().dump(2) << "\n";
    if (!out) throw Error(ErrorCode::Io, card_path.string() + ": write failed");
  }
  result.card_path = card_path.string();

  int qlinear = 0;
  for (const auto& [op, n] : result.ops) qlinear += op == "QuantizeLinear" ? n : 0;
  result.summary =
      result.onnx_path + " (" + std::to_string(result.file_bytes) + " bytes; float " + std::to_string(result.float_bytes) +
      " bytes)\nint8: " + std::to_string(plan.weighted_nodes.size()) + " weighted nodes (per-channel int8 weights), " +
      std::to_string(plan.calibrated.size()) + " activation ranges (" + to_string(options.range) +
      (options.range == RangeMethod::percentile ? " " + fixed(options.percentile, 3) : std::string()) + ") from " +
      std::to_string(result.calibration_images) + " training images" +
      (result.unreadable_calibration_images ? " (" + std::to_string(result.unreadable_calibration_images) + " unreadable)"
                                            : std::string()) +
      ", " + std::to_string(qlinear) + " QuantizeLinear nodes\n" + result.gate.to_text() + "gate passed (accuracy at most " +
      fixed(100 * options.max_accuracy_drop, 1) + " point below fp32, agreement >= " +
      fixed(100 * options.min_agreement, 1) + "%)\n";
  if (result.card.ood) {
    const json ood = result.card.ood->to_json();
    result.summary += "out-of-distribution threshold " + fixed(result.card.ood->threshold, 3) + " (float " +
                      fixed(ood.value("float_threshold", 0.0), 3) + "); false alarms validation " +
                      fixed(100 * ood.value("val_false_alarm_rate", 0.0), 1) + "%, test " +
                      fixed(100 * ood.value("test_false_alarm_rate", 0.0), 1) + "%\n";
  }
  result.summary += "self-test (ONNX Runtime, int8): " + result.self_test.summary() + "\n";
  if (!notes.empty()) result.summary += "note: " + notes + "\n";
  return result;
}

}  // namespace loupe::exporter
