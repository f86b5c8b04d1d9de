#include "page.h"

#include <emscripten.h>

#include <cstdint>
#include <cstdlib>
#include <emscripten/html5.h>

namespace {

EM_JS(int, js_cross_origin_isolated, (), { return self.crossOriginIsolated ? 1 : 0; });
EM_JS(int, js_hardware_concurrency, (), { return navigator.hardwareConcurrency || 1; });

EM_JS(void, js_set_canvas_size, (int width, int height), {
  Module["setCanvasSize"](width, height);
});

EM_JS(void, js_publish_state, (const char* json), {
  const loupe = (window["loupe"] = window["loupe"] || {});
  const state = JSON.parse(UTF8ToString(json));
  // The image list (and the evaluation computed from it) is sent only when it changed (it can be
  // long): keep the previous one otherwise.
  const previous = loupe["state"] && loupe["state"]["images"];
  if (state["images"] && !("list" in state["images"]) && previous) {
    state["images"]["list"] = previous["list"];
    state["images"]["rows"] = previous["rows"];
    // The evaluation is computed with the list, and kept with it.
    if (!("evaluation" in state) && "evaluation" in loupe["state"]) state["evaluation"] = loupe["state"]["evaluation"];
  }
  loupe["state"] = state;
});

EM_JS(void, js_download, (const char* file_name, const char* mime_type, const uint8_t* data, int size, int is_text), {
  const content = is_text ? UTF8ToString(data) : HEAPU8.slice(data, data + size);
  const blob = new Blob([content], {type: UTF8ToString(mime_type)});
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = UTF8ToString(file_name);
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
});

EM_JS(char*, js_now_iso8601, (), {
  const text = new Date().toISOString();
  const size = lengthBytesUTF8(text) + 1;
  const pointer = _malloc(size);
  stringToUTF8(text, pointer, size);
  return pointer;
});

EM_JS(void, js_sha256, (int request, const char* text), {
  const bytes = new TextEncoder().encode(UTF8ToString(text));
  const report = (hex) => Module["ccall"]("loupe_on_sha256", null, ["number", "string"], [request, hex]);
  crypto.subtle.digest("SHA-256", bytes).then(
      (digest) => report([...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("")),
      (error) => { console.warn("Loupe: SHA-256: " + error); report(""); });
});

EM_JS(char*, js_browser_languages, (), {
  const list = (navigator.languages && navigator.languages.length) ? navigator.languages : [navigator.language || "en"];
  const text = list.join(",");
  const size = lengthBytesUTF8(text) + 1;
  const pointer = _malloc(size);
  stringToUTF8(text, pointer, size);
  return pointer;
});

// localStorage throws where the browser keeps no storage for the page (some private modes, a
// sandboxed frame): the setting is then simply not kept.
EM_JS(char*, js_load_font_size, (), {
  let text = "";
  try { text = localStorage.getItem("loupe.fontSize") || ""; } catch (error) {}
  const size = lengthBytesUTF8(text) + 1;
  const pointer = _malloc(size);
  stringToUTF8(text, pointer, size);
  return pointer;
});

EM_JS(void, js_store_font_size, (const char* size), {
  try { localStorage.setItem("loupe.fontSize", UTF8ToString(size)); } catch (error) {}
});

EM_JS(void, js_set_language, (const char* code), {
  const language = UTF8ToString(code);
  document.documentElement.lang = language;
  document.dispatchEvent(new CustomEvent("loupe-language", {"detail": language}));
});

EM_JS(void, js_hide_loading_overlay, (), {
  const overlay = document.getElementById("loading");
  if (overlay) overlay.hidden = true;
});

// app.mjs passes its showFatal() to createLoupe(); without it, the console is all there is.
EM_JS(void, js_show_fatal_error, (const char* message), {
  const text = UTF8ToString(message);
  if (Module["showFatal"]) Module["showFatal"](text);
  console.error("Loupe: " + text);
});

}  // namespace

namespace loupe_web {

PageInfo page_info() {
  PageInfo info;
  info.cross_origin_isolated = js_cross_origin_isolated() != 0;
  info.hardware_concurrency = js_hardware_concurrency();
  return info;
}

CanvasLayout page_canvas_layout() {
  CanvasLayout layout;
  emscripten_get_element_css_size("#canvas", &layout.css_width, &layout.css_height);
  layout.pixel_ratio = emscripten_get_device_pixel_ratio();
  return layout;
}

void page_set_canvas_size(int width, int height) { js_set_canvas_size(width, height); }

void page_publish_state(const std::string& json) { js_publish_state(json.c_str()); }

void page_download(const std::string& file_name, const std::string& mime_type, const std::string& text) {
  js_download(file_name.c_str(), mime_type.c_str(), reinterpret_cast<const uint8_t*>(text.c_str()), 0, 1);
}

void page_download_bytes(const std::string& file_name, const std::string& mime_type, const std::vector<uint8_t>& bytes) {
  js_download(file_name.c_str(), mime_type.c_str(), bytes.data(), static_cast<int>(bytes.size()), 0);
}

std::string page_now_iso8601() {
  char* text = js_now_iso8601();
  std::string out = text ? text : "";
  std::free(text);
  return out;
}

void page_sha256(int request, const std::string& text) { js_sha256(request, text.c_str()); }

static std::string take_string(char* text) {
  std::string out = text ? text : "";
  std::free(text);
  return out;
}

std::string page_browser_languages() { return take_string(js_browser_languages()); }

std::string page_load_font_size() { return take_string(js_load_font_size()); }

void page_store_font_size(const std::string& size) { js_store_font_size(size.c_str()); }

void page_set_language(const char* code) { js_set_language(code); }

void page_hide_loading_overlay() { js_hide_loading_overlay(); }

void page_show_fatal_error(const char* message) { js_show_fatal_error(message); }

}  // namespace loupe_web
