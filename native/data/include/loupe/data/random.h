// Seeded randomness that gives the same sequence with every standard library: mt19937_64's
// output is fixed by the C++ standard, but std::shuffle and the std:: distributions are not.
// Splits, balancing and the training order all use these.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace loupe::data {

// Uniform in [0, n), by rejection (no modulo bias). n > 0.
inline uint64_t uniform_index(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = rng(); while (v >= limit);
  return v % n;
}

// Fisher-Yates shuffle in place.
template <typename T>
void shuffle_in_place(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[uniform_index(rng, i)]);
}

}  // namespace loupe::data
