// Heat maps: CAM normalisation, the inverse of preprocess()'s geometry, and the overlay.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "loupe/error.h"
#include "loupe/heatmap.h"
#include "loupe/preprocess.h"

namespace {

loupe::PreprocessSpec spec_of(loupe::ResizePolicy resize, int width, int height) {
  loupe::PreprocessSpec spec;
  spec.resize = resize;
  spec.width = width;
  spec.height = height;
  return spec;
}

}  // namespace

TEST_CASE("class_activation_map normalises to 0..1 and rejects bad maps", "[heatmap]") {
  const std::vector<float> cam = {-2.0f, 0.0f, 2.0f, 6.0f};
  const loupe::HeatMap map = loupe::class_activation_map(cam.data(), 2, 2);
  CHECK(map.values == std::vector<float>{0.0f, 0.25f, 0.5f, 1.0f});
  const std::vector<float> flat(9, 3.0f);
  CHECK(loupe::class_activation_map(flat.data(), 3, 3).values == std::vector<float>(9, 0.0f));
  const std::vector<float> nan = {0.0f, NAN};
  CHECK_THROWS_AS(loupe::class_activation_map(nan.data(), 1, 2), loupe::Error);
  CHECK_THROWS_AS(loupe::class_activation_map(cam.data(), 0, 2), loupe::Error);
}

TEST_CASE("input_frame inverts each resize policy", "[heatmap]") {
  // Stretch: 400x200 -> 100x100.
  loupe::InputFrame f = loupe::input_frame(spec_of(loupe::ResizePolicy::Stretch, 100, 100), 400, 200);
  CHECK(f.scale_x == Approx(0.25));
  CHECK(f.scale_y == Approx(0.5));
  CHECK(f.offset_x == 0);
  // Centre crop: 400x200 -> scaled to 200x100, 50 px cut off left and right.
  f = loupe::input_frame(spec_of(loupe::ResizePolicy::ShorterSideCenterCrop, 100, 100), 400, 200);
  CHECK(f.scale_x == Approx(0.5));
  CHECK(f.scale_y == Approx(0.5));
  CHECK(f.offset_x == -50);
  CHECK(f.offset_y == 0);
  // Letterbox: 400x200 -> 100x50, centred with 25 px bands above and below.
  f = loupe::input_frame(spec_of(loupe::ResizePolicy::Letterbox, 100, 100), 400, 200);
  CHECK(f.scale_x == Approx(0.25));
  CHECK(f.scale_y == Approx(0.25));
  CHECK(f.offset_y == 25);
}

TEST_CASE("heat_map_overlay puts the hot cell where the model saw it", "[heatmap]") {
  // A 2x2 CAM, hot at the top right.
  const std::vector<float> cam = {0.0f, 1.0f, 0.0f, 0.0f};
  const loupe::HeatMap map = loupe::class_activation_map(cam.data(), 2, 2);
  const auto pixel = [](const std::vector<uint8_t>& rgba, int width, int x, int y) {
    return &rgba[(static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) * 4];
  };
  SECTION("stretch covers the whole image") {
    const std::vector<uint8_t> rgba = loupe::heat_map_overlay(map, spec_of(loupe::ResizePolicy::Stretch, 64, 64), 200, 100, 40, 20);
    REQUIRE(rgba.size() == 40u * 20u * 4u);
    const uint8_t* hot = pixel(rgba, 40, 39, 0);
    const uint8_t* cold = pixel(rgba, 40, 0, 19);
    CHECK(hot[0] == 255);  // red
    CHECK(hot[2] == 0);
    CHECK(hot[3] == 255);
    CHECK(cold[2] == 255);  // blue, mostly see-through
    CHECK(cold[3] < 64);
  }
  SECTION("a centre crop leaves the cut-off margins transparent") {
    const std::vector<uint8_t> rgba =
        loupe::heat_map_overlay(map, spec_of(loupe::ResizePolicy::ShorterSideCenterCrop, 64, 64), 200, 100, 40, 20);
    CHECK(pixel(rgba, 40, 2, 10)[3] == 0);   // left margin: cropped away
    CHECK(pixel(rgba, 40, 37, 10)[3] == 0);  // right margin
    CHECK(pixel(rgba, 40, 29, 1)[0] == 255); // inside the crop, top right: hot
  }
  SECTION("letterbox padding is outside the image, so the whole image is covered") {
    const std::vector<uint8_t> rgba = loupe::heat_map_overlay(map, spec_of(loupe::ResizePolicy::Letterbox, 64, 64), 200, 100, 40, 20);
    for (int y = 0; y < 20; ++y) {
      for (int x = 0; x < 40; ++x) REQUIRE(pixel(rgba, 40, x, y)[3] > 0);
    }
  }
  CHECK_THROWS_AS(loupe::heat_map_overlay(map, spec_of(loupe::ResizePolicy::Stretch, 64, 64), 0, 10, 4, 4), loupe::Error);
}
