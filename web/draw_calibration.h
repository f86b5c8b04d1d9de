// Drawing "Calibrate for this site" (site_calibration.h): the button at the end of the evaluation
// window and the window it opens (reliability diagrams before/after, ECE and NLL with intervals, the
// fitted temperature, an operating point per class, the download). Like draw.cpp, a function of
// AppState only; what the user does goes into UiActions::site_calibration.
#pragma once

#include "app.h"

namespace loupe_web {

// "Calibrate for this site" (opens or closes the window); drawn inside the evaluation window.
void draw_site_calibration_button(const AppState& app, UiActions& actions);
// The window, when open.
void draw_site_calibration_window(const AppState& app, UiActions& actions);

}  // namespace loupe_web
