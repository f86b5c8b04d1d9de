// ImageNet weights from the quantised TFLite MobileNetV2 (pretrained.h).
//   * the flatbuffer reader on a small model built here (no data needed): fields, per-channel
//     dequantisation, and every truncation / corruption gives a loupe::Error, never a crash;
//   * with the data folder: the real file's layout, loading into mobilenet_v2 (1001 / 1000 / 4 classes,
//     gray input, wrong architecture or shapes), weight statistics, BatchNorm calibration for train
//     mode, and the two checks that the weights are really ImageNet-capable offline:
//       - the float model against a reference run of the quantised graph itself (uint8 arithmetic
//         emulated below) on real and synthetic images: correlated logits, same top-1; this also
//         measures the SAME-padding difference (TFLite pads stride-2 convs bottom/right only);
//       - feature quality: nearest-class-mean on 1280-d embeddings of real images (brain MRI through
//         the gray path, leukemia smears through RGB), pretrained vs randomly initialised, 5-fold CV.
// The real-data cases print their numbers with WARN; they are skipped (with a WARN) without the data.
#include "catch_torch.h"  // first: LibTorch, then Catch (see there)
#include "../core/skip.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "loupe/error.h"
#include "format_fixtures.h"
#include "loupe/image.h"
#include "loupe/models/pretrained.h"
#include "loupe/models/zoo.h"
#include "loupe/preprocess.h"

using namespace loupe::models;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
namespace nn = torch::nn;
namespace F = torch::nn::functional;
using loupe::test::tiny_tflite;

namespace {

// [SECTION] Helpers for the real file

fs::path data_dir() {
  const char* env = std::getenv("LOUPE_DATA_DIR");
  return fs::path(env ? env : LOUPE_DEFAULT_DATA_DIR);
}

fs::path tflite_path() { return data_dir() / "pretrained" / "mobilenet_v2_1.0_224_quant.tflite"; }

std::shared_ptr<Classifier> mobilenet(int num_classes, int in_channels = 3) {
  ModelConfig config;
  config.architecture = "mobilenet_v2";
  config.num_classes = num_classes;
  config.in_channels = in_channels;
  auto model = create_model(config);
  model->eval();
  return model;
}

// The first `count` files of root/cls (sorted), as uint8 RGB 224 x 224 tensors [N, 3, 224, 224] (0..255).
torch::Tensor load_pixels(const fs::path& folder, size_t count, loupe::ColorMode color = loupe::ColorMode::Rgb) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  files.resize(std::min(files.size(), count));
  loupe::PreprocessSpec spec = loupe::PreprocessSpec::unit_scale(224, color);
  std::vector<torch::Tensor> images;
  for (const auto& file : files) {
    const loupe::Tensor t = loupe::preprocess(loupe::decode_image_file(file.string()), spec);
    torch::Tensor x = torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat).clone();
    images.push_back((x * 255.0).round());
  }
  return torch::cat(images);
}

// What the TFLite model's uint8 input means: real = (pixel - 128) / 128 (checked in a test below).
torch::Tensor tflite_input(const torch::Tensor& pixels) { return (pixels - 128.0) / 128.0; }

// [SECTION] A reference run of the quantised graph (uint8 activations), for this file's ops
// Activations are kept as real values on their uint8 grid (real = s * (q - z)); each op computes in
// double what TFLite computes in int32 and rounds back to uint8 with the output's scale and zero point,
// clamped to the fused activation's range. (TFLite rounds via a fixed-point multiplier: results can
// differ by one step in rare ties.)

torch::Tensor requantize(const torch::Tensor& real, const TfliteTensor& out, int8_t activation) {
  const double s = out.quantization.scale.at(0);
  const double z = static_cast<double>(out.quantization.zero_point.at(0));
  double lo = 0.0, hi = 255.0;
  if (activation == 1 || activation == 3) lo = std::max(lo, z);                       // ReLU, ReLU6
  if (activation == 3) hi = std::min(hi, z + std::round(6.0 / s));                     // ReLU6
  return ((real / s).round() + z).clamp(lo, hi).sub(z).mul(s);
}

// TFLite's SAME padding: total = max((out - 1) * stride + k - in, 0), the smaller half first.
torch::Tensor pad_same(const torch::Tensor& x, int64_t k, int64_t stride) {
  const auto pads = [&](int64_t in) {
    const int64_t out = (in + stride - 1) / stride;
    const int64_t total = std::max<int64_t>((out - 1) * stride + k - in, 0);
    return std::make_pair(total / 2, total - total / 2);
  };
  const auto [top, bottom] = pads(x.size(2));
  const auto [left, right] = pads(x.size(3));
  return F::pad(x, F::PadFuncOptions({left, right, top, bottom}));
}

// Logits [N, 1001] (the input of the final softmax), real-valued, for NCHW real inputs.
torch::Tensor run_quantized(const TfliteModel& m, const torch::Tensor& input_real) {
  std::map<int32_t, torch::Tensor> values;
  const TfliteTensor& in = m.tensors.at(static_cast<size_t>(m.inputs.at(0)));
  values[m.inputs[0]] = requantize(input_real.to(torch::kDouble), in, 0);
  torch::Tensor logits;
  for (const TfliteOperator& op : m.operators) {
    const auto code = static_cast<TfliteOp>(op.opcode);
    const TfliteTensor& out = m.tensors.at(static_cast<size_t>(op.outputs.at(0)));
    const torch::Tensor& x = values.at(op.inputs.at(0));
    torch::Tensor y;
    if (code == TfliteOp::Conv2D || code == TfliteOp::DepthwiseConv2D) {
      torch::Tensor w = dequantize(m.tensors.at(static_cast<size_t>(op.inputs[1]))).to(torch::kDouble);
      const torch::Tensor bias = dequantize(m.tensors.at(static_cast<size_t>(op.inputs[2]))).to(torch::kDouble);
      const bool depthwise = code == TfliteOp::DepthwiseConv2D;
      w = depthwise ? w.permute({3, 0, 1, 2}) : w.permute({0, 3, 1, 2});
      const torch::Tensor padded = op.padding_same ? pad_same(x, w.size(2), op.stride_h) : x;
      y = F::conv2d(padded, w.contiguous(),
                    F::Conv2dFuncOptions().bias(bias).stride(op.stride_h).groups(depthwise ? x.size(1) : 1));
    } else if (code == TfliteOp::Add) {
      y = x + values.at(op.inputs.at(1));
    } else if (code == TfliteOp::AveragePool2D) {
      REQUIRE_FALSE(op.padding_same);
      y = F::avg_pool2d(x, F::AvgPool2dFuncOptions({op.filter_h, op.filter_w}).stride({op.stride_h, op.stride_w}));
    } else if (code == TfliteOp::Reshape) {
      values[op.outputs[0]] = logits = x.reshape({x.size(0), -1});
      continue;
    } else if (code == TfliteOp::Softmax) {
      continue;
    } else {
      FAIL("reference: op code " << op.opcode << " not emulated");
    }
    values[op.outputs[0]] = requantize(y, out, op.fused_activation);
  }
  return logits.to(torch::kFloat);
}

// mobilenet_v2's forward with TFLite's padding on the stride-2 convs (pad bottom/right only): the
// float model as TensorFlow would run it, to separate the padding difference from quantisation.
torch::Tensor apply_tf_padding(const std::shared_ptr<nn::Module>& m, torch::Tensor x) {
  if (auto* seq = m->as<nn::Sequential>()) {
    for (const auto& child : seq->children()) x = apply_tf_padding(child, x);
    return x;
  }
  if (auto* block = m->as<InvertedResidual>()) {
    const torch::Tensor y = apply_tf_padding(block->body.ptr(), x);
    return block->use_residual ? y + x : y;
  }
  if (auto* conv = m->as<nn::Conv2d>()) {
    const auto& o = conv->options;
    const int64_t stride = o.stride()->at(0);
    if (stride == 1) return conv->forward(x);
    return F::conv2d(pad_same(x, o.kernel_size()->at(0), stride), conv->weight,
                     F::Conv2dFuncOptions().stride(stride).groups(o.groups()));
  }
  if (auto* bn = m->as<nn::BatchNorm2d>()) return bn->forward(x);
  if (auto* relu6 = m->as<nn::ReLU6>()) return relu6->forward(x);
  FAIL("tf padding walk: unexpected module " << m->name());
  return x;
}

torch::Tensor forward_tf_padding(Classifier& model, const torch::Tensor& x) {
  const torch::Tensor fm = apply_tf_padding(model.named_children()["features"], x);
  return model.head()->forward(fm.mean({2, 3}));
}

// fn over x in batches of `size` (small batches keep activations under glibc's mmap threshold: with
// batches of 16 at 224 x 224 the page faults alone took most of the run time on 2 cores).
torch::Tensor in_batches(const std::function<torch::Tensor(const torch::Tensor&)>& fn, const torch::Tensor& x,
                         int64_t size = 4) {
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < x.size(0); i += size) out.push_back(fn(x.slice(0, i, i + size)));
  return torch::cat(out);
}

double correlation(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.flatten() - a.mean(), y = b.flatten() - b.mean();
  return (x * y).sum().item<double>() / std::sqrt((x * x).sum().item<double>() * (y * y).sum().item<double>());
}

double top1_agreement(const torch::Tensor& a, const torch::Tensor& b) {
  return a.argmax(1).eq(b.argmax(1)).to(torch::kDouble).mean().item<double>();
}

// Nearest class mean on L2-normalised embeddings, stratified k-fold (fixed seed): accuracy.
double nearest_class_mean_cv(const torch::Tensor& embeddings, const std::vector<int64_t>& labels, int folds) {
  const torch::Tensor e = F::normalize(embeddings.to(torch::kDouble), F::NormalizeFuncOptions().dim(1));
  const int64_t classes = *std::max_element(labels.begin(), labels.end()) + 1;
  std::vector<int> fold(labels.size());
  std::mt19937 rng(7);
  for (int64_t c = 0; c < classes; ++c) {
    std::vector<size_t> members;
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] == c) members.push_back(i);
    std::shuffle(members.begin(), members.end(), rng);
    for (size_t j = 0; j < members.size(); ++j) fold[members[j]] = static_cast<int>(j % static_cast<size_t>(folds));
  }
  int correct = 0;
  for (int f = 0; f < folds; ++f) {
    std::vector<torch::Tensor> means;
    for (int64_t c = 0; c < classes; ++c) {
      std::vector<int64_t> rows;
      for (size_t i = 0; i < labels.size(); ++i)
        if (labels[i] == c && fold[i] != f) rows.push_back(static_cast<int64_t>(i));
      means.push_back(e.index_select(0, torch::tensor(rows)).mean(0));
    }
    const torch::Tensor centroids = torch::stack(means);
    for (size_t i = 0; i < labels.size(); ++i) {
      if (fold[i] != f) continue;
      const int64_t predicted = (centroids - e[static_cast<int64_t>(i)]).pow(2).sum(1).argmin().item<int64_t>();
      correct += predicted == labels[i];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

}  // namespace

// [SECTION] The reader, without the data folder

TEST_CASE("the TFLite reader reads a small model built with flatbuffers", "[pretrained]") {
  const std::vector<uint8_t> bytes = tiny_tflite();
  const TfliteModel m = read_tflite(bytes.data(), bytes.size());
  CHECK(m.version == 3);
  CHECK(m.description == "tiny test model");
  REQUIRE(m.tensors.size() == 4);
  CHECK(m.inputs == std::vector<int32_t>{0});
  CHECK(m.outputs == std::vector<int32_t>{3});
  REQUIRE(m.operators.size() == 1);
  const TfliteOperator& op = m.operators[0];
  CHECK(op.opcode == static_cast<int32_t>(TfliteOp::Conv2D));
  CHECK(op.inputs == std::vector<int32_t>{0, 1, 2});
  CHECK_FALSE(op.padding_same);
  CHECK(op.stride_h == 1);
  CHECK(op.fused_activation == 3);
  CHECK(m.tensors[1].name == "conv/weights");
  CHECK(m.tensors[1].shape == std::vector<int32_t>{2, 1, 1, 3});
  CHECK(m.tensors[0].quantization.zero_point == std::vector<int64_t>{128});

  // Per-channel along dimension 0: scales 0.5 and 0.25.
  const torch::Tensor w = dequantize(m.tensors[1]);
  CHECK(w.sizes() == torch::IntArrayRef({2, 1, 1, 3}));
  CHECK(torch::equal(w.flatten(), torch::tensor({0.5f, 1.0f, 1.5f, -1.0f, -1.25f, -1.5f})));
  const torch::Tensor bias = dequantize(m.tensors[2]);
  CHECK(torch::allclose(bias, torch::tensor({100 * 0.5f / 128, -200 * 0.25f / 128})));
  CHECK_THROWS_WITH(dequantize(m.tensors[0]), Contains("input") && Contains("no constant data"));

  // Scales that do not fit the quantized dimension are refused, naming the tensor.
  TfliteTensor bad = m.tensors[1];
  bad.quantization.quantized_dimension = 3;
  CHECK_THROWS_WITH(dequantize(bad), Contains("conv/weights") && Contains("quantized_dimension 3"));
  bad = m.tensors[1];
  bad.data.pop_back();
  CHECK_THROWS_WITH(dequantize(bad), Contains("5 bytes") && Contains("needs 6"));
}

TEST_CASE("truncated, corrupt and foreign files give a loupe::Error, never a crash", "[pretrained]") {
  const std::vector<uint8_t> bytes = tiny_tflite();
  CHECK_THROWS_AS(read_tflite(bytes.data(), 0), loupe::Error);
  const std::vector<uint8_t> png{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
  try {
    read_tflite(png.data(), png.size());
    FAIL("a PNG header parsed as TFLite");
  } catch (const loupe::Error& e) {
    CHECK(e.code() == loupe::ErrorCode::UnknownFormat);
    CHECK_THAT(e.what(), Contains("TFL3"));
  }

  // Every prefix fails cleanly, except those that only drop the builder's trailing alignment padding
  // (the flatbuffer is built back to front; its first-written object ends the buffer): those parse to
  // the same model.
  const TfliteModel whole = read_tflite(bytes.data(), bytes.size());
  int failures = 0, same = 0;
  for (size_t size = 1; size < bytes.size(); ++size) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size));
    try {
      const TfliteModel m = read_tflite(prefix.data(), prefix.size());
      bool identical = m.tensors.size() == whole.tensors.size() && m.operators.size() == whole.operators.size();
      for (size_t i = 0; identical && i < m.tensors.size(); ++i) {
        identical = m.tensors[i].data == whole.tensors[i].data && m.tensors[i].shape == whole.tensors[i].shape;
      }
      INFO("prefix of " << size << " of " << bytes.size() << " bytes parsed");
      CHECK(identical);
      CHECK(bytes.size() - size < 8);
      ++same;
    } catch (const loupe::Error&) {
      ++failures;
    }
  }
  CHECK(failures + same == static_cast<int>(bytes.size()) - 1);
  CHECK(same < 8);

  // Random byte flips: parse or throw loupe::Error (an out-of-bounds read would crash or trip ASan).
  std::mt19937 rng(3);
  int parsed = 0, refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> copy = bytes;
    for (int k = 0; k < 3; ++k) {
      copy[8 + rng() % (copy.size() - 8)] = static_cast<uint8_t>(rng());
    }
    try {
      const TfliteModel m = read_tflite(copy.data(), copy.size());
      for (const auto& t : m.tensors) {
        if (!t.data.empty()) (void)dequantize(t);
      }
      ++parsed;
    } catch (const loupe::Error&) {
      ++refused;
    }
  }
  INFO("3000 corrupted copies: " << parsed << " parsed, " << refused << " refused");
  CHECK(parsed + refused == 3000);
  CHECK(refused > 0);
}

// [SECTION] The real file

TEST_CASE("mobilenet_v2_1.0_224_quant.tflite: layout and input quantisation", "[pretrained][real-data]") {
  if (!fs::exists(tflite_path())) LOUPE_SKIP("no " << tflite_path());
  const TfliteModel m = read_tflite_file(tflite_path().string());
  int convs = 0, depthwise = 0, stride2 = 0;
  for (const auto& op : m.operators) {
    const auto code = static_cast<TfliteOp>(op.opcode);
    if (code == TfliteOp::Conv2D || code == TfliteOp::DepthwiseConv2D) {
      ++convs;
      depthwise += code == TfliteOp::DepthwiseConv2D;
      stride2 += op.stride_h == 2;
      CHECK(op.padding_same);
    }
  }
  CHECK(convs == 53);  // 52 in the backbone + the 1x1 "Logits" conv
  CHECK(depthwise == 17);
  CHECK(stride2 == 5);
  const TfliteTensor& input = m.tensors.at(static_cast<size_t>(m.inputs.at(0)));
  CHECK(input.type == static_cast<int8_t>(TfliteType::UInt8));
  CHECK(input.shape == std::vector<int32_t>{1, 224, 224, 3});
  CHECK(input.quantization.scale.at(0) == 1.0f / 128.0f);  // real = (pixel - 128) / 128, in [-1, 1)
  CHECK(input.quantization.zero_point.at(0) == 128);

  // Truncated copies of the real file are refused with the field that broke. (The file ends with a zip
  // of imagenet_labels.txt, TFLite metadata appended after the flatbuffer: cutting only that parses.)
  const std::vector<uint8_t> bytes = loupe::read_file(tflite_path().string());
  for (size_t size : {size_t{8}, size_t{1000}, bytes.size() / 2}) {
    try {
      read_tflite(bytes.data(), size);
      FAIL("a truncated copy of " << size << " bytes parsed");
    } catch (const loupe::Error& e) {
      CHECK(e.code() == loupe::ErrorCode::CorruptImage);
      CHECK_THAT(e.what(), Contains("truncated or corrupt"));
    }
  }
}

TEST_CASE("load_pretrained fills mobilenet_v2 and the float model matches the quantised graph",
          "[pretrained][real-data]") {
  if (!fs::exists(tflite_path())) LOUPE_SKIP("no " << tflite_path());
  torch::NoGradGuard no_grad;
  auto model = mobilenet(1001);
  const PretrainedReport report = load_pretrained(*model, tflite_path().string());
  INFO(report.summary());
  WARN("load_pretrained: " << report.summary());
  CHECK(report.convolutions == 52);
  CHECK(report.tensors_loaded == 106);
  CHECK(report.head_loaded);
  CHECK(report.input_scale == 1.0 / 128.0);
  CHECK(report.input_zero_point == 128);
  CHECK(report.preprocess_mean == Approx(128.0 / 255.0));
  CHECK(report.preprocess_std == Approx(128.0 / 255.0));
  CHECK(report.max_abs_weight > 0.5);
  CHECK(report.max_abs_weight < 100.0);

  // Statistics: every conv has non-degenerate, finite weights; every BN is identity + folded bias.
  const auto params = model->named_parameters();
  const auto buffers = model->named_buffers();
  CHECK(params["features.0.0.weight"].sizes() == torch::IntArrayRef({32, 3, 3, 3}));
  for (const auto& item : params) {
    CHECK(torch::isfinite(item.value()).all().item<bool>());
    if (item.key().size() > 7 && item.key().substr(item.key().size() - 7) == ".weight" && item.value().dim() == 4) {
      INFO(item.key());
      CHECK(item.value().std().item<double>() > 1e-3);
    }
  }
  auto* bn = model->named_modules()["features.5.conv.1.1"]->as<nn::BatchNorm2d>();
  REQUIRE(bn != nullptr);
  const torch::Tensor probe = torch::randn({2, bn->options.num_features(), 3, 3});
  CHECK(torch::allclose(bn->forward(probe), probe + bn->bias.view({1, -1, 1, 1}), 1e-5, 1e-6));
  CHECK(torch::all(buffers["features.5.conv.1.1.running_mean"] == 0).item<bool>());

  // The quantised graph (reference) and the float model on the same inputs: 12 real images of two data
  // sets, a constant gray image and a smooth gradient (argmax stable on synthetic inputs too).
  const TfliteModel tflite = read_tflite_file(tflite_path().string());
  std::vector<torch::Tensor> pixel_sets;
  const fs::path mri = data_dir() / "brain-mri";
  const fs::path blood = data_dir() / "all-leukemia";
  if (fs::exists(mri)) pixel_sets.push_back(load_pixels(mri / "pituitary", 6));
  else loupe::test::record_skip("no " + mri.string() + ": compared on fewer images");
  if (fs::exists(blood)) pixel_sets.push_back(load_pixels(blood / "Benign", 6));
  else loupe::test::record_skip("no " + blood.string() + ": compared on fewer images");
  pixel_sets.push_back(torch::full({1, 3, 224, 224}, 128.0));
  pixel_sets.push_back(torch::linspace(0, 255, 224).round().view({1, 1, 1, 224}).expand({1, 3, 224, 224}).clone());
  const torch::Tensor pixels = torch::cat(pixel_sets);
  const torch::Tensor x = tflite_input(pixels);

  const torch::Tensor reference = in_batches([&](const torch::Tensor& b) { return run_quantized(tflite, b); }, x, 2);
  const torch::Tensor ours = in_batches([&](const torch::Tensor& b) { return model->forward(b); }, x);
  const torch::Tensor ours_tf_pad = in_batches([&](const torch::Tensor& b) { return forward_tf_padding(*model, b); }, x);
  REQUIRE(reference.sizes() == ours.sizes());
  const double agree = top1_agreement(ours, reference), agree_tf = top1_agreement(ours_tf_pad, reference);
  const double corr = correlation(ours, reference), corr_tf = correlation(ours_tf_pad, reference);
  const double corr_pad = correlation(ours, ours_tf_pad);
  WARN(pixels.size(0) << " images vs the quantised graph: top-1 agreement " << agree << " (PyTorch padding), "
                      << agree_tf << " (TFLite padding); logit correlation " << corr << " / " << corr_tf
                      << "; PyTorch vs TFLite padding alone: correlation " << corr_pad << ", top-1 agreement "
                      << top1_agreement(ours, ours_tf_pad));
  // The mapping is right: the same float weights run with TFLite's padding track the uint8 graph
  // closely (quantisation noise only). With PyTorch's symmetric padding the five stride-2 layers sample
  // one pixel off, which adds up to a ~31-pixel shift of the 224 input and changes the 7x7 map's border
  // cells: logits stay correlated but the top-1 ImageNet class of these (non-ImageNet) images often
  // flips. Fine-tuning absorbs it; frozen embeddings still carry the features (last test case).
  CHECK(corr_tf > 0.98);
  CHECK(agree_tf >= 0.85);
  CHECK(corr > 0.6);
  // Synthetic inputs (constant gray, horizontal ramp): the same argmax in the reference and the float model.
  for (int64_t i = pixels.size(0) - 2; i < pixels.size(0); ++i) {
    INFO("synthetic image " << i);
    CHECK(ours_tf_pad[i].argmax().item<int64_t>() == reference[i].argmax().item<int64_t>());
  }
}

TEST_CASE("load_pretrained: other class counts, gray input, and what does not fit", "[pretrained][real-data]") {
  if (!fs::exists(tflite_path())) LOUPE_SKIP("no " << tflite_path());
  torch::NoGradGuard no_grad;
  const std::string path = tflite_path().string();
  auto reference = mobilenet(1001);
  load_pretrained(*reference, path);
  const auto ref_params = reference->named_parameters();

  SECTION("4 classes: the backbone loads, the head stays fresh") {
    auto model = mobilenet(4);
    const torch::Tensor head_before = model->head()->weight.clone();
    const PretrainedReport report = load_pretrained(*model, path);
    CHECK_FALSE(report.head_loaded);
    CHECK(report.tensors_loaded == 104);
    CHECK(torch::equal(model->head()->weight, head_before));
    const torch::Tensor x = torch::rand({2, 3, 96, 96}) * 2 - 1;
    CHECK(torch::allclose(model->embed(x), reference->embed(x)));
  }
  SECTION("1000 classes: torchvision's order, background row dropped") {
    auto model = mobilenet(1000);
    CHECK(load_pretrained(*model, path).head_loaded);
    CHECK(torch::equal(model->head()->weight, ref_params["classifier.1.weight"].slice(0, 1)));
  }
  SECTION("gray input: the first conv is the RGB conv summed over channels") {
    auto gray = mobilenet(1001, 1);
    const PretrainedReport report = load_pretrained(*gray, path);
    CHECK(report.gray_input);
    const torch::Tensor g = torch::rand({2, 1, 96, 96}) * 2 - 1;
    const torch::Tensor a = gray->forward(g), b = reference->forward(g.expand({2, 3, 96, 96}));
    CHECK((a - b).abs().max().item<double>() < 1e-3 * std::max(1.0, b.abs().max().item<double>()));
  }
  SECTION("another architecture is refused, naming both sides") {
    ModelConfig config;
    config.architecture = "resnet18";
    auto resnet = create_model(config);
    CHECK_THROWS_WITH(load_pretrained(*resnet, path),
                      Contains("mobilenet_v2_1.0_224_quant.tflite has 52 convolutions") && Contains("resnet18 has 20"));
  }
  SECTION("a layer of another shape is named, with the file's layer") {
    auto model = mobilenet(1001);
    auto* conv = model->named_modules()["features.0.0"]->as<nn::Conv2d>();
    conv->weight.set_data(torch::zeros({16, 3, 3, 3}));
    CHECK_THROWS_WITH(load_pretrained(*model, path),
                      Contains("convolution 1 (MobilenetV2/Conv/Conv2D_Fold, [32, 3, 3, 3], stride 2) does not fit "
                               "features.0.0.weight [16, 3, 3, 3], stride 2"));
  }
  SECTION("4 input channels are refused and the model is left untouched") {
    auto model = mobilenet(1001, 4);
    const torch::Tensor before = model->named_parameters()["features.1.conv.0.0.weight"].clone();
    CHECK_THROWS_WITH(load_pretrained(*model, path), Contains("in_channels is 4"));
    CHECK(torch::equal(model->named_parameters()["features.1.conv.0.0.weight"], before));
  }
  SECTION("a missing file names the path") {
    auto model = mobilenet(2);
    CHECK_THROWS_WITH(load_pretrained(*model, "/nonexistent/weights.tflite"), Contains("/nonexistent/weights.tflite"));
  }
}

TEST_CASE("calibrate_batchnorm keeps the eval function and makes train mode follow it", "[pretrained][real-data]") {
  const fs::path blood = data_dir() / "all-leukemia";
  if (!fs::exists(tflite_path()) || !fs::exists(blood)) LOUPE_SKIP("no " << tflite_path() << " or " << blood);
  torch::NoGradGuard no_grad;
  auto model = mobilenet(4);
  load_pretrained(*model, tflite_path().string());
  // Calibrate on 8 images of each class, check on 8 others (all x / 255, mean 0.5, std 0.5).
  std::vector<torch::Tensor> calibration, held_out;
  for (const char* cls : {"Benign", "Early", "Pre", "Pro"}) {
    const torch::Tensor x = tflite_input(load_pixels(blood / cls, 12));
    calibration.push_back(x.slice(0, 0, 8));
    held_out.push_back(x.slice(0, 8));
  }
  const torch::Tensor a = torch::cat(calibration), b = torch::cat(held_out);

  // Pooled features (embed() would add the train-mode dropout's noise).
  const auto pooled = [&](const torch::Tensor& x) { return model->feature_map(x).mean({2, 3}); };
  // (whole 16-image batches here: train-mode BatchNorm normalises with the batch's statistics)
  const torch::Tensor before = pooled(b);
  model->train();
  const double loaded_train_corr = correlation(pooled(b), before);
  model->eval();
  load_pretrained(*model, tflite_path().string());  // undo the running-statistics update of that pass

  CHECK(calibrate_batchnorm(*model, a) == 52);
  CHECK_FALSE(model->is_training());
  const torch::Tensor after = pooled(b);
  CHECK((after - before).abs().max().item<double>() < 1e-3 * before.abs().max().item<double>());
  model->train();
  const double calibrated_train_corr = correlation(pooled(b), before);
  model->eval();
  WARN("train-mode vs pretrained (eval) pooled features on 16 held-out images, correlation: " << loaded_train_corr
                                                                                         << " as loaded, "
                                                                                         << calibrated_train_corr
                                                                                         << " after calibrate_batchnorm");
  CHECK(std::abs(loaded_train_corr) < 0.5);
  CHECK(calibrated_train_corr > 0.9);

  ModelConfig config;
  config.architecture = "resnet18";
  CHECK_THROWS_WITH(calibrate_batchnorm(*create_model(config), a), Contains("not resnet18"));
  CHECK_THROWS_WITH(calibrate_batchnorm(*model, a.slice(1, 0, 1)), Contains("[N >= 2, 3, H, W]"));
}

TEST_CASE("pretrained embeddings separate real classes better than random ones", "[pretrained][real-data]") {
  if (!fs::exists(tflite_path())) LOUPE_SKIP("no " << tflite_path());
  torch::NoGradGuard no_grad;
  struct DataSet {
    std::string name;
    std::vector<std::string> classes;
    loupe::ColorMode color;  // gray MRI goes through in_channels 1 (the summed first conv)
  };
  const std::vector<DataSet> sets{{"brain-mri", {"glioma", "meningioma", "notumor", "pituitary"}, loupe::ColorMode::Gray},
                                  {"all-leukemia", {"Benign", "Early", "Pre", "Pro"}, loupe::ColorMode::Rgb}};
  const size_t per_class = 40;
  for (const auto& set : sets) {
    const fs::path root = data_dir() / set.name;
    if (!fs::exists(root)) {
      loupe::test::record_skip("no " + root.string() + ": embedding quality on " + set.name + " not checked");
      continue;
    }
    // The first 40 files of each class (sorted names), 224 x 224, x / 255 with mean 0.5 and std 0.5.
    std::vector<torch::Tensor> batches;
    std::vector<int64_t> labels;
    for (size_t c = 0; c < set.classes.size(); ++c) {
      batches.push_back(load_pixels(root / set.classes[c], per_class, set.color));
      labels.insert(labels.end(), static_cast<size_t>(batches.back().size(0)), static_cast<int64_t>(c));
    }
    const torch::Tensor x = (torch::cat(batches) / 255.0 - 0.5) / 0.5;
    const int in_channels = set.color == loupe::ColorMode::Gray ? 1 : 3;
    torch::manual_seed(11);
    auto random = mobilenet(2, in_channels);
    auto pretrained = mobilenet(2, in_channels);
    load_pretrained(*pretrained, tflite_path().string());
    const auto embed_all = [&](Classifier& model) {
      return in_batches([&](const torch::Tensor& b) { return model.embed(b); }, x);
    };
    const torch::Tensor e_pretrained = embed_all(*pretrained);
    CHECK(e_pretrained.size(1) == 1280);
    const double acc_pretrained = nearest_class_mean_cv(e_pretrained, labels, 5);
    const double acc_random = nearest_class_mean_cv(embed_all(*random), labels, 5);
    WARN("nearest class mean on 1280-d embeddings, 5-fold CV, " << set.name << " " << set.classes.size()
                                                                << " classes x " << per_class << ": pretrained "
                                                                << acc_pretrained << ", random init " << acc_random);
    INFO(set.name);
    CHECK(acc_pretrained >= acc_random + 0.08);
    CHECK(acc_pretrained >= 0.75);
  }
}

