// The HTML page around the app: what the C++ needs to know about (or tell) the browser tab.
// Thin EM_JS wrappers; see app.mjs for the page's side.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loupe_web {

struct PageInfo {
  bool cross_origin_isolated = false;  // false: no SharedArrayBuffer, so ORT runs on one thread
  int hardware_concurrency = 1;        // logical cores the browser reports
};
PageInfo page_info();

// The canvas as laid out by CSS (it fills the window) and the device pixel ratio.
struct CanvasLayout {
  double css_width = 0, css_height = 0;
  double pixel_ratio = 1;
};
CanvasLayout page_canvas_layout();

// Resizes the canvas backbuffer, in device pixels. Goes through Emscripten's Browser.setCanvasSize
// so its GLFW emulation sees the new size too; glfwSetWindowSize would instead request fullscreen
// whenever the size equals the screen's (GLFW emulation quirk), which throws without a user gesture.
void page_set_canvas_size(int width, int height);

// Mirrors the app state to `window.loupe.state` (a JSON object) for tests and debugging. When
// state.images has no "list" (unchanged since the last frame), the previous list and rows (and
// state.evaluation) are kept.
void page_publish_state(const std::string& json);

// Saves `text` as a file named `file_name` through the browser's download (a Blob URL: the data
// never leaves the tab except into the user's downloads).
void page_download(const std::string& file_name, const std::string& mime_type, const std::string& text);

// The same for binary data (a PNG report).
void page_download_bytes(const std::string& file_name, const std::string& mime_type, const std::vector<uint8_t>& bytes);

// The browser's current time, ISO 8601 UTC ("2026-11-24T06:00:00.000Z").
std::string page_now_iso8601();

// SHA-256 of `text` (UTF-8) with crypto.subtle, answered by loupe_on_sha256(request, hex); an
// empty hex when the browser cannot hash (which no record matches).
void page_sha256(int request, const std::string& text);
extern "C" void loupe_on_sha256(int request, const char* hex);

// The browser's preferred languages, comma-separated (navigator.languages, e.g. "id-ID,id,en").
std::string page_browser_languages();

// The page's one stored setting, the text size (localStorage "loupe.fontSize"): read ("" when
// none, or when the browser keeps no storage for the page) and written. Nothing else is stored.
std::string page_load_font_size();
void page_store_font_size(const std::string& size);

// The page's language: <html lang> and the HTML's own texts (page_text.mjs) follow it.
void page_set_language(const char* code);

// Hides the HTML "Loading..." overlay once the first frame is on screen.
void page_hide_loading_overlay();

// Replaces the overlay with an error, for failures that leave nothing to draw with (no WebGL 2).
void page_show_fatal_error(const char* message);

}  // namespace loupe_web
