#include "loupe/train/optim.h"

#include <torch/torch.h>

#include <cmath>

#include "loupe/train/adamax.h"
#include "loupe/error.h"

namespace loupe::train {

namespace {

[[noreturn]] void bad_key(const std::string& section, const std::string& key, const std::string& problem) {
  throw Error(ErrorCode::InvalidArgument, section + "." + key + ": " + problem);
}

double number(const std::string& section, const std::string& key, const nlohmann::json& v, double lo, double hi) {
  if (!v.is_number()) bad_key(section, key, "expected a number, got " + v.dump());
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi)) bad_key(section, key, std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

std::string one_of(const std::string& section, const std::string& key, const nlohmann::json& v,
                   const std::vector<std::string>& allowed) {
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  if (!v.is_string()) bad_key(section, key, "expected one of " + list);
  const std::string s = v.get<std::string>();
  for (const auto& a : allowed) {
    if (s == a) return s;
  }
  bad_key(section, key, "unknown value '" + s + "'; expected one of " + list);
}

}  // namespace

// [SECTION] Optimizers

nlohmann::json OptimizerConfig::to_json() const {
  return {{"name", name}, {"lr", lr}, {"weight_decay", weight_decay}, {"momentum", momentum},
          {"nesterov", nesterov}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}, {"rho", rho}};
}

OptimizerConfig OptimizerConfig::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error(ErrorCode::InvalidArgument, "optimizer: expected an object");
  OptimizerConfig c;
  for (const auto& [key, v] : json.items()) {
    if (key == "name") c.name = one_of("optimizer", key, v, {"sgd", "adam", "adamw", "adamax", "rmsprop"});
    else if (key == "lr") c.lr = number("optimizer", key, v, 1e-12, 10);
    else if (key == "weight_decay") c.weight_decay = number("optimizer", key, v, 0, 1);
    else if (key == "momentum") c.momentum = number("optimizer", key, v, 0, 0.9999);
    else if (key == "nesterov") {
      if (!v.is_boolean()) bad_key("optimizer", key, "expected true or false");
      c.nesterov = v.get<bool>();
    } else if (key == "beta1") c.beta1 = number("optimizer", key, v, 0, 0.9999999);
    else if (key == "beta2") c.beta2 = number("optimizer", key, v, 0, 0.9999999);
    else if (key == "eps") c.eps = number("optimizer", key, v, 0, 1);
    else if (key == "rho") c.rho = number("optimizer", key, v, 0, 0.9999999);
    else bad_key("optimizer", key, "unknown key; expected name, lr, weight_decay, momentum, nesterov, beta1, beta2, eps, rho");
  }
  if (c.nesterov && (c.name != "sgd" || c.momentum <= 0)) {
    bad_key("optimizer", "nesterov", "needs the sgd optimizer with momentum > 0");
  }
  return c;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& c, std::vector<torch::Tensor> params) {
  namespace optim = torch::optim;
  if (c.name == "sgd") {
    return std::make_unique<optim::SGD>(
        params, optim::SGDOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weight_decay));
  }
  if (c.name == "adam") {
    return std::make_unique<optim::Adam>(
        params, optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
  }
  if (c.name == "adamw") {
    return std::make_unique<optim::AdamW>(
        params, optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
  }
  if (c.name == "adamax") {
    return std::make_unique<Adamax>(
        params, AdamaxOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
  }
  if (c.name == "rmsprop") {
    // The papers trained with Keras, whose RMSprop decays the squared-gradient average with
    // rho = 0.9 (PyTorch's default alpha is 0.99); `rho` sets it. No momentum, as in both.
    return std::make_unique<optim::RMSprop>(
        params, optim::RMSpropOptions(c.lr).alpha(c.rho).eps(c.eps).weight_decay(c.weight_decay));
  }
  throw Error(ErrorCode::InvalidArgument, "optimizer.name: unknown optimizer '" + c.name + "'");
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

double learning_rate(const torch::optim::Optimizer& optimizer) {
  return optimizer.param_groups().at(0).options().get_lr();
}

// [SECTION] Schedules

nlohmann::json ScheduleConfig::to_json() const {
  return {{"kind", kind}, {"step_size", step_size}, {"gamma", gamma}, {"factor", factor},
          {"patience", patience}, {"min_lr", min_lr}};
}

ScheduleConfig ScheduleConfig::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error(ErrorCode::InvalidArgument, "schedule: expected an object");
  ScheduleConfig c;
  for (const auto& [key, v] : json.items()) {
    if (key == "kind") c.kind = one_of("schedule", key, v, {"none", "step", "cosine", "plateau"});
    else if (key == "step_size") c.step_size = static_cast<int>(number("schedule", key, v, 1, 10000));
    else if (key == "gamma") c.gamma = number("schedule", key, v, 1e-6, 1);
    else if (key == "factor") c.factor = number("schedule", key, v, 1e-6, 1);
    else if (key == "patience") c.patience = static_cast<int>(number("schedule", key, v, 0, 10000));
    else if (key == "min_lr") c.min_lr = number("schedule", key, v, 0, 10);
    else bad_key("schedule", key, "unknown key; expected kind, step_size, gamma, factor, patience, min_lr");
  }
  return c;
}

LrSchedule::LrSchedule(ScheduleConfig config, double base_lr, int total_epochs)
    : config_(std::move(config)), base_lr_(base_lr), total_epochs_(std::max(1, total_epochs)), plateau_lr_(base_lr) {}

double LrSchedule::lr_for_epoch(int epoch) const {
  if (config_.kind == "step") return base_lr_ * std::pow(config_.gamma, epoch / config_.step_size);
  if (config_.kind == "cosine") {
    const double progress = double(epoch) / double(total_epochs_);
    return config_.min_lr + 0.5 * (base_lr_ - config_.min_lr) * (1.0 + std::cos(M_PI * progress));
  }
  if (config_.kind == "plateau") return plateau_lr_;
  return base_lr_;
}

void LrSchedule::observe(double val_loss) {
  if (config_.kind != "plateau") return;
  if (!has_best_ || val_loss < best_) {
    best_ = val_loss;
    has_best_ = true;
    bad_epochs_ = 0;
    return;
  }
  if (++bad_epochs_ > config_.patience - 1) {  // Keras: reduce after `patience` epochs without improvement
    plateau_lr_ = std::max(config_.min_lr, plateau_lr_ * config_.factor);
    bad_epochs_ = 0;
  }
}

nlohmann::json LrSchedule::state() const {
  return {{"plateau_lr", plateau_lr_}, {"best", best_}, {"has_best", has_best_}, {"bad_epochs", bad_epochs_}};
}

void LrSchedule::restore(const nlohmann::json& s) {
  plateau_lr_ = s.at("plateau_lr").get<double>();
  best_ = s.at("best").get<double>();
  has_best_ = s.at("has_best").get<bool>();
  bad_epochs_ = s.at("bad_epochs").get<int>();
}

// [SECTION] Early stopping

nlohmann::json EarlyStoppingConfig::to_json() const {
  return {{"patience", patience}, {"min_delta", min_delta}, {"monitor", monitor}, {"restore_best", restore_best}};
}

EarlyStoppingConfig EarlyStoppingConfig::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error(ErrorCode::InvalidArgument, "early_stopping: expected an object");
  EarlyStoppingConfig c;
  for (const auto& [key, v] : json.items()) {
    if (key == "patience") c.patience = static_cast<int>(number("early_stopping", key, v, 0, 10000));
    else if (key == "min_delta") c.min_delta = number("early_stopping", key, v, 0, 1e6);
    else if (key == "monitor") c.monitor = one_of("early_stopping", key, v, {"val_loss", "val_accuracy", "val_balanced_accuracy"});
    else if (key == "restore_best") {
      if (!v.is_boolean()) bad_key("early_stopping", key, "expected true or false");
      c.restore_best = v.get<bool>();
    } else {
      bad_key("early_stopping", key, "unknown key; expected patience, min_delta, monitor, restore_best");
    }
  }
  return c;
}

}  // namespace loupe::train
