// A model's predictions on a set of samples, and their report (trainer.h).
#include <torch/torch.h>

#include "loupe/train/loader.h"
#include "loupe/train/precision.h"
#include "loupe/train/trainer.h"

namespace loupe::train {

Predictions predict(models::Classifier& model, const data::Dataset& dataset, const std::vector<size_t>& samples,
                    const PreprocessSpec& spec, const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  model.eval();
  LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.workers = options.workers;
  BatchLoader loader(dataset, samples, spec, loader_options);
  Predictions out;
  double loss_sum = 0;
  while (auto batch = loader.next()) {
    out.errors.insert(out.errors.end(), batch->errors.begin(), batch->errors.end());
    if (batch->samples.empty()) continue;
    torch::Tensor logits;
    {
      AutocastScope autocast(options.policy);
      logits = model.forward(batch_layout(batch->images.to(options.policy.device), options.policy));
    }
    logits = logits.to(torch::kCPU, torch::kFloat64);
    const torch::Tensor log_probs = torch::log_softmax(logits, 1);
    const torch::Tensor losses = -log_probs.gather(1, batch->labels.unsqueeze(1)).squeeze(1).contiguous();
    loss_sum += losses.sum().item<double>();
    out.losses.insert(out.losses.end(), losses.data_ptr<double>(), losses.data_ptr<double>() + losses.numel());
    const torch::Tensor probs = log_probs.exp().contiguous();
    const int64_t classes = probs.size(1);
    const double* p = probs.data_ptr<double>();
    for (size_t i = 0; i < batch->samples.size(); ++i) {
      out.samples.push_back(batch->samples[i]);
      out.labels.push_back(static_cast<int>(batch->labels[static_cast<int64_t>(i)].item<int64_t>()));
      out.probabilities.emplace_back(p + static_cast<int64_t>(i) * classes, p + (static_cast<int64_t>(i) + 1) * classes);
    }
  }
  out.mean_loss = out.samples.empty() ? 0.0 : loss_sum / double(out.samples.size());
  return out;
}

nlohmann::json evaluation_json(const Predictions& predictions, const std::vector<std::string>& classes) {
  ClassificationReport report = classification_report(classes, predictions.probabilities, predictions.labels);
  if (!predictions.labels.empty()) report.intervals = report_intervals(classes, predictions.probabilities, predictions.labels);
  ConfusionMatrix cm(classes);
  for (size_t i = 0; i < predictions.labels.size(); ++i) cm.add(predictions.labels[i], argmax(predictions.probabilities[i]));
  nlohmann::json j = report.to_json();
  j["log_loss"] = predictions.mean_loss;
  j["confusion_matrix"] = cm.to_json();
  j["report_text"] = report.to_text();
  j["unreadable"] = predictions.errors;
  return j;
}

}  // namespace loupe::train
