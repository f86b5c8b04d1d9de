// Numeric precision and memory layout of a training run: mixed precision (autocast) with a
// dynamic loss scale for float16, and channels-last (NHWC) tensors for convolutions.
//
// The parameters always stay float32 ("master weights"): autocast runs the matmuls and
// convolutions of the forward pass in the lower precision and everything numerically sensitive
// (losses, softmax, normalisation statistics) in float32, as PyTorch's torch.autocast does. Float16
// gradients can underflow, so the loss is multiplied by a scale before backward and the gradients
// divided by it before the optimizer step; steps whose gradients overflowed are skipped and the
// scale halved (the published dynamic loss scaling of torch.cuda.amp.GradScaler). bfloat16 has
// float32's exponent range and needs no scale.
//
// Resolved per device (config keys "precision" and "channels_last", both "auto" by default):
//   CUDA: float16 autocast + loss scaling, channels-last (what tensor cores are fastest with);
//   CPU:  float32, contiguous NCHW (bfloat16 autocast is available on request: it only pays on
//         CPUs with native bf16 instructions).
// Works with LibTorch 1.13 (Debian) and 2.x (the autocast API changed in 2.4; see precision.cpp).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace loupe::train {

enum class Precision { Float32, BFloat16, Float16 };

// "auto" | "fp32" | "bf16" | "fp16" (as written in configs); throws naming the value otherwise.
Precision parse_precision(const std::string& text, bool* is_auto = nullptr);
std::string to_string(Precision precision);

struct DevicePolicy {
  torch::Device device = torch::kCPU;
  Precision precision = Precision::Float32;
  bool channels_last = false;
  bool loss_scaling() const { return precision == Precision::Float16; }
  std::string describe() const;  // "cuda, fp16 autocast with loss scaling, channels-last"
};

// Resolves the config's "precision" ("auto", "fp32", "bf16", "fp16") and "channels_last"
// ("auto", true, false) for a device. Throws loupe::Error naming the key for a combination the
// device cannot run (float16 autocast on CPU).
DevicePolicy resolve_device_policy(const torch::Device& device, const std::string& precision,
                                   const nlohmann::json& channels_last);

// Process-wide settings for the policy's device: on CUDA, cuDNN's autotuner picks the fastest
// convolution algorithms for the (fixed) input shapes, as torch.backends.cudnn.benchmark does.
void configure_backend(const DevicePolicy& policy);

// Enables autocast for the policy's device and dtype for its lifetime (no-op for float32) and
// restores the previous state after, like `with torch.autocast(...)`. Wrap forward passes only.
class AutocastScope {
 public:
  explicit AutocastScope(const DevicePolicy& policy);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  torch::DeviceType device_type_ = torch::kCPU;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Converts the module's 4-D parameters and buffers (convolution weights) to channels-last in
// place, keeping their identity (optimizers created before or after see the same tensors).
void to_channels_last(torch::nn::Module& module);
// The layout a batch should have for the policy (a no-op view for contiguous NCHW).
torch::Tensor batch_layout(const torch::Tensor& images, const DevicePolicy& policy);

// Dynamic loss scaling, with torch.cuda.amp.GradScaler's defaults and rules: the scale starts at
// 2^16, halves (and the step is skipped) when any gradient is inf/NaN, doubles after
// `growth_interval` consecutive finite steps.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, double initial_scale = 65536.0, double growth_factor = 2.0,
                      double backoff_factor = 0.5, int growth_interval = 2000);
  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  // loss * scale (the loss itself when disabled).
  torch::Tensor scale_loss(const torch::Tensor& loss) const;
  // Divides every gradient by the scale; true when all of them are finite (the step may proceed).
  // On CUDA one fused kernel does it (torch.cuda.amp's); elsewhere a per-gradient loop.
  bool unscale_and_check(const std::vector<torch::Tensor>& parameters) const;
  // Updates the scale after a step (or a skipped one). Returns true when the step was taken.
  bool update(bool finite);
  int skipped_steps() const { return skipped_; }

  nlohmann::json state() const;  // stored in checkpoints so a resumed run continues identically
  void restore(const nlohmann::json& state);

 private:
  bool enabled_;
  double scale_, growth_factor_, backoff_factor_;
  int growth_interval_;
  int growth_tracker_ = 0;
  int skipped_ = 0;
};

}  // namespace loupe::train
