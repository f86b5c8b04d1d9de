// The page's languages (web/i18n.h) and settings (web/ui_settings.h), natively: the catalogues
// hold every text the page uses and nothing else, in both languages, with the same placeholders,
// medical wording marked for review, every character in the font's glyph ranges and the report's
// words in ASCII; the browser's language picks the page's; the text size setting; the PNG report in
// the page's language.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "app_logic.h"
#include "fake_host.h"
#include "fonts.h"
#include "i18n.h"
#include "loupe/error.h"
#include "loupe/image_report.h"
#include "state_json.h"
#include "test_support.h"
#include "ui_settings.h"

using namespace loupe_web;

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::set<std::string> keys_of(const Catalogue& catalogue) {
  std::set<std::string> keys;
  for (const auto& [key, entry] : catalogue.entries()) keys.insert(key);
  return keys;
}

std::set<std::string> placeholders(const std::string& text) {
  std::set<std::string> names;
  static const std::regex placeholder(R"(\{([a-z_]+)\})");
  for (std::sregex_iterator it(text.begin(), text.end(), placeholder), end; it != end; ++it) names.insert((*it)[1]);
  return names;
}

// The page's sources: where catalogue keys are used.
std::vector<std::filesystem::path> page_sources() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(LOUPE_WEB_SOURCE_DIR)) {
    const std::string extension = entry.path().extension().string();
    if (extension == ".cpp" || extension == ".h" || extension == ".html" || extension == ".mjs" || extension == ".js") {
      files.push_back(entry.path());
    }
  }
  return files;
}

// UTF-8 to code points (the catalogues are valid UTF-8: nlohmann::json checked it).
std::vector<char32_t> code_points(const std::string& text) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const int length = byte < 0x80 ? 1 : byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4;
    char32_t c = length == 1 ? byte : byte & (0x3F >> (length - 1));
    for (int k = 1; k < length && i + static_cast<size_t>(k) < text.size(); ++k) {
      c = (c << 6) | (static_cast<unsigned char>(text[i + static_cast<size_t>(k)]) & 0x3F);
    }
    out.push_back(c);
    i += static_cast<size_t>(length);
  }
  return out;
}

bool in_font(char32_t c) {
  for (size_t i = 0; kUiGlyphRanges[i] != 0; i += 2) {
    if (c >= kUiGlyphRanges[i] && c <= kUiGlyphRanges[i + 1]) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("both catalogues have the same keys, placeholders and review marks", "[web][i18n]") {
  const Catalogue& en = Catalogue::of(Language::en);
  const Catalogue& id = Catalogue::of(Language::id);
  CHECK(en.entries().size() > 150);
  std::vector<std::string> missing_in_id, missing_in_en;
  for (const std::string& key : keys_of(en)) {
    if (!id.entries().count(key)) missing_in_id.push_back(key);
  }
  for (const std::string& key : keys_of(id)) {
    if (!en.entries().count(key)) missing_in_en.push_back(key);
  }
  CHECK(missing_in_id == std::vector<std::string>{});
  CHECK(missing_in_en == std::vector<std::string>{});

  int medical = 0;
  for (const auto& [key, english] : en.entries()) {
    const auto translated = id.entries().find(key);
    if (translated == id.entries().end()) continue;
    CAPTURE(key, english.text, translated->second.text);
    CHECK(!english.text.empty());
    CHECK(!translated->second.text.empty());
    CHECK(placeholders(english.text) == placeholders(translated->second.text));
    // Wording about diagnosis, out-of-distribution and calibration: the translation says who
    // should check it.
    if (english.medical) {
      ++medical;
      CHECK(!translated->second.review.empty());
    }
  }
  CHECK(medical >= 20);
  for (const char* key : {"footer.not_diagnostic", "badge.not_diagnostic", "report.not_diagnostic", "viewer.ood_warning",
                          "status.ood", "report.ood_outside", "report.calibrated", "card.self_test_passed"}) {
    CAPTURE(key);
    CHECK(en.entries().at(key).medical);
  }
}

TEST_CASE("every key the page uses is in the catalogue, and every catalogue key is used", "[web][i18n]") {
  const Catalogue& en = Catalogue::of(Language::en);
  std::set<std::string> prefixes;
  for (const std::string& key : keys_of(en)) prefixes.insert(key.substr(0, key.find('.')));
  // Any string literal shaped like a key with a catalogue's prefix ("viewer.reset"), and the HTML's
  // data-i18n attributes.
  static const std::regex literal(R"re("([a-z]+)\.([a-z0-9_]+)")re");
  static const std::regex attribute(R"re(data-i18n="([^"]+)")re");
  std::set<std::string> used;
  std::vector<std::string> undefined;
  for (const std::filesystem::path& file : page_sources()) {
    const std::string text = read_text(file);
    for (std::sregex_iterator it(text.begin(), text.end(), literal), end; it != end; ++it) {
      if (!prefixes.count((*it)[1])) continue;
      const std::string key = std::string((*it)[1]) + "." + std::string((*it)[2]);
      used.insert(key);
      if (!en.entries().count(key)) undefined.push_back(file.filename().string() + ": " + key);
    }
    for (std::sregex_iterator it(text.begin(), text.end(), attribute), end; it != end; ++it) {
      used.insert((*it)[1]);
      if (!en.entries().count((*it)[1])) undefined.push_back(file.filename().string() + ": " + std::string((*it)[1]));
    }
  }
  std::vector<std::string> unused;
  for (const std::string& key : keys_of(en)) {
    if (!used.count(key)) unused.push_back(key);
  }
  CHECK(undefined == std::vector<std::string>{});
  CHECK(unused == std::vector<std::string>{});
  // A missing key shows as itself, never as an empty string or a crash.
  CHECK(en.text("no.such_key") == "[no.such_key]");
}

TEST_CASE("every character of the catalogues has a glyph; the report's words are ASCII", "[web][i18n]") {
  for (const Language language : kLanguages) {
    for (const auto& [key, entry] : Catalogue::of(language).entries()) {
      for (const char32_t c : code_points(entry.text)) {
        CAPTURE(language_code(language), key, static_cast<uint32_t>(c));
        CHECK(in_font(c));
        // The PNG report is drawn with OpenCV's Hershey font, which has ASCII only.
        if (key.rfind("report.", 0) == 0) CHECK(c < 0x80);
      }
    }
  }
}

TEST_CASE("the English catalogue's report words are the report's defaults", "[web][i18n]") {
  // Native tools (English defaults) and the page in English draw the same report.
  const loupe::ImageReportLabels page = report_labels(Language::en);
  const loupe::ImageReportLabels defaults;
  CHECK(page.title == defaults.title);
  CHECK(page.image == defaults.image);
  CHECK(page.date == defaults.date);
  CHECK(page.model == defaults.model);
  CHECK(page.file == defaults.file);
  CHECK(page.weights == defaults.weights);
  CHECK(page.model_output == defaults.model_output);
  CHECK(page.probabilities == defaults.probabilities);
  CHECK(page.no_prediction == defaults.no_prediction);
  CHECK(page.warning == defaults.warning);
  CHECK(page.training_data_check == defaults.training_data_check);
  CHECK(page.ood_within == defaults.ood_within);
  CHECK(page.ood_outside == defaults.ood_outside);
  CHECK(page.heat_map == defaults.heat_map);
  CHECK(page.predicted_class == defaults.predicted_class);
  CHECK(page.not_diagnostic == defaults.not_diagnostic);
  CHECK(page.calibrated == defaults.calibrated);
  CHECK(page.not_calibrated == defaults.not_calibrated);
  CHECK(page.validation_split == defaults.validation_split);
  const loupe::ImageReportLabels indonesian = report_labels(Language::id);
  CHECK(indonesian.not_diagnostic != defaults.not_diagnostic);
  CHECK(loupe::report_ood_status(indonesian, true, 91.25, 79.2) ==
        "citra ini tidak mirip dengan data latih model; keluarannya tidak dapat diandalkan (jarak 91.2, ambang 79.2)");
}

TEST_CASE("the browser's language picks the page's; placeholders are filled", "[web][i18n]") {
  CHECK(language_from_browser("id-ID,id,en-US") == Language::id);
  CHECK(language_from_browser("id") == Language::id);
  CHECK(language_from_browser("in-ID") == Language::id);  // Indonesian's pre-1989 code
  CHECK(language_from_browser("en-GB,id") == Language::en);
  CHECK(language_from_browser("fr-FR,id-ID,en") == Language::id);  // the first Loupe has
  CHECK(language_from_browser("fr-FR,de") == Language::en);
  CHECK(language_from_browser("") == Language::en);
  CHECK(language_from_browser(" ID-id ; q=0.9") == Language::id);

  CHECK(fill("{a} of {b}, {a}", {{"a", "3"}, {"b", "10"}}) == "3 of 10, 3");
  CHECK(fill("{unknown} stays", {{"a", "3"}}) == "{unknown} stays");
  CHECK(Catalogue::of(Language::id).format("batch.read", {{"files", "5"}, {"ok", "4"}, {"failed", "1"}}) ==
        "5 berkas: 4 baik, 1 gagal");
}

TEST_CASE("a bad catalogue is refused with the key named", "[web][i18n]") {
  CHECK_THROWS_WITH(Catalogue::parse(R"({"a.b": 3})", Language::en), Catch::Contains("'a.b'"));
  CHECK_THROWS_WITH(Catalogue::parse(R"({"a.b": {"review": "x"}})", Language::id), Catch::Contains("'a.b'"));
  CHECK_THROWS_AS(Catalogue::parse("[1, 2]", Language::en), loupe::Error);
  CHECK_THROWS_WITH(Catalogue::parse("{", Language::id), Catch::Contains("web/i18n/id.json"));
  const Catalogue ok = Catalogue::parse(R"({"_about": "notes", "a.b": "x", "c.d": {"text": "y", "medical": true}})", Language::en);
  CHECK(ok.entries().size() == 2);
  CHECK(ok.entries().at("c.d").medical);
}

TEST_CASE("page settings: the language and the stored text size", "[web][ui]") {
  AppState app;
  init_ui_settings(app, "id-ID,en", "");
  CHECK(app.ui.language == Language::id);
  CHECK(app.ui.font_size == kDefaultFontSize);
  init_ui_settings(app, "en-US", "18");
  CHECK(app.ui.font_size == 18.0f);
  // Whatever else is in storage is no size: the default, never a crash or a 0 px font.
  for (const char* stored : {"huge", "18px", "NaN", "inf", " ", "-3"}) {
    CAPTURE(stored);
    init_ui_settings(app, "en", stored);
    CHECK(app.ui.font_size >= kMinFontSize);
    CHECK(app.ui.font_size <= kMaxFontSize);
  }
  CHECK(parse_font_size("400") == kMaxFontSize);
  CHECK(parse_font_size("3") == kMinFontSize);
  CHECK(font_size_text(17.0f) == "17");

  init_ui_settings(app, "en", "15");
  UiActions larger;
  larger.font_size = 16.0f;
  UiSettingsChange change = apply_ui_settings(app, larger);
  CHECK(change.font_size);
  CHECK_FALSE(change.language);
  CHECK(app.ui.font_size == 16.0f);
  UiActions too_large;
  too_large.font_size = 99.0f;
  apply_ui_settings(app, too_large);
  CHECK(app.ui.font_size == kMaxFontSize);
  change = apply_ui_settings(app, too_large);
  CHECK_FALSE(change.font_size);  // no change: nothing to store

  UiActions indonesian;
  indonesian.language = Language::id;
  indonesian.show_help = true;
  change = apply_ui_settings(app, indonesian);
  CHECK(change.language);
  CHECK(app.ui.language == Language::id);
  CHECK(app.ui.show_help);
  const nlohmann::json state = state_json(app, false);
  CHECK(state["ui"]["language"] == "id");
  CHECK(state["ui"]["showHelp"] == true);
  CHECK(state["ui"]["fontSize"] == kMaxFontSize);
}

TEST_CASE("the test hook publishes the frame's clipped and ellipsised texts and its tooltip", "[web][ui]") {
  UiActions actions;
  CHECK(frame_ui_json(actions) == nlohmann::json{{"clipped", nlohmann::json::array()}, {"ellipsised", nlohmann::json::array()},
                                                 {"tooltip", nullptr}});
  actions.clipped.push_back({"Loupe/sidebar", "Architecture", 96.0f, 80.0f});
  actions.tooltip = TooltipPlacement{"Export", {10, 20, 30, 40}, {10, 64, 200, 30}};
  const nlohmann::json json = frame_ui_json(actions);
  CHECK(json["clipped"][0]["text"] == "Architecture");
  CHECK(json["clipped"][0]["window"] == "Loupe/sidebar");
  CHECK(json["clipped"][0]["needed"] == 96.0f);
  CHECK(json["tooltip"]["tooltip"][1] == 64.0f);
}

TEST_CASE("the saved report is in the page's language", "[web][i18n][report]") {
  loupe_web::test::TestApp t;
  static const std::vector<uint8_t> model =
      loupe::read_file(std::string(LOUPE_SHIPPED_MODELS_DIR) + "/chest-xray-mobilenet_v2.onnx");
  t.open_model(model, "chest-xray-mobilenet_v2.onnx");
  REQUIRE(t.app.model.status == ModelStatus::ready);
  t.add_file("xrays/Pneumonia/a.png", loupe::test::encode(loupe::test::make_pattern(64, 48, 1), ".png"));
  t.settle([](const std::vector<float>&) { return std::vector<float>{0.1f, 0.2f, 2.0f}; });
  REQUIRE(t.app.selected == 0);
  REQUIRE(t.app.view.entry == 0);

  UiActions save;
  save.save_report = true;
  apply(t.app, save);
  t.app.ui.language = Language::id;
  apply(t.app, save);
  REQUIRE(t.host.downloads.size() == 2);
  CHECK(t.host.downloads[0].file_name == t.host.downloads[1].file_name);
  CHECK(t.host.downloads[0].mime_type == "image/png");
  // Same image, model and figures: only the words differ.
  CHECK(t.host.downloads[0].text.size() > 1000);
  CHECK(t.host.downloads[0].text != t.host.downloads[1].text);
}
