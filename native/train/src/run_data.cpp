// The data set exactly as a run sees it (trainer.h: load_run_dataset).
#include <algorithm>

#include "loupe/train/loader.h"
#include "loupe/error.h"
#include "loupe/train/trainer.h"

namespace loupe::train {

namespace {

// Keeps only the listed classes, relabelled in the listed order.
void keep_classes(data::Dataset& ds, const std::vector<std::string>& keep) {
  if (keep.empty()) return;
  std::vector<int> new_label(ds.classes.size(), -1);
  for (size_t k = 0; k < keep.size(); ++k) {
    const auto it = std::find(ds.classes.begin(), ds.classes.end(), keep[k]);
    if (it == ds.classes.end()) {
      std::string known;
      for (const auto& c : ds.classes) known += (known.empty() ? "" : ", ") + c;
      throw Error(ErrorCode::InvalidArgument, "data.include_classes: '" + keep[k] + "' is not a class of " + ds.origin +
                                                  " (" + known + ")");
    }
    new_label[static_cast<size_t>(it - ds.classes.begin())] = static_cast<int>(k);
  }
  std::vector<data::Sample> kept;
  for (auto s : ds.samples) {
    if (new_label[static_cast<size_t>(s.label)] < 0) continue;
    s.label = new_label[static_cast<size_t>(s.label)];
    kept.push_back(s);
  }
  ds.samples = std::move(kept);
  ds.classes = keep;
}

// Keeps at most n images per class (seeded choice), for smoke runs on real data.
void limit_per_class(data::Dataset& ds, int n, uint64_t seed) {
  if (n <= 0) return;
  std::vector<std::vector<size_t>> by_class(ds.classes.size());
  for (size_t i = 0; i < ds.samples.size(); ++i) by_class[static_cast<size_t>(ds.samples[i].label)].push_back(i);
  std::vector<data::Sample> kept;
  for (auto& members : by_class) {
    const auto order = shuffled_order(members, seed, -1);
    for (size_t k = 0; k < order.size() && k < static_cast<size_t>(n); ++k) kept.push_back(ds.samples[order[k]]);
  }
  std::sort(kept.begin(), kept.end(), [](const data::Sample& a, const data::Sample& b) { return a.path < b.path; });
  ds.samples = std::move(kept);
}

}  // namespace

data::Dataset load_run_dataset(const TrainConfig& config) {
  data::LoadOptions load_options;
  load_options.npz_class_names = config.class_names;
  load_options.group_column = config.split.group.manifest_column;
  data::Dataset dataset = data::load_dataset(config.data_path, load_options);
  keep_classes(dataset, config.include_classes);
  limit_per_class(dataset, config.max_per_class, config.seed);
  return dataset;
}

}  // namespace loupe::train
