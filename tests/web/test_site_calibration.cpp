// "Calibrate for this site" in the page (web/site_calibration.h), natively with the stand-in
// browser: the refusals (a batch running, no labels, too few images of a class with the counts),
// a fit that changes the temperature computed once per set of predictions (not per frame), an
// operating point re-chosen on change, the downloaded model read back (the record, the same
// weights hash) and opened again: calibrated for this site.
#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "app_logic.h"
#include "fake_host.h"
#include "i18n.h"
#include "loupe/onnx_model.h"
#include "site_calibration.h"
#include "state_json.h"
#include "test_support.h"

using namespace loupe_web;
using Catch::Matchers::Contains;
using loupe_web::test::shipped_chest_model;
using loupe_web::test::TestApp;

namespace {

// SHA-256 (hex) of the weights as the page hashes them: the raw data of every initializer, in order.
std::string weights_sha256(const std::vector<uint8_t>& file) {
  const loupe::OnnxModelInfo info = loupe::read_onnx_model(file.data(), file.size(), "model.onnx");
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  EVP_DigestInit_ex(context, EVP_sha256(), nullptr);
  for (const loupe::ByteRange& range : info.weight_ranges) EVP_DigestUpdate(context, file.data() + range.offset, range.size);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context, digest, &length);
  EVP_MD_CTX_free(context);
  static const char* hex = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < length; ++i) text += {hex[digest[i] >> 4], hex[digest[i] & 15]};
  return text;
}

// A gray PNG of one brightness.
std::vector<uint8_t> flat_png(uint8_t value) {
  loupe::Image image;
  image.width = 24;
  image.height = 20;
  image.channels = 1;
  image.data.assign(24 * 20, value);
  return loupe::test::encode(image, ".png");
}

// A stand-in for the chest model, overconfident: dark images are Covid-19, middle ones No_findings,
// bright ones Pneumonia, each with a wide margin (so the images put in the wrong folder below make
// the refit temperature larger than 1).
std::vector<float> overconfident_by_brightness(const std::vector<float>& input) {
  double sum = 0;
  for (const float v : input) sum += v;
  const double m = input.empty() ? 0 : sum / static_cast<double>(input.size());
  return {static_cast<float>(-8 * m), static_cast<float>(4 - 8 * std::abs(m)), static_cast<float>(8 * m)};
}

constexpr uint8_t kDark = 30, kMiddle = 128, kBright = 220;

// `per_class` images in each class's folder, of the brightness the model calls that class, and
// `wrong` more in each folder of another class's brightness.
void add_labelled_folder(TestApp& t, int covid, int no_findings, int pneumonia, int wrong) {
  int n = 0;
  const auto add = [&](const char* folder, uint8_t value, int count) {
    for (int i = 0; i < count; ++i) t.add_file(std::string("site/") + folder + "/" + std::to_string(n++) + ".png", flat_png(value));
  };
  add("Covid-19", kDark, covid);
  add("No_findings", kMiddle, no_findings);
  add("Pneumonia", kBright, pneumonia);
  add("Covid-19", kBright, wrong);
  add("No_findings", kDark, wrong);
  add("Pneumonia", kMiddle, wrong);
}

void open_view(TestApp& t) {
  UiActions open;
  open.site_calibration.show = true;
  apply(t.app, open);
  refresh_views(t.app);
}

}  // namespace

TEST_CASE("site calibration: refused while the batch runs, without labels, and with too few images of a class", "[web][calibration]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest-xray-mobilenet_v2.onnx");
  REQUIRE(t.app.model.status == ModelStatus::ready);
  add_labelled_folder(t, 4, 12, 12, 0);
  open_view(t);
  CHECK(t.app.site.open);
  CHECK_FALSE(t.app.site.result);
  CHECK(t.app.site.refusal_key == "calib.refused_running");

  t.settle(overconfident_by_brightness);
  refresh_views(t.app);
  REQUIRE_FALSE(t.app.site.result);
  // The core's message, naming the class short of images and every class's count.
  CHECK_THAT(t.app.site.refusal, Contains("at least 10 labelled images of every class"));
  CHECK_THAT(t.app.site.refusal, Contains("too few: Covid-19 4"));
  CHECK_THAT(t.app.site.refusal, Contains("No_findings 12, Pneumonia 12"));
  const nlohmann::json state = state_json(t.app, false);
  CHECK(state["siteCalibration"]["available"] == false);
  CHECK_THAT(state["siteCalibration"]["refusal"].get<std::string>(), Contains("Covid-19 4"));
  CHECK(t.app.site.fits == 0);

  TestApp unlabelled;
  unlabelled.open_model(shipped_chest_model(), "chest-xray-mobilenet_v2.onnx");
  for (int i = 0; i < 3; ++i) unlabelled.add_file("loose/" + std::to_string(i) + ".png", flat_png(kDark));
  unlabelled.settle(overconfident_by_brightness);
  open_view(unlabelled);
  CHECK(unlabelled.app.site.refusal_key == "calib.refused_no_labels");
  CHECK(state_json(unlabelled.app, false)["siteCalibration"]["refusal"] ==
        Catalogue::of(Language::en).text("calib.refused_no_labels"));
}

TEST_CASE("site calibration: the refit, an operating point, the download read back and opened", "[web][calibration]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest-xray-mobilenet_v2.onnx");
  REQUIRE(t.app.model.status == ModelStatus::ready);
  const loupe::ModelCard original = t.app.model.info.card;
  REQUIRE(std::string(original.calibration_in_use()) == "export");
  add_labelled_folder(t, 12, 12, 12, 3);
  t.settle(overconfident_by_brightness);
  refresh_views(t.app);
  CHECK(t.app.site.fits == 0);  // nothing is computed until the view opens
  open_view(t);
  REQUIRE(t.app.site.result);
  const loupe::SiteCalibrationResult& result = *t.app.site.result;
  CHECK(result.images == 45);
  CHECK(result.class_counts == std::vector<int64_t>{15, 15, 15});
  CHECK(std::string(result.replaced) == "export");
  CHECK(result.temperature_applied);
  // Overconfident logits with 9 images in the wrong folder: a temperature well above the export's.
  CHECK(result.comparison.before.temperature == Approx(original.temperature_in_use()));
  CHECK(result.comparison.after.temperature > 1.5 * result.comparison.before.temperature);
  CHECK(result.comparison.after.nll < result.comparison.before.nll);
  CHECK(result.comparison.after.nll_interval.low <= result.comparison.after.nll);
  CHECK(result.comparison.nll_change.high < 0);  // the refit is better on these images, interval and all
  CHECK(result.record["created_utc"] == "2026-12-03T12:00:00.000Z");  // the page's clock
  CHECK(t.app.site.fits == 1);

  // Frames, a new sort or reopening the view: no refit.
  for (int frame = 0; frame < 5; ++frame) refresh_views(t.app);
  UiActions sort;
  sort.sort = std::make_pair(Column::confidence, false);
  apply(t.app, sort);
  refresh_views(t.app);
  open_view(t);
  CHECK(t.app.site.fits == 1);

  // An operating point: Pneumonia at sensitivity 0.9, chosen at once on the same images.
  UiActions target;
  target.site_calibration.target_class = 2;
  target.site_calibration.target = {true, loupe::TargetKind::sensitivity, 0.9};
  apply(t.app, target);
  refresh_views(t.app);
  CHECK(t.app.site.fits == 1);
  REQUIRE(t.app.site.result->operating_points.size() == 1);
  const loupe::OperatingPoint point = t.app.site.result->operating_points[0];
  CHECK(point.class_name == "Pneumonia");
  CHECK(point.positives == 15);
  CHECK(point.negatives == 30);
  CHECK(point.sensitivity >= 0.9);
  CHECK(point.sensitivity_interval.low <= point.sensitivity);
  CHECK(t.app.site.result->record["operating_points"].size() == 1);
  const nlohmann::json state = state_json(t.app, false)["siteCalibration"];
  CHECK(state["available"] == true);
  CHECK(state["operatingPoints"][0]["threshold"] == point.threshold);
  CHECK(state["shown"]["eceAfter"] == loupe::with_interval(t.app.site.result->comparison.after.ece,
                                                           t.app.site.result->comparison.after.ece_interval, 4));
  // An out-of-range value is clamped to the target's range, not refused mid-frame.
  target.site_calibration.target = {true, loupe::TargetKind::specificity, 7.0};
  target.site_calibration.target_class = 0;
  apply(t.app, target);
  CHECK(t.app.site.targets[0].value == 1.0);
  CHECK(t.app.site.result->operating_points.size() == 2);
  target.site_calibration.target = {false, loupe::TargetKind::specificity, 1.0};
  apply(t.app, target);
  CHECK(t.app.site.result->operating_points.size() == 1);

  UiActions download;
  download.site_calibration.download = true;
  apply(t.app, download);
  REQUIRE(t.host.downloads.size() == 1);
  CHECK(t.host.downloads[0].file_name == "chest-xray-mobilenet_v2.site.onnx");
  CHECK(t.host.downloads[0].mime_type == "application/octet-stream");
  CHECK(t.app.site.downloaded == "chest-xray-mobilenet_v2.site.onnx");
  const std::vector<uint8_t> calibrated(t.host.downloads[0].text.begin(), t.host.downloads[0].text.end());
  const loupe::OnnxModelInfo info = loupe::read_onnx_model(calibrated.data(), calibrated.size(), "chest-xray-mobilenet_v2.site.onnx");
  REQUIRE(info.card.site_calibration);
  CHECK(info.card.site_calibration->images == 45);
  CHECK(info.card.site_calibration->temperature == Approx(result.comparison.after.temperature));
  REQUIRE(info.card.site_calibration->operating_points.size() == 1);
  CHECK(info.card.site_calibration->operating_points[0].class_name == "Pneumonia");
  CHECK(info.card.site_calibration->operating_points[0].threshold == Approx(point.threshold));
  CHECK(info.card_json["site_calibration"]["class_counts"] == nlohmann::json{15, 15, 15});
  CHECK(info.card_json["site_calibration"]["before"]["calibration"] == "export");
  REQUIRE(info.card.calibration);  // the export's calibration kept beside it
  CHECK(info.card.calibration->temperature == original.calibration->temperature);
  // The weights, so their hash, byte for byte.
  CHECK(weights_sha256(calibrated) == weights_sha256(shipped_chest_model()));
  CHECK(weights_sha256(calibrated) == original.weights_sha256);

  // Opened in the page: it passes its self-test, its weights match, and it is calibrated for this site.
  t.open_model(calibrated, "chest-xray-mobilenet_v2.site.onnx");
  REQUIRE(t.app.model.status == ModelStatus::ready);
  CHECK(t.app.model.file == "chest-xray-mobilenet_v2.site.onnx");
  CHECK(t.app.model.has_self_test);
  CHECK(t.app.model.self_test.passed);
  CHECK(std::string(t.app.model.info.card.calibration_in_use()) == "site");
  CHECK_THAT(probability_note_text(t.app.model.info.card, Language::en),
             Contains("calibrated for this site by temperature scaling") && Contains("fitted on 45 labelled images") &&
                 Contains("the export's calibration"));
  CHECK_THAT(decision_note_text(t.app.model.info.card, Language::en), Contains("Pneumonia when p >= "));
  CHECK(decision_note_text(original, Language::en).empty());
  t.settle(overconfident_by_brightness);
  refresh_views(t.app);
  const nlohmann::json model = state_json(t.app, false)["model"];
  CHECK(model["calibrationInUse"] == "site");
  CHECK_THAT(model["probabilityNoteShown"].get<std::string>(), Contains("calibrated for this site"));
  // The predictions use the site's temperature and the operating point (loupe/prediction.h).
  const double threshold = info.card.site_calibration->operating_points[0].threshold;
  int called_by_point = 0;
  for (const ImageEntry& entry : t.app.images) {
    const Prediction& p = entry.prediction;
    REQUIRE(p.status == PredictionStatus::done);
    REQUIRE(p.at_operating_point.size() == 3);
    const std::vector<float> expected = loupe::calibrated_probabilities(p.logits.data(), p.logits.size(),
                                                                        info.card.site_calibration->temperature);
    CHECK(p.probabilities[2] == Approx(expected[2]));
    CHECK(static_cast<bool>(p.at_operating_point[2]) == (p.probabilities[2] >= threshold));
    if (p.at_operating_point[2] && p.top == 2) ++called_by_point;
  }
  CHECK(called_by_point >= 15);
  // The view now starts from the site calibration: a refit replaces it.
  refresh_views(t.app);
  REQUIRE(t.app.site.result);
  CHECK(std::string(t.app.site.result->replaced) == "site");
  CHECK(site_calibrated_file_name("chest-xray-mobilenet_v2.site.onnx") == "chest-xray-mobilenet_v2.site.site.onnx");
  CHECK(site_calibrated_file_name("My Model.ONNX") == "My Model.site.onnx");
}
