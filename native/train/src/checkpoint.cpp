// Checkpoints and model files (checkpoint.h).
#include "loupe/train/checkpoint.h"

#include <torch/serialize.h>

#include "loupe/error.h"
#include "loupe/train/atomic_file.h"

namespace loupe::train {

namespace {

void save_archive_atomic(torch::serialize::OutputArchive& archive, const std::string& path) {
  write_file_atomic(path, [&](const Sink& sink) { archive.save_to(sink); });
}

// Checkpoints record the device their tensors were on; they are loaded onto the model's device
// instead, so a run trained on a GPU can be resumed, evaluated or exported on a CPU-only machine.
torch::Device device_of(models::Classifier& model) {
  const auto parameters = model.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

}  // namespace

void save_checkpoint(const std::string& path, models::Classifier& model, torch::optim::Optimizer& optimizer,
                     const TrainerState& state) {
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("trainer_state", torch::IValue(state.to_json().dump()));
  save_archive_atomic(archive, path);
}

TrainerState load_checkpoint(const std::string& path, models::Classifier& model, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive, model_archive, optimizer_archive;
  try {
    archive.load_from(path, device_of(model));
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    model.load(model_archive);
    optimizer.load(optimizer_archive);
    torch::IValue state;
    archive.read("trainer_state", state);
    return TrainerState::from_json(nlohmann::json::parse(state.toStringRef()));
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::Io, path + ": cannot resume from this checkpoint: " + e.what_without_backtrace());
  }
}

void save_model_file(models::Classifier& model, const std::string& path) {
  torch::serialize::OutputArchive archive;
  model.save(archive);
  save_archive_atomic(archive, path);
}

void load_model_file(models::Classifier& model, const std::string& path) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device_of(model));
    torch::serialize::InputArchive model_archive;
    if (archive.try_read("model", model_archive)) model.load(model_archive);  // a checkpoint
    else model.load(archive);                                                  // a plain model file
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::Io, path + ": cannot load weights: " + e.what_without_backtrace());
  }
}

}  // namespace loupe::train
