// Calibration for the QDQ pass (quantize.h calibrate_qdq): the float model runs on the calibration
// images with every tensor to be quantised as an extra output (min/max, or a histogram in a second
// pass for percentiles and the MSE range) and, for bias correction, the mean per channel of what
// each weighted node's rounded weights add to its output.
#include <algorithm>
#include <cmath>
#include <future>
#include <limits>
#include <set>
#include <thread>

#include "loupe/error.h"
#include "loupe/export/onnx_export.h"
#include "loupe/export/quantize.h"
#include "loupe/image.h"
#include "quantize_graph.h"

namespace loupe::exporter {

namespace {

constexpr int kHistogramBins = 4096;

// A batch of preprocessed images [n, C, H, W] (decoding on `threads` threads); unreadable files
// are left out and counted.
Tensor load_batch(const std::vector<std::string>& paths, size_t begin, size_t end, const PreprocessSpec& spec,
                  int threads, int64_t& unreadable) {
  const size_t plane = static_cast<size_t>(spec.channels()) * static_cast<size_t>(spec.height) * static_cast<size_t>(spec.width);
  std::vector<float> pixels((end - begin) * plane);
  std::vector<char> ok(end - begin, 0);
  const unsigned workers = threads > 0 ? static_cast<unsigned>(threads) : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::future<void>> jobs;
  for (unsigned w = 0; w < workers; ++w) {
    jobs.push_back(std::async(std::launch::async, [&, w] {
      for (size_t k = begin + w; k < end; k += workers) {
        try {
          preprocess_into(decode_image_file(paths[k]), spec, pixels.data() + (k - begin) * plane);
          ok[k - begin] = 1;
        } catch (const std::exception&) {
        }
      }
    }));
  }
  for (auto& job : jobs) job.get();
  Tensor batch;
  for (size_t k = begin; k < end; ++k) {
    if (!ok[k - begin]) {
      ++unreadable;
      continue;
    }
    batch.data.insert(batch.data.end(), pixels.begin() + static_cast<std::ptrdiff_t>((k - begin) * plane),
                      pixels.begin() + static_cast<std::ptrdiff_t>((k - begin + 1) * plane));
  }
  batch.shape = {static_cast<int64_t>(batch.data.size() / plane), spec.channels(), spec.height, spec.width};
  return batch;
}

struct Histogram {
  float min = std::numeric_limits<float>::infinity(), max = -std::numeric_limits<float>::infinity();
  std::vector<int64_t> counts;
  int64_t total = 0;

  void add_range(const std::vector<float>& values) {
    for (float v : values) {
      if (!std::isfinite(v)) continue;
      min = std::min(min, v);
      max = std::max(max, v);
    }
  }
  void add_counts(const std::vector<float>& values) {
    if (counts.empty()) counts.assign(kHistogramBins, 0);
    const double width = (static_cast<double>(max) - min) / kHistogramBins;
    for (float v : values) {
      if (!std::isfinite(v)) continue;
      const int bin = width > 0 ? static_cast<int>((static_cast<double>(v) - min) / width) : 0;
      ++counts[static_cast<size_t>(std::clamp(bin, 0, kHistogramBins - 1))];
      ++total;
    }
  }
  // The value below which `share` of the counted values lie (a bin edge, rounded outwards).
  float quantile(double share, bool upper) const {
    const double width = (static_cast<double>(max) - min) / kHistogramBins;
    const double want = share * static_cast<double>(total);
    int64_t seen = 0;
    for (int b = 0; b < kHistogramBins; ++b) {
      seen += counts[static_cast<size_t>(b)];
      if (static_cast<double>(seen) >= want) return static_cast<float>(min + width * (upper ? b + 1 : b));
    }
    return max;
  }
  // The range [lo, hi], lo <= 0 <= hi, that minimises the expected squared error of 256 levels over
  // the counted values (each bin's values at its centre): step^2 / 12 inside, (value - bound)^2
  // outside. Bounds are searched on the bin edges (every `stride`-th, at most ~256 per side).
  TensorRange mse_range() const {
    const double width = (static_cast<double>(max) - min) / kHistogramBins;
    if (!(width > 0) || total == 0) return {std::min(min, 0.0f), std::max(max, 0.0f)};
    // Prefix sums over the bins of count, sum and sum of squares of the centres.
    std::vector<double> n(kHistogramBins + 1, 0.0), s(kHistogramBins + 1, 0.0), q(kHistogramBins + 1, 0.0);
    for (int b = 0; b < kHistogramBins; ++b) {
      const double c = min + width * (b + 0.5), k = static_cast<double>(counts[static_cast<size_t>(b)]);
      n[b + 1] = n[b] + k;
      s[b + 1] = s[b] + k * c;
      q[b + 1] = q[b] + k * c * c;
    }
    // Bins whose centre lies below `bound`.
    const auto below = [&](double bound) {
      return std::clamp(static_cast<int>(std::ceil((bound - min) / width - 0.5)), 0, kHistogramBins);
    };
    std::vector<double> los, his;
    const int stride = std::max(1, kHistogramBins / 256);
    for (int e = 0; e <= kHistogramBins; e += stride) {
      const double edge = min + width * e;
      if (edge <= 0) los.push_back(edge);
      if (edge >= 0) his.push_back(edge);
    }
    los.push_back(std::min(0.0, static_cast<double>(max)));
    his.push_back(std::max(0.0, static_cast<double>(min)));
    his.push_back(max);
    double best = std::numeric_limits<double>::infinity();
    TensorRange range{min, max};
    for (double lo : los) {
      const int i = below(lo);
      const double left = lo * lo * n[i] - 2 * lo * s[i] + q[i];
      for (double hi : his) {
        if (hi <= lo) continue;
        const int j = below(hi);  // bins j.. have centres above hi (up to the half bin at the edge)
        const double right = q[kHistogramBins] - q[j] - 2 * hi * (s[kHistogramBins] - s[j]) + hi * hi * (n[kHistogramBins] - n[j]);
        const double step = (hi - lo) / 255.0;
        const double error = left + right + (n[j] - n[i]) * step * step / 12.0;
        if (error < best) {
          best = error;
          range = {static_cast<float>(lo), static_cast<float>(hi)};
        }
      }
    }
    return range;
  }
};

}  // namespace

namespace {

// Adds to `probe`, for each weighted node, the mean per output channel of (W_int8 - W) * x: the
// node again with the rounding error as its weights and no bias, then ReduceMean over every axis
// but the channels'. Returns node key -> output name.
std::map<std::string, std::string> add_rounding_probes(onnx::ModelProto& probe, const QdqPlan& plan, int qmax) {
  onnx::GraphProto* graph = probe.mutable_graph();
  const qdq::GraphIndex index(probe.graph());
  const std::set<std::string> weighted(plan.weighted_nodes.begin(), plan.weighted_nodes.end());
  std::vector<onnx::NodeProto> added;
  std::vector<onnx::TensorProto> errors;
  std::map<std::string, std::string> outputs;
  for (const auto& node : probe.graph().node()) {
    const std::string key = qdq::node_key(node);
    if (!weighted.count(key) || node.op_type() == "MatMul") continue;  // MatMul has no bias to correct
    const std::optional<qdq::WeightedOp> op = qdq::weighted_op(index, node);
    if (!op) continue;
    const onnx::TensorProto& w = *index.initializer(node.input(op->weight_input));
    const std::vector<float> values = qdq::float_values(w);
    const std::vector<int64_t> dims(w.dims().begin(), w.dims().end());
    const qdq::PerChannelInt8 q = qdq::quantize_per_channel(values, dims, op->axis, qmax);
    std::vector<float> error(values.size());
    for (size_t i = 0; i < values.size(); ++i) error[i] = q.dequantized(i) - values[i];
    onnx::TensorProto t;
    t.set_name(key + "__weight_rounding");
    t.set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t.add_dims(d);
    t.set_raw_data(error.data(), error.size() * sizeof(float));
    errors.push_back(std::move(t));
    onnx::NodeProto rounded;
    rounded.set_op_type(node.op_type());
    rounded.set_name(key + "__rounding");
    rounded.add_input(node.input(0));
    rounded.add_input(key + "__weight_rounding");
    rounded.add_output(key + "__rounding_output");
    for (const auto& a : node.attribute()) *rounded.add_attribute() = a;
    onnx::NodeProto mean;
    mean.set_op_type("ReduceMean");
    mean.set_name(key + "__rounding_mean");
    mean.add_input(key + "__rounding_output");
    mean.add_output(key + "__shift");
    auto* axes = mean.add_attribute();
    axes->set_name("axes");
    axes->set_type(onnx::AttributeProto::INTS);
    axes->add_ints(0);  // Gemm: [N, O]; Conv: [N, O, spatial...]
    for (int64_t d = 2; node.op_type() == "Conv" && d < static_cast<int64_t>(dims.size()); ++d) axes->add_ints(d);
    auto* keep = mean.add_attribute();
    keep->set_name("keepdims");
    keep->set_type(onnx::AttributeProto::INT);
    keep->set_i(0);
    added.push_back(std::move(rounded));
    added.push_back(std::move(mean));
    outputs[key] = key + "__shift";
  }
  for (auto& t : errors) *graph->add_initializer() = std::move(t);
  for (auto& n : added) *graph->add_node() = std::move(n);
  for (const auto& [key, name] : outputs) {
    auto* value = graph->add_output();
    value->set_name(name);
    value->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  return outputs;
}

}  // namespace

QdqCalibration calibrate_qdq(const onnx::ModelProto& fp32, const QdqPlan& plan, const std::vector<std::string>& images,
                             const PreprocessSpec& spec, const QuantizeOptions& options) {
  if (images.empty()) throw Error(ErrorCode::InvalidArgument, "int8 quantisation: no calibration images");
  if (options.range == RangeMethod::percentile && !(options.percentile > 50 && options.percentile <= 100)) {
    throw Error(ErrorCode::InvalidArgument, "int8 quantisation: the percentile must be in (50, 100]");
  }
  // The float graph with each calibrated tensor as an output (the graph's input is read from the
  // batch itself: ONNX Runtime cannot return an input), and the weight-rounding probes.
  onnx::ModelProto probe = fp32;
  std::set<std::string> inputs, outputs;
  for (const auto& in : probe.graph().input()) inputs.insert(in.name());
  for (const auto& out : probe.graph().output()) outputs.insert(out.name());
  std::vector<std::string> requested;
  for (const std::string& t : plan.calibrated) {
    if (inputs.count(t)) continue;
    requested.push_back(t);
    if (outputs.count(t)) continue;
    auto* value = probe.mutable_graph()->add_output();
    value->set_name(t);
    value->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  const std::map<std::string, std::string> shifts =
      options.bias_correction ? add_rounding_probes(probe, plan, options.weight_bits == 7 ? 63 : 127)
                              : std::map<std::string, std::string>();
  std::vector<std::string> first_pass = requested;
  for (const auto& [key, name] : shifts) first_pass.push_back(name);
  probe.clear_metadata_props();
  inference::OrtSessionOptions session_options;
  session_options.threads = options.threads;
  const inference::OrtSession session = inference::OrtSession::from_bytes(serialize_onnx(probe), session_options);

  QdqCalibration result;
  std::map<std::string, Histogram> histograms;
  std::map<std::string, std::vector<double>> shift_sums;
  const size_t batch = static_cast<size_t>(std::max(1, options.batch));
  const int passes = options.range == RangeMethod::min_max ? 1 : 2;
  for (int pass = 0; pass < passes; ++pass) {
    for (size_t begin = 0; begin < images.size(); begin += batch) {
      const size_t end = std::min(images.size(), begin + batch);
      int64_t bad = 0;
      const Tensor x = load_batch(images, begin, end, spec, options.threads, bad);
      if (pass == 0) result.unreadable += bad, result.images += x.shape[0];
      if (x.shape[0] == 0) continue;
      std::map<std::string, Tensor> values = session.run(x, pass == 0 ? first_pass : requested);
      for (const std::string& t : plan.calibrated) {
        const std::vector<float>& v = inputs.count(t) ? x.data : values.at(t).data;
        if (pass == 0) histograms[t].add_range(v);
        else histograms[t].add_counts(v);
      }
      if (pass > 0) continue;
      for (const auto& [key, name] : shifts) {
        const std::vector<float>& mean = values.at(name).data;  // over this batch
        std::vector<double>& sum = shift_sums[key];
        sum.resize(mean.size(), 0.0);
        for (size_t c = 0; c < mean.size(); ++c) sum[c] += static_cast<double>(mean[c]) * static_cast<double>(x.shape[0]);
      }
    }
    if (result.images == 0) {
      throw Error(ErrorCode::InvalidArgument, "int8 quantisation: none of the " + std::to_string(images.size()) +
                                                  " calibration images could be read (e.g. " + images.front() + ")");
    }
  }
  for (auto& [key, sum] : shift_sums) {
    for (double& v : sum) v /= static_cast<double>(result.images);
    result.output_shift[key] = std::move(sum);
  }
  for (const std::string& t : plan.calibrated) {
    const Histogram& h = histograms.at(t);
    TensorRange r;
    if (h.min <= h.max) {
      r = {h.min, h.max};
      if (options.range == RangeMethod::percentile && h.total > 0) {
        const double tail = (100.0 - options.percentile) / 100.0;
        r = {h.quantile(tail, false), h.quantile(1.0 - tail, true)};
      } else if (options.range == RangeMethod::mse) {
        r = h.mse_range();
      }
    }
    result.ranges[t] = r;
  }
  return result;
}

}  // namespace loupe::exporter
