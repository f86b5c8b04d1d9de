#include "loupe/data/balance.h"

#include "loupe/data/random.h"

#include <algorithm>
#include <random>

namespace loupe::data {

const char* to_string(Balancing mode) {
  switch (mode) {
    case Balancing::None: return "none";
    case Balancing::Undersample: return "undersample";
    case Balancing::Oversample: return "oversample";
    case Balancing::ClassWeights: return "class_weights";
  }
  return "?";
}

Balancing parse_balancing(const std::string& text) {
  for (Balancing mode : {Balancing::None, Balancing::Undersample, Balancing::Oversample, Balancing::ClassWeights}) {
    if (text == to_string(mode)) return mode;
  }
  throw Error(ErrorCode::InvalidArgument,
              "balancing: unknown value '" + text + "'; expected none, undersample, oversample or class_weights");
}

BalancedTraining balance_training(const Dataset& dataset, const std::vector<size_t>& train, Balancing mode,
                                  uint64_t seed) {
  const size_t n_classes = dataset.classes.size();
  std::vector<std::vector<size_t>> by_class(n_classes);
  for (size_t i : train) by_class[static_cast<size_t>(dataset.samples[i].label)].push_back(i);
  BalancedTraining out;
  out.class_weights.assign(n_classes, 1.0);
  for (const auto& members : by_class) out.counts_before.push_back(static_cast<int64_t>(members.size()));
  for (size_t c = 0; c < n_classes; ++c) {
    if (by_class[c].empty()) {
      throw Error(ErrorCode::InvalidArgument, "balancing: class '" + dataset.classes[c] + "' has no training images");
    }
  }
  std::mt19937_64 rng(seed);
  switch (mode) {
    case Balancing::None:
    case Balancing::ClassWeights: out.indices = train; break;
    case Balancing::Undersample: {
      size_t smallest = SIZE_MAX;
      for (const auto& m : by_class) smallest = std::min(smallest, m.size());
      for (auto& members : by_class) {
        shuffle_in_place(members, rng);
        out.indices.insert(out.indices.end(), members.begin(), members.begin() + static_cast<std::ptrdiff_t>(smallest));
      }
      break;
    }
    case Balancing::Oversample: {
      size_t largest = 0;
      for (const auto& m : by_class) largest = std::max(largest, m.size());
      for (const auto& members : by_class) {
        out.indices.insert(out.indices.end(), members.begin(), members.end());
        for (size_t k = members.size(); k < largest; ++k) out.indices.push_back(members[uniform_index(rng, members.size())]);
      }
      break;
    }
  }
  if (mode == Balancing::ClassWeights) {
    for (size_t c = 0; c < n_classes; ++c) {
      out.class_weights[c] = double(train.size()) / (double(n_classes) * double(by_class[c].size()));
    }
  }
  std::sort(out.indices.begin(), out.indices.end());
  out.counts_after.assign(n_classes, 0);
  for (size_t i : out.indices) ++out.counts_after[static_cast<size_t>(dataset.samples[i].label)];
  return out;
}

nlohmann::json BalancedTraining::to_json(const Dataset& dataset, Balancing mode) const {
  return {{"mode", to_string(mode)}, {"classes", dataset.classes}, {"counts_before", counts_before},
          {"counts_after", counts_after}, {"class_weights", class_weights}};
}

}  // namespace loupe::data
