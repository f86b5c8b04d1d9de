// Class balancing of the training split (never validation or test): seeds 001/002 balance by
// random under- or oversampling; class-weighted loss is the modern alternative.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/data/dataset.h"

namespace loupe::data {

enum class Balancing { None, Undersample, Oversample, ClassWeights };
const char* to_string(Balancing mode);
Balancing parse_balancing(const std::string& text);  // "none", "undersample", "oversample", "class_weights"

struct BalancedTraining {
  std::vector<size_t> indices;        // training sample indices after balancing (oversampling repeats some)
  std::vector<double> class_weights;  // loss weights per class (all 1 unless ClassWeights)
  std::vector<int64_t> counts_before, counts_after;
  nlohmann::json to_json(const Dataset& dataset, Balancing mode) const;
};

// Undersample: every class cut to the smallest class's count (random subset, seeded).
// Oversample: every class filled to the largest class's count (random repeats, seeded).
// ClassWeights: indices unchanged; weight_c = n_train / (n_classes * count_c) (scikit-learn's "balanced").
BalancedTraining balance_training(const Dataset& dataset, const std::vector<size_t>& train, Balancing mode,
                                  uint64_t seed);

}  // namespace loupe::data
