#include "loupe/train/precision.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>

#include "loupe/error.h"

// LibTorch 2.4 replaced the per-device autocast functions (set_enabled for CUDA, set_cpu_enabled,
// set_autocast_gpu_dtype, ...) by ones taking the device type, and deprecated the old ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define LOUPE_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace loupe::train {

namespace {

bool autocast_enabled(torch::DeviceType type) {
#ifdef LOUPE_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(torch::DeviceType type, bool enabled) {
#ifdef LOUPE_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == torch::kCUDA) at::autocast::set_enabled(enabled);
  else at::autocast::set_cpu_enabled(enabled);
#endif
}

at::ScalarType autocast_dtype(torch::DeviceType type) {
#ifdef LOUPE_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(torch::DeviceType type, at::ScalarType dtype) {
#ifdef LOUPE_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == torch::kCUDA) at::autocast::set_autocast_gpu_dtype(dtype);
  else at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

[[noreturn]] void bad_key(const std::string& key, const std::string& why) {
  throw Error(ErrorCode::InvalidArgument, key + ": " + why);
}

}  // namespace

Precision parse_precision(const std::string& text, bool* is_auto) {
  if (is_auto) *is_auto = text == "auto";
  if (text == "auto" || text == "fp32") return Precision::Float32;
  if (text == "bf16") return Precision::BFloat16;
  if (text == "fp16") return Precision::Float16;
  bad_key("precision", "'" + text + "': expected auto, fp32, bf16 or fp16");
}

std::string to_string(Precision precision) {
  switch (precision) {
    case Precision::BFloat16: return "bf16";
    case Precision::Float16: return "fp16";
    default: return "fp32";
  }
}

std::string DevicePolicy::describe() const {
  std::string text = device.str() + ", ";
  if (precision == Precision::Float32) text += "fp32";
  else text += to_string(precision) + " autocast" + (loss_scaling() ? " with loss scaling" : "");
  return text + (channels_last ? ", channels-last" : "");
}

DevicePolicy resolve_device_policy(const torch::Device& device, const std::string& precision,
                                   const nlohmann::json& channels_last) {
  DevicePolicy policy;
  policy.device = device;
  bool is_auto = false;
  policy.precision = parse_precision(precision, &is_auto);
  const bool cuda = device.is_cuda();
  if (is_auto) policy.precision = cuda ? Precision::Float16 : Precision::Float32;
  if (!cuda && policy.precision == Precision::Float16) {
    bad_key("precision", "fp16 needs a CUDA device (CPU autocast computes in bf16 only); use bf16 or fp32 on " +
                             device.str());
  }
  if (channels_last.is_string() && channels_last.get<std::string>() == "auto") policy.channels_last = cuda;
  else if (channels_last.is_boolean()) policy.channels_last = channels_last.get<bool>();
  else bad_key("channels_last", "expected true, false or \"auto\", got " + channels_last.dump());
  return policy;
}

void configure_backend(const DevicePolicy& policy) {
  if (policy.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
}

AutocastScope::AutocastScope(const DevicePolicy& policy) {
  if (policy.precision == Precision::Float32) return;
  active_ = true;
  device_type_ = policy.device.type();
  was_enabled_ = autocast_enabled(device_type_);
  previous_dtype_ = autocast_dtype(device_type_);
  set_autocast_dtype(device_type_, policy.precision == Precision::BFloat16 ? at::kBFloat16 : at::kHalf);
  set_autocast_enabled(device_type_, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // Casts of the float32 weights are cached inside the outermost region; drop them on leaving it.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_type_, was_enabled_);
  set_autocast_dtype(device_type_, previous_dtype_);
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  const auto convert = [](torch::Tensor& t) {
    if (t.defined() && t.dim() == 4) t.set_data(t.data().contiguous(at::MemoryFormat::ChannelsLast));
  };
  for (auto& p : module.parameters()) convert(p);
  for (auto& b : module.buffers()) convert(b);
}

torch::Tensor batch_layout(const torch::Tensor& images, const DevicePolicy& policy) {
  return policy.channels_last && images.dim() == 4 ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
}

LossScaler::LossScaler(bool enabled, double initial_scale, double growth_factor, double backoff_factor,
                       int growth_interval)
    : enabled_(enabled), scale_(enabled ? initial_scale : 1.0), growth_factor_(growth_factor),
      backoff_factor_(backoff_factor), growth_interval_(growth_interval) {}

torch::Tensor LossScaler::scale_loss(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool LossScaler::unscale_and_check(const std::vector<torch::Tensor>& parameters) const {
  if (!enabled_) return true;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> gradients;
  for (const auto& p : parameters) {
    if (p.grad().defined()) gradients.push_back(p.grad());
  }
  if (gradients.empty()) return true;
  const bool fused = std::all_of(gradients.begin(), gradients.end(), [&](const torch::Tensor& g) {
    return g.is_cuda() && g.device() == gradients.front().device() && g.scalar_type() == torch::kFloat32;
  });
  if (fused) {
    // GradScaler's own kernel: one launch unscales every gradient and flags any inf/NaN.
    const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(gradients.front().device());
    torch::Tensor found_inf = torch::zeros({1}, options);
    at::_amp_foreach_non_finite_check_and_unscale_(gradients, found_inf, torch::full({1}, 1.0 / scale_, options));
    return found_inf.item<float>() == 0.0f;
  }
  std::vector<torch::Tensor> finite;  // one flag per gradient, read back with a single sync
  for (auto& g : gradients) {
    g.mul_(1.0 / scale_);
    finite.push_back(torch::isfinite(g).all());
  }
  return torch::stack(finite).all().item<bool>();
}

bool LossScaler::update(bool finite) {
  if (!enabled_) return true;
  if (!finite) {
    scale_ *= backoff_factor_;
    growth_tracker_ = 0;
    ++skipped_;
    return false;
  }
  if (++growth_tracker_ >= growth_interval_) {
    const double grown = scale_ * growth_factor_;
    if (std::isfinite(static_cast<float>(grown))) scale_ = grown;  // the loss (float32) is multiplied by it
    growth_tracker_ = 0;
  }
  return true;
}

nlohmann::json LossScaler::state() const {
  return {{"enabled", enabled_}, {"scale", scale_}, {"growth_tracker", growth_tracker_}, {"skipped", skipped_}};
}

void LossScaler::restore(const nlohmann::json& state) {
  if (!state.is_object() || !enabled_ || !state.value("enabled", false)) return;
  scale_ = state.at("scale").get<double>();
  growth_tracker_ = state.at("growth_tracker").get<int>();
  skipped_ = state.at("skipped").get<int>();
}

}  // namespace loupe::train
