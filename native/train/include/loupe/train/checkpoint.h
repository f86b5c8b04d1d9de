// Checkpoints and model files of a run (RUN/checkpoints/last.pt, best.pt), written atomically
// (atomic_file.h): a crash or a full disk leaves the previous file intact, so --resume always
// finds a whole checkpoint. Tensors load onto the model's device, whatever device saved them.
#pragma once

#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/models/zoo.h"
#include "loupe/train/trainer.h"

namespace loupe::train {

// What a resumed run needs besides the weights and the optimizer.
struct TrainerState {
  int epochs_done = 0;
  std::vector<EpochRecord> history;
  nlohmann::json schedule;
  int best_epoch = 0;
  double best_value = 0;
  int epochs_without_improvement = 0;
  nlohmann::json loss_scaler;  // LossScaler::state(); null without loss scaling
  nlohmann::json to_json() const {
    nlohmann::json h = nlohmann::json::array();
    for (const auto& r : history) h.push_back(r.to_json());
    return {{"epochs_done", epochs_done}, {"history", h}, {"schedule", schedule}, {"best_epoch", best_epoch},
            {"best_value", best_value}, {"epochs_without_improvement", epochs_without_improvement},
            {"loss_scaler", loss_scaler}};
  }
  static TrainerState from_json(const nlohmann::json& j) {
    TrainerState s;
    s.epochs_done = j.at("epochs_done").get<int>();
    for (const auto& r : j.at("history")) s.history.push_back(EpochRecord::from_json(r));
    s.schedule = j.at("schedule");
    s.best_epoch = j.at("best_epoch").get<int>();
    s.best_value = j.at("best_value").get<double>();
    s.epochs_without_improvement = j.at("epochs_without_improvement").get<int>();
    s.loss_scaler = j.value("loss_scaler", nlohmann::json());  // absent in checkpoints before mixed precision
    return s;
  }
};

// last.pt: model + optimizer + trainer state.
void save_checkpoint(const std::string& path, models::Classifier& model, torch::optim::Optimizer& optimizer,
                     const TrainerState& state);
// Throws Error(Io) naming the file when it cannot be resumed from.
TrainerState load_checkpoint(const std::string& path, models::Classifier& model, torch::optim::Optimizer& optimizer);

}  // namespace loupe::train
