// The self-test a model carries (loupe/self_test.h): the synthetic images are the same bytes
// natively and as wasm (pinned digests, checked by both builds of this suite), the record
// round-trips exactly through the card's JSON, and the comparison fails where it must.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>

#include "loupe/error.h"
#include "loupe/model_card.h"
#include "loupe/self_test.h"

using namespace loupe;
using Catch::Matchers::Contains;

namespace {

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// A record as an export writes it, with made-up expectations (the core does not hash: the
// "sha256" here is only well-formed).
SelfTest sample_record() {
  SelfTest test;
  test.seed = 7;
  test.channels = 1;
  test.images = {{8, 6}, {5, 9}};
  test.outputs["logits"] = {{2, 3}, {0.5, -1.25, 3.0000001192092896, 0.1, 0.2, 0.3}};
  test.outputs["ood_distance"] = {{2}, {120.5, 3.25}};
  test.sha256 = std::string(64, 'a');
  return test;
}

std::map<std::string, Tensor> outputs_of(const SelfTest& test) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, expected] : test.outputs) {
    Tensor t;
    t.shape = expected.shape;
    for (double v : expected.values) t.data.push_back(static_cast<float>(v));
    out[name] = t;
  }
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("synthetic images: the same bytes on every platform for a seed", "[self-test]") {
  // Pinned: the wasm build of this suite must give the same digests as the native one.
  CHECK(fnv1a(synthetic_image(20261203, 0, 224, 224, 3).data) == 0xfe116d029736eafbull);
  CHECK(fnv1a(synthetic_image(20261203, 1, 283, 281, 1).data) == 0xe36aac74d2a0ff2aull);
  CHECK(fnv1a(synthetic_image(1, 3, 17, 5, 3).data) == 0xc574b97eff8d2862ull);
  const Image a = synthetic_image(5, 0, 40, 30, 3);
  CHECK(a.width == 40);
  CHECK(a.height == 30);
  CHECK(a.channels == 3);
  CHECK(a.data.size() == 40u * 30u * 3u);
  CHECK(synthetic_image(5, 1, 40, 30, 3).data != a.data);  // images of one test differ
  CHECK(synthetic_image(6, 0, 40, 30, 3).data != a.data);  // so do seeds
  // Not flat: a model sees structure (a gradient, a disc, noise), not a constant.
  const auto [lo, hi] = std::minmax_element(a.data.begin(), a.data.end());
  CHECK(*hi - *lo > 40);
  CHECK_THAT(error_of([] { synthetic_image(1, 0, 0, 10, 3); }), Contains("size or channels"));
  CHECK_THAT(error_of([] { synthetic_image(1, 0, 10, 10, 2); }), Contains("size or channels"));
}

TEST_CASE("self-test input: the synthetic images preprocessed as the card says", "[self-test]") {
  SelfTest test = sample_record();
  test.images = default_self_test_sizes(16, 12);
  REQUIRE(test.images.size() == 4);
  CHECK(test.images[0].width == 16);
  CHECK(test.images[0].height == 12);
  CHECK(test.images[1].width > 16);  // the others need resizing
  CHECK(test.images[2].width < 16);
  const PreprocessSpec spec = PreprocessSpec::unit_scale(16, ColorMode::Gray);
  const Tensor x = self_test_input(test, spec);
  REQUIRE(x.shape == std::vector<int64_t>{4, 1, spec.height, spec.width});
  const Tensor first = preprocess(synthetic_image(test.seed, 0, 16, 12, 1), spec);
  CHECK(std::equal(first.data.begin(), first.data.end(), x.data.begin()));
}

TEST_CASE("self-test record: exact round trip through the card's JSON", "[self-test]") {
  const SelfTest test = sample_record();
  const std::string text = nlohmann::json(test.to_json()).dump(2);
  const SelfTest back = SelfTest::from_json(nlohmann::json::parse(text));
  CHECK(self_test_digest_text(back) == self_test_digest_text(test));  // what the hash covers
  CHECK(back.outputs.at("logits").values[2] == test.outputs.at("logits").values[2]);
  CHECK(self_test_digest_text(test).find("sha256") == std::string::npos);
  // One changed expectation changes the hashed text.
  SelfTest changed = test;
  changed.outputs["logits"].values[0] += 1e-7;
  CHECK(self_test_digest_text(changed) != self_test_digest_text(test));
}

TEST_CASE("self-test check: within tolerance passes, beyond, NaN, missing or reshaped fails", "[self-test]") {
  const SelfTest test = sample_record();
  auto out = outputs_of(test);
  SelfTestResult r = check_self_test(test, out);
  CHECK(r.passed);
  CHECK(r.images == 2);
  CHECK(r.max_abs_diff < 1e-6);
  CHECK_THAT(r.summary(), Contains("passed") && Contains("2 synthetic images"));

  out["logits"].data[1] += 5e-4f;  // within the absolute 1e-3
  out["ood_distance"].data[0] += 0.1f;  // within 1e-3 * 120.5
  r = check_self_test(test, out);
  CHECK(r.passed);
  CHECK(r.max_abs_diff == Approx(0.1).epsilon(1e-3));  // largest relative to its bound
  CHECK(r.worst_output == "ood_distance");

  out["logits"].data[4] += 0.01f;
  r = check_self_test(test, out);
  CHECK_FALSE(r.passed);
  CHECK_THAT(r.problem, Contains("'logits'") && Contains("0.01"));
  CHECK_THAT(r.summary(), Contains("FAILED"));

  out = outputs_of(test);
  out["ood_distance"].data[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(check_self_test(test, out).passed);

  out = outputs_of(test);
  out.erase("ood_distance");
  CHECK_THAT(check_self_test(test, out).problem, Contains("no 'ood_distance' output"));

  out = outputs_of(test);
  out["logits"].shape = {3, 2};
  CHECK_THAT(check_self_test(test, out).problem, Contains("another shape"));
}

TEST_CASE("self-test record: bad entries name the key", "[self-test][bad-input]") {
  const nlohmann::json good = sample_record().to_json();
  const auto error_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    return error_of([&] { SelfTest::from_json(j); });
  };
  CHECK_THAT(error_with([](nlohmann::json& j) { j["generator"] = "other.v9"; }), Contains("self_test.generator"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["version"] = 2; }), Contains("newer"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["seed"] = -1; }), Contains("self_test.seed"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["channels"] = 2; }), Contains("self_test.channels"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["images"] = nlohmann::json::array(); }), Contains("self_test.images"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["images"][0]["width"] = 100000; }), Contains("images.width"));
  CHECK_THAT(error_with([](nlohmann::json& j) {  // 4 x 2048 x 2048 x ... : too much to generate in a tab
               j["images"] = nlohmann::json::array();
               for (int i = 0; i < 5; ++i) j["images"].push_back({{"width", 2048}, {"height", 2048}});
             }),
             Contains("pixels in all"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["outputs"]["logits"]["values"].erase(0); }),
             Contains("outputs.logits.values") && Contains("6 numbers"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["outputs"]["logits"]["shape"] = {3, 3}; }), Contains("not the 2 images"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["outputs"]["logits"]["values"][0] = "x"; }), Contains("finite numbers"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["tolerance"]["absolute"] = -1; }), Contains("tolerance.absolute"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j["sha256"] = "ABC"; }), Contains("self_test.sha256"));
  CHECK_THAT(error_with([](nlohmann::json& j) { j.erase("sha256"); }), Contains("self_test.sha256"));
}

TEST_CASE("model card: the self-test must fit the input and name the card's outputs", "[self-test][model-card]") {
  ModelCard card;
  card.architecture = "simple_cnn";
  card.model = {{"architecture", "simple_cnn"}, {"num_classes", 3}};
  card.class_names = {"a", "b", "c"};
  card.input_channels = 1;
  card.input_width = card.input_height = 32;
  card.preprocess = PreprocessSpec::unit_scale(32, ColorMode::Gray);
  card.outputs = {{"logits", {"batch", 3}, ""}, {"ood_distance", {"batch"}, ""}};
  card.self_test = sample_record();
  const ModelCard back = ModelCard::from_json(card.to_json());
  REQUIRE(back.self_test);
  CHECK(self_test_digest_text(*back.self_test) == self_test_digest_text(*card.self_test));

  ModelCard rgb = card;
  rgb.self_test->channels = 3;
  CHECK_THAT(error_of([&] { ModelCard::from_json(rgb.to_json()); }), Contains("self_test.channels"));
  ModelCard no_ood = card;
  no_ood.outputs.pop_back();
  CHECK_THAT(error_of([&] { ModelCard::from_json(no_ood.to_json()); }), Contains("'ood_distance' is not one of"));
  ModelCard old = card;
  old.self_test.reset();
  CHECK_FALSE(ModelCard::from_json(old.to_json()).self_test);  // cards written before it still read
}
