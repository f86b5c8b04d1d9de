// The page's languages (i18n.h).
#include "i18n.h"

#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "loupe/error.h"

namespace loupe_web {

const char* language_code(Language language) { return language == Language::id ? "id" : "en"; }

Language language_from_browser(std::string_view preferred) {
  // "id-ID,id;q=0.9,en" -> "id-ID", "id", "en": the primary subtag decides.
  size_t start = 0;
  while (start < preferred.size()) {
    size_t end = preferred.find(',', start);
    if (end == std::string_view::npos) end = preferred.size();
    std::string tag;
    for (size_t i = start; i < end && preferred[i] != '-' && preferred[i] != '_' && preferred[i] != ';'; ++i) {
      if (!std::isspace(static_cast<unsigned char>(preferred[i]))) {
        tag += static_cast<char>(std::tolower(static_cast<unsigned char>(preferred[i])));
      }
    }
    // "in" is the code Indonesian had before 1989; some systems still report it.
    if (tag == "id" || tag == "in") return Language::id;
    if (tag == "en") return Language::en;
    start = end + 1;
  }
  return Language::en;
}

Catalogue Catalogue::parse(std::string_view json_text, Language language) {
  const std::string file = std::string("web/i18n/") + language_code(language) + ".json";
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& error) {
    throw loupe::Error(loupe::ErrorCode::InvalidArgument, file + ": not valid JSON: " + error.what());
  }
  if (!json.is_object()) throw loupe::Error(loupe::ErrorCode::InvalidArgument, file + ": not a JSON object");
  Catalogue catalogue;
  catalogue.language_ = language;
  for (const auto& [key, value] : json.items()) {
    if (!key.empty() && key[0] == '_') continue;
    CatalogueEntry entry;
    if (value.is_string()) {
      entry.text = value.get<std::string>();
    } else if (value.is_object() && value.contains("text") && value["text"].is_string()) {
      entry.text = value["text"].get<std::string>();
      entry.medical = value.value("medical", false);
      entry.review = value.value("review", "");
    } else {
      throw loupe::Error(loupe::ErrorCode::InvalidArgument, file + ": '" + key + "' is neither a string nor {\"text\": ...}");
    }
    catalogue.entries_.emplace(key, std::move(entry));
  }
  return catalogue;
}

const Catalogue& Catalogue::of(Language language) {
  static const Catalogue english = parse(embedded_catalogue(Language::en), Language::en);
  static const Catalogue indonesian = parse(embedded_catalogue(Language::id), Language::id);
  return language == Language::id ? indonesian : english;
}

const std::string& Catalogue::text(std::string_view key) const {
  const auto found = entries_.find(key);
  if (found != entries_.end()) return found->second.text;
  // Shown as "[key]": visible on screen, never a crash mid-frame.
  static std::map<std::string, std::string, std::less<>> missing;
  auto [slot, added] = missing.try_emplace(std::string(key));
  if (added) slot->second = "[" + std::string(key) + "]";
  return slot->second;
}

std::string fill(std::string text, std::initializer_list<std::pair<const char*, std::string>> values) {
  for (const auto& [name, value] : values) {
    const std::string placeholder = std::string("{") + name + "}";
    for (size_t at = text.find(placeholder); at != std::string::npos; at = text.find(placeholder, at + value.size())) {
      text.replace(at, placeholder.size(), value);
    }
  }
  return text;
}

std::string Catalogue::format(std::string_view key, std::initializer_list<std::pair<const char*, std::string>> values) const {
  return fill(text(key), values);
}

loupe::ImageReportLabels report_labels(Language language) {
  const Catalogue& words = Catalogue::of(language);
  loupe::ImageReportLabels labels;
  labels.title = words.text("report.title");
  labels.image = words.text("report.image");
  labels.date = words.text("report.date");
  labels.model = words.text("report.model");
  labels.file = words.text("report.file");
  labels.weights = words.text("report.weights");
  labels.model_output = words.text("report.model_output");
  labels.probabilities = words.text("report.probabilities");
  labels.no_prediction = words.text("report.no_prediction");
  labels.warning = words.text("report.warning");
  labels.training_data_check = words.text("report.training_data_check");
  labels.ood_within = words.text("report.ood_within");
  labels.ood_outside = words.text("report.ood_outside");
  labels.heat_map = words.text("report.heat_map");
  labels.predicted_class = words.text("report.predicted_class");
  labels.decision = words.text("report.decision");
  labels.not_diagnostic = words.text("report.not_diagnostic");
  labels.calibrated = words.text("report.calibrated");
  labels.not_calibrated = words.text("report.not_calibrated");
  labels.validation_split = words.text("report.validation_split");
  return labels;
}

static std::string short_number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", value);
  return text;
}

std::string probability_note_text(const loupe::ModelCard& card, Language language) {
  const Catalogue& words = Catalogue::of(language);
  if (card.site_calibration) {  // calibration_in_use() == "site": it replaces the export's
    const loupe::SiteCalibration& site = *card.site_calibration;
    std::string note = words.format("report.calibrated_site", {{"t", short_number(site.temperature)},
                                                                {"images", std::to_string(site.images)},
                                                                {"date", site.created_utc}});
    if (card.calibration) {
      note += "; " + words.format("report.export_calibration_kept", {{"t", short_number(card.calibration->temperature)}});
    }
    return note;
  }
  const loupe::ImageReportLabels labels = report_labels(language);
  if (!card.calibration) return labels.not_calibrated;
  const nlohmann::json& record = card.calibration->record;
  const auto fitted = record.is_object() ? record.find("fitted_on") : record.end();
  const std::string on = fitted != record.end() && fitted->is_string() ? fitted->get<std::string>() : labels.validation_split;
  return loupe::report_probability_note(labels, card.calibration->temperature, on);
}

std::string decision_note_text(const loupe::ModelCard& card, Language language) {
  if (!card.site_calibration || card.site_calibration->operating_points.empty()) return "";
  const Catalogue& words = Catalogue::of(language);
  const loupe::SiteCalibration& site = *card.site_calibration;
  std::string points;
  for (const loupe::OperatingPointRule& rule : site.operating_points) {
    points += (points.empty() ? "" : ", ") +
              words.format("report.operating_point", {{"class", rule.class_name}, {"threshold", short_number(rule.threshold)}});
  }
  const bool every_class = site.operating_points.size() >= card.class_names.size();
  return words.format("report.operating_points", {{"date", site.created_utc},
                                                  {"points", points},
                                                  {"rule", words.text(every_class ? "report.operating_rule_all"
                                                                                  : "report.operating_rule_some")}});
}

}  // namespace loupe_web
