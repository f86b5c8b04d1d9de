// The per-image report: a picture with the image, its heat map, the probabilities and the statement.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "loupe/error.h"
#include "loupe/image_report.h"

namespace {

loupe::Image gray16(int width, int height) {
  loupe::Image image;
  image.width = width;
  image.height = height;
  image.channels = 1;
  image.depth = loupe::PixelDepth::U16;
  image.data.resize(static_cast<size_t>(width) * height * 2);
  auto* samples = reinterpret_cast<uint16_t*>(image.data.data());
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) samples[y * width + x] = static_cast<uint16_t>(1000 + 10 * x);  // a ramp
  }
  return image;
}

const uint8_t* pixel(const loupe::Image& image, int x, int y) {
  return &image.data[(static_cast<size_t>(y) * image.width + x) * 3];
}

loupe::ImageReport basic_report() {
  loupe::ImageReport report;
  report.file_name = "chest/Pneumonia/a.png";
  report.created_utc = "2026-11-24T06:00:00Z";
  report.model_name = "test model";
  report.class_names = {"Covid-19", "No_findings", "Pneumonia"};
  report.probabilities = {0.1f, 0.2f, 0.7f};
  return report;
}

}  // namespace

TEST_CASE("render_image_report draws the image, its heat map and the warnings", "[report]") {
  const loupe::Image image = gray16(200, 200);
  const loupe::Image plain = loupe::render_image_report(image, basic_report());
  REQUIRE(plain.width == 1400);
  REQUIRE(plain.height == 820);
  REQUIRE(plain.channels == 3);
  // The 16-bit ramp is shown through its own range: dark on the left, bright on the right.
  CHECK(pixel(plain, 20, 400)[0] < 30);
  CHECK(pixel(plain, 780, 400)[0] > 225);
  CHECK(pixel(plain, 400, 400)[0] == pixel(plain, 400, 400)[2]);  // gray

  loupe::ImageReport with_heat = basic_report();
  const std::vector<float> cam = {0.0f, 0.0f, 0.0f, 1.0f};  // hot at the bottom right
  with_heat.heat_map = loupe::class_activation_map(cam.data(), 2, 2);
  with_heat.preprocess.width = with_heat.preprocess.height = 64;
  with_heat.heat_map_opacity = 0.8f;
  const loupe::Image heat = loupe::render_image_report(image, with_heat);
  const uint8_t* hot = pixel(heat, 700, 700);
  CHECK(hot[0] > hot[2] + 60);  // red dominates where the map is hot
  CHECK(pixel(heat, 100, 100)[2] > pixel(heat, 100, 100)[0]);  // blue where it is cold

  // The right-hand panel differs when an out-of-distribution warning is drawn.
  loupe::ImageReport ood = basic_report();
  ood.ood_status = "this image does not look like the training data";
  ood.out_of_distribution = true;
  const loupe::Image warned = loupe::render_image_report(image, ood);
  CHECK(warned.data != plain.data);

  // A class chosen by an operating point (not the largest probability) is drawn as the output,
  // with how it was chosen.
  loupe::ImageReport decided = basic_report();
  decided.predicted = 1;
  const loupe::Image by_rule = loupe::render_image_report(image, decided);
  CHECK(by_rule.data != plain.data);
  decided.decision_note = "operating points (site calibration): No_findings when p >= 0.15";
  CHECK(loupe::render_image_report(image, decided).data != by_rule.data);
  decided.predicted = 7;  // out of range: the largest probability, as without
  CHECK(loupe::render_image_report(image, decided).data != by_rule.data);

  CHECK_THROWS_AS(loupe::render_image_report(loupe::Image{}, basic_report()), loupe::Error);
}

TEST_CASE("the report's words come from its labels, English by default", "[report]") {
  const loupe::ImageReportLabels english;
  CHECK(english.title == "Loupe image report");
  CHECK(loupe::report_ood_status(english, false, 31.24, 48.0) ==
        "within the range of the training data (distance 31.2, threshold 48.0)");
  CHECK(loupe::report_ood_status(english, true, 91.0, 79.25) ==
        "this image does not look like the model's training data; its output is not reliable (distance 91.0, threshold 79.2)");
  CHECK(loupe::report_probability_note(english, 0.0, "") == "not calibrated (softmax of the logits)");
  CHECK(loupe::report_probability_note(english, 1.1634, "the validation split") ==
        "calibrated by temperature scaling (T = 1.16), fitted on the validation split");

  // Other words (a translation) draw a different page; the same words, the same page.
  const loupe::Image image = gray16(120, 90);
  loupe::ImageReport report = basic_report();
  report.disclaimer = "Not a diagnostic device.";
  const loupe::Image in_english = loupe::render_image_report(image, report);
  CHECK(loupe::render_image_report(image, report).data == in_english.data);
  report.labels.title = "Laporan citra Loupe";
  report.labels.model_output = "Keluaran model";
  report.labels.not_diagnostic = "Loupe bukan alat diagnostik. Tidak untuk keputusan klinis.";
  const loupe::Image translated = loupe::render_image_report(image, report);
  CHECK(translated.width == in_english.width);
  CHECK(translated.data != in_english.data);
  // The image half is the same: only the words on the right differ.
  CHECK(pixel(translated, 400, 400)[0] == pixel(in_english, 400, 400)[0]);
}
