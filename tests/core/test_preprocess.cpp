// Preprocessing: hand-computed tensors for each step, and the spec's JSON contract.
#include <catch2/catch.hpp>
#include <cstring>

#include "loupe/preprocess.h"
#include "test_support.h"

using namespace loupe;
using Catch::Matchers::Contains;

namespace {

Image gray_image(int width, int height, std::vector<uint8_t> values) {
  Image img;
  img.width = width;
  img.height = height;
  img.channels = 1;
  img.data = std::move(values);
  return img;
}

Image solid_rgb(int width, int height, uint8_t r, uint8_t g, uint8_t b) {
  Image img;
  img.width = width;
  img.height = height;
  img.channels = 3;
  for (int i = 0; i < width * height; ++i) img.data.insert(img.data.end(), {r, g, b});
  return img;
}

std::string spec_error(const nlohmann::json& json) {
  try {
    PreprocessSpec::from_json(json);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::InvalidSpec);
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("x / 255 on a gray image, no resize", "[preprocess]") {
  PreprocessSpec spec = PreprocessSpec::unit_scale(2, ColorMode::Gray);
  const Tensor t = preprocess(gray_image(2, 2, {0, 255, 51, 102}), spec);
  REQUIRE(t.shape == std::vector<int64_t>{1, 1, 2, 2});
  CHECK(t.data == std::vector<float>{0.0f, 1.0f, 0.2f, 0.4f});
}

TEST_CASE("ImageNet mean/std per channel, NCHW planes", "[preprocess]") {
  const Tensor t = preprocess(solid_rgb(4, 4, 255, 0, 51), PreprocessSpec::imagenet(4));
  REQUIRE(t.shape == std::vector<int64_t>{1, 3, 4, 4});
  CHECK(t.data[0] == Approx((1.0 - 0.485) / 0.229));
  CHECK(t.data[16] == Approx((0.0 - 0.456) / 0.224));
  CHECK(t.data[32] == Approx((0.2 - 0.406) / 0.225));
  CHECK(t.data[47] == t.data[32]);
}

TEST_CASE("gray -> RGB replicates, RGB -> gray uses BT.601 weights, alpha is dropped", "[preprocess]") {
  const Tensor rgb = preprocess(gray_image(2, 1, {10, 200}), PreprocessSpec::unit_scale(2, ColorMode::Rgb));
  // unit_scale(2) is 2x2; the 2x1 source is stretched vertically (rows repeat).
  REQUIRE(rgb.shape == std::vector<int64_t>{1, 3, 2, 2});
  for (int c = 1; c < 3; ++c) {
    for (int i = 0; i < 4; ++i) CHECK(rgb.data[c * 4 + i] == rgb.data[i]);
  }

  PreprocessSpec gray = PreprocessSpec::unit_scale(1, ColorMode::Gray);
  const Tensor red = preprocess(solid_rgb(1, 1, 255, 0, 0), gray);
  CHECK(red.data[0] == Approx(76.0 / 255.0));  // round(0.299 * 255)

  Image rgba = solid_rgb(2, 2, 0, 255, 0);
  rgba.channels = 4;
  rgba.data.clear();
  for (int i = 0; i < 4; ++i) rgba.data.insert(rgba.data.end(), {0, 255, 0, 7});
  const Tensor no_alpha = preprocess(rgba, PreprocessSpec::unit_scale(2));
  CHECK(no_alpha.data[0] == 0.0f);
  CHECK(no_alpha.data[4] == 1.0f);
  CHECK(no_alpha.data[8] == 0.0f);
}

TEST_CASE("16-bit samples scale by 65535", "[preprocess]") {
  Image img;
  img.width = 2;
  img.height = 1;
  img.channels = 1;
  img.depth = PixelDepth::U16;
  const uint16_t values[2] = {65535, 32768};
  img.data.resize(4);
  std::memcpy(img.data.data(), values, 4);
  PreprocessSpec spec = PreprocessSpec::unit_scale(1, ColorMode::Gray);
  spec.width = 2;
  const Tensor t = preprocess(img, spec);
  CHECK(t.data[0] == 1.0f);
  CHECK(t.data[1] == Approx(32768.0 / 65535.0));
}

TEST_CASE("resize policies place the image where expected", "[preprocess]") {
  // 4x2 source: columns 0..3 have values 0, 50, 100, 150.
  const Image src = gray_image(4, 2, {0, 50, 100, 150, 0, 50, 100, 150});
  PreprocessSpec spec = PreprocessSpec::unit_scale(2, ColorMode::Gray);
  spec.interpolation = Interpolation::Nearest;

  SECTION("shorter side then centre crop keeps the middle columns") {
    spec.resize = ResizePolicy::ShorterSideCenterCrop;  // scale 1: 4x2 stays, crop x = 1..2
    const Tensor t = preprocess(src, spec);
    CHECK(t.data == std::vector<float>{50 / 255.f, 100 / 255.f, 50 / 255.f, 100 / 255.f});
  }
  SECTION("crop fraction 0.5 enlarges before cropping") {
    spec.resize = ResizePolicy::ShorterSideCenterCrop;
    spec.crop_fraction = 0.5;  // shorter side 2 -> 4: 8x4, crop x = 3..4, y = 1..2
    const Tensor t = preprocess(src, spec);
    CHECK(t.data == std::vector<float>{50 / 255.f, 100 / 255.f, 50 / 255.f, 100 / 255.f});
  }
  SECTION("letterbox pads top and bottom") {
    spec.resize = ResizePolicy::Letterbox;
    spec.width = spec.height = 4;  // 4x2 fits at scale 1, rows 1..2
    spec.pad_value = 1.0;
    const Tensor t = preprocess(src, spec);
    for (int x = 0; x < 4; ++x) {
      CHECK(t.data[x] == 1.0f);
      CHECK(t.data[12 + x] == 1.0f);
      CHECK(t.data[4 + x] == (50.f * x) / 255.f);
    }
  }
  SECTION("stretch ignores the aspect ratio") {
    spec.resize = ResizePolicy::Stretch;
    const Tensor t = preprocess(src, spec);
    REQUIRE(t.data.size() == 4);
    CHECK(t.data[0] == 0.0f);
  }
}

TEST_CASE("every interpolation produces the target shape from a real-sized image", "[preprocess]") {
  const Image img = loupe::test::make_pattern(300, 200, 3);
  for (auto interp : {Interpolation::Nearest, Interpolation::Linear, Interpolation::Area, Interpolation::Cubic}) {
    for (auto policy : {ResizePolicy::Stretch, ResizePolicy::ShorterSideCenterCrop, ResizePolicy::Letterbox}) {
      PreprocessSpec spec = PreprocessSpec::imagenet(64);
      spec.interpolation = interp;
      spec.resize = policy;
      const Tensor t = preprocess(img, spec);
      CHECK(t.element_count() == 3 * 64 * 64);
      for (float v : t.data) REQUIRE(std::isfinite(v));
    }
  }
}

TEST_CASE("PreprocessSpec JSON round-trip", "[preprocess][json]") {
  PreprocessSpec spec = PreprocessSpec::imagenet(160);
  spec.height = 128;
  spec.resize = ResizePolicy::Letterbox;
  spec.interpolation = Interpolation::Area;
  spec.pad_value = 0.5;
  const nlohmann::json json = spec.to_json();
  CHECK(json["resize"] == "letterbox");
  CHECK(PreprocessSpec::from_json(json) == spec);
  CHECK(PreprocessSpec::from_json(nlohmann::json::parse(json.dump())) == spec);
  CHECK(PreprocessSpec::from_json({{"size", 64}, {"color", "gray"}}).width == 64);
}

TEST_CASE("spec validation errors name the bad key", "[preprocess][json][bad-input]") {
  CHECK_THAT(spec_error({{"colour", "rgb"}}), Contains("preprocess.colour") && Contains("unknown key"));
  CHECK_THAT(spec_error({{"resize", "crop"}}), Contains("preprocess.resize") && Contains("'crop'"));
  CHECK_THAT(spec_error({{"width", -3}}), Contains("preprocess.width"));
  CHECK_THAT(spec_error({{"width", "224"}}), Contains("preprocess.width") && Contains("integer"));
  CHECK_THAT(spec_error({{"mean", {0.5, 0.5}}}), Contains("preprocess.mean") && Contains("2 values"));
  CHECK_THAT(spec_error({{"std", 0}}), Contains("preprocess.std") && Contains("> 0"));
  CHECK_THAT(spec_error({{"crop_fraction", 1.5}}), Contains("preprocess.crop_fraction"));
  CHECK_THAT(spec_error({{"interpolation", 3}}), Contains("preprocess.interpolation"));
  CHECK_THAT(spec_error(nlohmann::json::array()), Contains("expected a JSON object"));
}

TEST_CASE("preprocess rejects inconsistent images", "[preprocess][bad-input]") {
  Image broken = gray_image(4, 4, {1, 2, 3});
  CHECK_THROWS_AS(preprocess(broken, PreprocessSpec::unit_scale(4)), Error);
  CHECK_THROWS_AS(preprocess(Image{}, PreprocessSpec::unit_scale(4)), Error);
  PreprocessSpec bad = PreprocessSpec::unit_scale(4);
  bad.width = 0;
  CHECK_THROWS_AS(preprocess(gray_image(2, 2, {1, 2, 3, 4}), bad), Error);
}
