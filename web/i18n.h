// The page's languages: every text a user reads on the page comes from one catalogue per language
// (web/i18n/en.json, web/i18n/id.json), embedded into the app at build time. CSV headers stay
// English (tools read them); file names, class names and the messages of the shared core that name
// a problem (loupe::Error) are shown as they are.
//
//   const Catalogue& words = Catalogue::of(Language::id);
//   words.text("empty.title");                                   // "Belum ada citra yang dibuka"
//   words.format("batch.classified", {{"done", "3"}, {"total", "10"}});
//
// A catalogue entry is a string, or {"text": "...", ...} with notes: "medical": true in English marks
// wording about diagnosis, out-of-distribution and calibration, and the translation of such an entry
// carries "review" (who should check it). tests/web/test_i18n.cpp holds the catalogues to that: the
// same keys in both, every key used by the page and every key the page uses defined, the same
// {placeholders}, medical wording marked for review, every character in the font's glyph ranges.
#pragma once

#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loupe/image_report.h"
#include "loupe/model_card.h"

namespace loupe_web {

enum class Language { en, id };
constexpr Language kLanguages[] = {Language::en, Language::id};

const char* language_code(Language language);  // "en", "id" (BCP 47, the <html lang>)
// The browser's preferred languages in order (navigator.languages, comma-separated, e.g.
// "id-ID,id,en-US"): the first one Loupe has, else English.
Language language_from_browser(std::string_view preferred);

struct CatalogueEntry {
  std::string text;
  bool medical = false;  // English: wording a clinician should check in every translation
  std::string review;    // a translation: the note saying who should review it
};

class Catalogue {
 public:
  // The embedded catalogue of `language`, parsed on first use.
  static const Catalogue& of(Language language);
  // Parses a catalogue (JSON object of key -> string | {"text", "medical", "review"}); keys
  // starting with "_" are notes about the file. Throws loupe::Error naming the bad key.
  static Catalogue parse(std::string_view json, Language language);

  Language language() const { return language_; }
  // The text of `key`; a missing key shows as "[key]" (and fails the catalogue test).
  const std::string& text(std::string_view key) const;
  // The text with each {name} replaced by its value.
  std::string format(std::string_view key, std::initializer_list<std::pair<const char*, std::string>> values) const;
  const std::map<std::string, CatalogueEntry, std::less<>>& entries() const { return entries_; }

 private:
  Language language_ = Language::en;
  std::map<std::string, CatalogueEntry, std::less<>> entries_;
};

// The catalogue file as embedded (generated from web/i18n/<code>.json by web/i18n/embed.cmake).
std::string_view embedded_catalogue(Language language);

// Replaces each {name} in `text` by its value; unknown names stay as they are.
std::string fill(std::string text, std::initializer_list<std::pair<const char*, std::string>> values);

// The PNG report's words in `language` (loupe/image_report.h; the report draws ASCII only, which
// the catalogue test checks for these keys).
loupe::ImageReportLabels report_labels(Language language);
// How a model's probabilities are obtained, in `language`: which calibration is in use (the card's
// calibration_in_use(): a site calibration, the export's, or none) and its temperature. ASCII, as
// the PNG report draws it.
std::string probability_note_text(const loupe::ModelCard& card, Language language);
// How the predicted class is chosen when the card's site calibration sets operating points
// (loupe::decision_note in `language`); "" when it sets none.
std::string decision_note_text(const loupe::ModelCard& card, Language language);

}  // namespace loupe_web
