// The test hook: the app state as the JSON object the page mirrors to `window.loupe.state` every
// frame (page.h), so the browser tests check what is on screen without reading pixels. Keep the
// keys stable: the tests (tests/browser/) and the benchmark (tests/bench/bench-web.mjs) read them.
#pragma once

#include <nlohmann/json.hpp>

#include "app.h"

namespace loupe_web {

// `with_image_list`: include images.list, images.rows and evaluation (thousands of entries; the
// page keeps the previous ones when they are left out). Reads app.views: call refresh_views()
// first.
nlohmann::json state_json(const AppState& app, bool with_image_list);

// What this frame drew, from its UiActions (merged into the state by the frame loop):
//   clipped     [{window, text, needed, available}]: texts drawn into a box narrower than them
//               (ui_text.h); the browser tests require none on the main views
//   ellipsised  the same for texts shortened on purpose (full text on hover)
//   tooltip     {text, item, tooltip} (x, y, width, height) of the tooltip shown, or null
nlohmann::json frame_ui_json(const UiActions& actions);

}  // namespace loupe_web
