// The page's own settings (ui_settings.h).
#include "ui_settings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace loupe_web {

std::string font_size_text(float size) {
  char text[16];
  std::snprintf(text, sizeof text, "%.0f", static_cast<double>(size));
  return text;
}

float parse_font_size(const std::string& text) {
  char* end = nullptr;
  const float size = std::strtof(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(size)) return kDefaultFontSize;
  return std::clamp(std::round(size), kMinFontSize, kMaxFontSize);
}

void init_ui_settings(AppState& app, const std::string& browser_languages, const std::string& stored_font_size) {
  app.ui.language = language_from_browser(browser_languages);
  app.ui.font_size = parse_font_size(stored_font_size);
}

UiSettingsChange apply_ui_settings(AppState& app, const UiActions& actions) {
  UiSettingsChange change;
  if (actions.language && *actions.language != app.ui.language) {
    app.ui.language = *actions.language;
    change.language = true;
  }
  if (actions.font_size) {
    const float size = std::clamp(std::round(*actions.font_size), kMinFontSize, kMaxFontSize);
    change.font_size = size != app.ui.font_size;
    app.ui.font_size = size;
  }
  if (actions.show_help) app.ui.show_help = *actions.show_help;
  return change;
}

}  // namespace loupe_web
