// Training-time augmentation on decoded images (before the shared preprocessing), seeded so a
// run can be repeated exactly. Applied to the training split only.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>

#include "loupe/image.h"

namespace loupe::data {

struct AugmentSpec {
  double horizontal_flip = 0.0;   // probability
  double vertical_flip = 0.0;     // probability
  double rotation_degrees = 0.0;  // uniform in [-r, r]
  double shift_fraction = 0.0;    // translation up to this fraction of width/height
  double scale_min = 1.0, scale_max = 1.0;  // zoom factor range
  // Random resized crop (torchvision's RandomResizedCrop area range); 0 disables.
  double crop_area_min = 0.0, crop_area_max = 1.0;
  double brightness = 0.0;        // add uniform [-b, b] on the [0, 1] scale
  double contrast = 0.0;          // multiply around the mean by uniform [1 - c, 1 + c]

  bool enabled() const;
  nlohmann::json to_json() const;
  static AugmentSpec from_json(const nlohmann::json& json);  // strict; the error names the key
};

// Returns an augmented copy with the same size, channels and depth. `rng` is owned by the caller
// (one per loader worker, seeded from the run seed, epoch and sample index).
Image augment(const Image& image, const AugmentSpec& spec, std::mt19937_64& rng);

}  // namespace loupe::data
