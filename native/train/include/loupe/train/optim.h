// Optimizers, learning-rate schedules and early stopping, configured from JSON (run configs and
// grids) with errors that name the bad key.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace loupe::train {

struct OptimizerConfig {
  std::string name = "adam";  // sgd, adam, adamw, adamax, rmsprop
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.9;      // sgd
  bool nesterov = false;      // sgd
  double beta1 = 0.9, beta2 = 0.999;  // adam, adamw, adamax
  double eps = 1e-8;
  double rho = 0.9;           // rmsprop: squared-gradient decay (Keras' default)

  nlohmann::json to_json() const;
  static OptimizerConfig from_json(const nlohmann::json& json);
};

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& config,
                                                        std::vector<torch::Tensor> parameters);
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);
double learning_rate(const torch::optim::Optimizer& optimizer);

// Per-epoch learning-rate schedule. "plateau" follows Keras/PyTorch ReduceLROnPlateau on the
// validation loss (seed 002: patience 1).
struct ScheduleConfig {
  std::string kind = "none";  // none, step, cosine, plateau
  int step_size = 10;         // step: epochs between decays
  double gamma = 0.1;         // step: decay factor
  double factor = 0.1;        // plateau: decay factor
  int patience = 1;           // plateau: epochs without improvement before decaying
  double min_lr = 0.0;        // cosine floor, plateau floor

  nlohmann::json to_json() const;
  static ScheduleConfig from_json(const nlohmann::json& json);
};

class LrSchedule {
 public:
  LrSchedule(ScheduleConfig config, double base_lr, int total_epochs);
  // Learning rate for `epoch` (0-based), given the schedule's state after the previous epochs.
  double lr_for_epoch(int epoch) const;
  // Feed the epoch's validation loss (plateau); call once per finished epoch.
  void observe(double val_loss);
  nlohmann::json state() const;         // for checkpoints (resume continues the same schedule)
  void restore(const nlohmann::json& state);

 private:
  ScheduleConfig config_;
  double base_lr_;
  int total_epochs_;
  double plateau_lr_;
  double best_ = 0;
  bool has_best_ = false;
  int bad_epochs_ = 0;
};

// Stops when the monitored validation metric has not improved by min_delta for `patience`
// epochs; the trainer then restores the best weights if restore_best.
struct EarlyStoppingConfig {
  int patience = 0;             // 0 disables
  double min_delta = 0.0;
  std::string monitor = "val_loss";  // val_loss (lower is better) or val_accuracy, val_balanced_accuracy
  bool restore_best = true;

  bool higher_is_better() const { return monitor != "val_loss"; }
  nlohmann::json to_json() const;
  static EarlyStoppingConfig from_json(const nlohmann::json& json);
};

}  // namespace loupe::train
