// The page's own settings (AppState::ui): language, font size, the keyboard help. Applied after
// each frame like the other UiActions; plain C++, tested natively (tests/web/test_ui.cpp).
#pragma once

#include <string>

#include "app.h"

namespace loupe_web {

// Language from the browser's preferences, font size from what the page stored (empty: none, or
// something that is not a size: the default).
void init_ui_settings(AppState& app, const std::string& browser_languages, const std::string& stored_font_size);

struct UiSettingsChange {
  bool font_size = false;  // store it (the one thing the page keeps, in localStorage)
  bool language = false;   // the page's <html lang> and its HTML texts follow
};
UiSettingsChange apply_ui_settings(AppState& app, const UiActions& actions);

// A font size as stored ("15"), and back: sizes out of range are clamped, anything else is none.
std::string font_size_text(float size);
float parse_font_size(const std::string& text);

}  // namespace loupe_web
