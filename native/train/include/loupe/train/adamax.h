// Adamax (Kingma & Ba 2015, section 7.1, Algorithm 2): Adam with the infinity norm. Seed 002
// trains with it; LibTorch 1.13 has no Adamax, so this follows PyTorch's torch.optim.Adamax:
//   m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
//   u_t = max(beta2 * u_{t-1}, |g_t| + eps)
//   theta_t = theta_{t-1} - lr / (1 - beta1^t) * m_t / u_t
// (with weight decay: g_t += weight_decay * theta_{t-1}). The paper's rule has no eps; the two
// agree whenever |g| >> eps, and the test checks both.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>

#include <tuple>
#include <type_traits>
#include <vector>

namespace loupe::train {

struct AdamaxOptions : public torch::optim::OptimizerCloneableOptions<AdamaxOptions> {
  AdamaxOptions(double lr = 2e-3) : lr_(lr) {}  // NOLINT: implicit like LibTorch's own options
  TORCH_ARG(double, lr) = 2e-3;
  typedef std::tuple<double, double> betas_t;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double value) override { lr(value); }
};

struct AdamaxParamState : public torch::optim::OptimizerCloneableParamState<AdamaxParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);
  TORCH_ARG(torch::Tensor, exp_inf);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

class Adamax : public torch::optim::Optimizer {
 public:
  explicit Adamax(std::vector<torch::Tensor> params, AdamaxOptions defaults = {});
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  using StateKey = std::decay_t<decltype(state_)>::key_type;  // std::string in LibTorch 1.13, void* in 2.x
};

}  // namespace loupe::train
