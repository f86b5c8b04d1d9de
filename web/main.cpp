// Loupe in the browser: the platform glue of a Dear ImGui page over loupe::core, drawn on WebGL2,
// classifying with ONNX Runtime Web. Everything else lives in plain C++ that is tested natively:
//
//   app.h            AppState, the one place the page's state lives; UiActions
//   app_logic.h      what happens when the browser answers or the user acts (the batch pipeline,
//                    models, the CSV export, the report), through Host (host.h)
//   state_json.h     the state mirrored to `window.loupe.state` for the browser tests
//   draw.cpp         every pixel, a function of AppState
//   this file        the browser Host (the JS bridges), the callbacks JavaScript makes between
//                    frames, GLFW input, GL textures and the frame loop
//
// Index:
//   [SECTION] The browser host
//   [SECTION] Frame loop (canvas size, device pixel ratio, fonts, the image texture)
//   [SECTION] Callbacks from JavaScript
//   [SECTION] main

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <GLES3/gl3.h>
#include <GLFW/glfw3.h>
#include <emscripten.h>
#include <emscripten/heap.h>
#include <nlohmann/json.hpp>

#include "app.h"
#include "app_logic.h"
#include "fonts.h"
#include "host.h"
#include "i18n.h"
#include "image_files.h"
#include "imgui.h"
#include "imgui_impl_glfw.h"
#include "imgui_impl_opengl3.h"
#include "loupe/heatmap.h"
#include "loupe/version.h"
#include "model_files.h"
#include "ort_bridge.h"
#include "page.h"
#include "state_json.h"
#include "ui_settings.h"

using loupe_web::AppState;
using loupe_web::ImageView;
using loupe_web::UiActions;

//-----------------------------------------------------------------------------------------------
// [SECTION] The browser host
//-----------------------------------------------------------------------------------------------

class BrowserHost final : public loupe_web::Host {
 public:
  void read_image_file(int request, int file_index, int frame) override {
    loupe_web::image_files_read(request, file_index, frame);
  }
  void open_image_picker(bool folder) override { loupe_web::image_files_open_picker(folder); }
  void open_model_picker() override { loupe_web::model_files_open_picker(); }
  void open_shipped_model(const std::string& file) override { loupe_web::model_files_open_shipped(file); }
  void create_session(int request, const uint8_t* bytes, size_t size, const std::string& weight_ranges_json) override {
    loupe_web::ort_bridge_create_session(request, bytes, size, weight_ranges_json);
  }
  void run_model(int request, int session, const float* input, size_t count, const std::string& dims_json,
                 const std::string& outputs_json) override {
    loupe_web::ort_bridge_run(request, session, input, count, dims_json, outputs_json);
  }
  void release_session(int session) override { loupe_web::ort_bridge_release_session(session); }
  void sha256(int request, const std::string& text) override { loupe_web::page_sha256(request, text); }
  void download(const std::string& file_name, const std::string& mime_type, const std::string& text) override {
    loupe_web::page_download(file_name, mime_type, text);
  }
  void download_bytes(const std::string& file_name, const std::string& mime_type, const std::vector<uint8_t>& bytes) override {
    loupe_web::page_download_bytes(file_name, mime_type, bytes);
  }
  std::string now_iso8601() override { return loupe_web::page_now_iso8601(); }
};

static BrowserHost g_host;
static AppState g_app;

//-----------------------------------------------------------------------------------------------
// [SECTION] Frame loop (canvas size, device pixel ratio, fonts, the image texture)
//-----------------------------------------------------------------------------------------------

// Platform objects: not app state, nothing draws from them.
struct Platform {
  GLFWwindow* window = nullptr;
  double font_pixel_ratio = 0;  // the ratio the font atlas was rasterised for
  float font_size = 0;          // and the text size (CSS px)
  ImGuiStyle base_style;        // set_style()'s sizes at the default text size
  GLFWkeyfun imgui_key_callback = nullptr;
  GLFWcursorposfun imgui_cursor_callback = nullptr;
  GLFWmousebuttonfun imgui_button_callback = nullptr;
  GLFWscrollfun imgui_scroll_callback = nullptr;
  GLFWcharfun imgui_char_callback = nullptr;
  int key_steps = 0;  // next/previous presses since the last frame
  // Idle frames are skipped: an app that draws nothing new should not burn a core (on machines
  // without a GPU the browser rasterises every frame in software, which also slows ORT down).
  // Input, a callback from JS or a resize wakes the loop; it then draws a few more frames so
  // hover states and animations settle, and at least one frame a second regardless. While a batch
  // runs, its progress (a file read, a run's outputs) asks for one frame every
  // kProgressFrameInterval ms only: the cores are ORT's, and the progress bar needs no more.
  bool woken = true;
  bool progress = false;  // the batch moved on since the last frame
  int frames_to_draw = 0;
  double last_frame_ms = 0;
  double list_published_ms = 0;  // when state.images.list was last published
  long list_revision = -1;       // the images_revision it showed
};
constexpr double kProgressFrameInterval = 500.0;
constexpr double kListPublishInterval = 500.0;
static Platform g_platform;

// Something may have changed: draw the next frames.
static void wake() { g_platform.woken = true; }

// The batch moved on: a frame soon, at the progress rate while images are still in flight (the
// last answer of a batch wakes the loop at once, so the result is not held back).
static void wake_for_progress() {
  if (loupe_web::batch_progress(g_app).in_flight > 0) {
    g_platform.progress = true;
  } else {
    wake();
  }
}

static void on_cursor(GLFWwindow* window, double x, double y) {
  if (g_platform.imgui_cursor_callback) g_platform.imgui_cursor_callback(window, x, y);
  wake();
}
static void on_button(GLFWwindow* window, int button, int action, int mods) {
  if (g_platform.imgui_button_callback) g_platform.imgui_button_callback(window, button, action, mods);
  wake();
}
static void on_scroll(GLFWwindow* window, double dx, double dy) {
  if (g_platform.imgui_scroll_callback) g_platform.imgui_scroll_callback(window, dx, dy);
  wake();
}
static void on_char(GLFWwindow* window, unsigned int c) {
  if (g_platform.imgui_char_callback) g_platform.imgui_char_callback(window, c);
  wake();
}

// Next/previous image keys, counted as they arrive. ImGui 1.86 only sees which keys are down at
// each frame, so a press and release between two frames (a quick tap, a test's keyboard.press)
// would be lost; counting presses in the GLFW callback keeps every one.
static void on_key(GLFWwindow* window, int key, int scancode, int action, int mods) {
  if (g_platform.imgui_key_callback) g_platform.imgui_key_callback(window, key, scancode, action, mods);
  wake();
  if (action != GLFW_PRESS && action != GLFW_REPEAT) return;
  if (key == GLFW_KEY_DOWN || key == GLFW_KEY_J) ++g_platform.key_steps;
  if (key == GLFW_KEY_UP || key == GLFW_KEY_K) --g_platform.key_steps;
}

// The canvas fills the window in CSS pixels (style.css); its backbuffer must hold CSS size x
// devicePixelRatio device pixels or everything is blurry on high-DPI screens. Checked every frame:
// it catches window resizes, zoom and moving to another monitor alike.
static void fit_canvas_to_window(AppState& app) {
  const loupe_web::CanvasLayout layout = loupe_web::page_canvas_layout();
  const int width = std::max(1, static_cast<int>(std::lround(layout.css_width * layout.pixel_ratio)));
  const int height = std::max(1, static_cast<int>(std::lround(layout.css_height * layout.pixel_ratio)));
  if (width != app.canvas_width || height != app.canvas_height) {
    loupe_web::page_set_canvas_size(width, height);
    app.canvas_width = width;
    app.canvas_height = height;
  }
  app.pixel_ratio = layout.pixel_ratio;
}

// ImGui works in CSS pixels; the font is rasterised at device resolution (text size x
// devicePixelRatio) and scaled back, so text stays sharp at any devicePixelRatio. Paddings and
// spacings grow with the text size.
static void rebuild_fonts_for(double pixel_ratio, float font_size) {
  ImGuiIO& io = ImGui::GetIO();
  io.Fonts->Clear();
  ImFontConfig config;
  config.FontDataOwnedByAtlas = false;  // the bytes are static (fonts.h)
  config.OversampleH = 2;
  config.OversampleV = 1;
  config.EllipsisChar = 0x2026;
  const float pixels = std::round(font_size * static_cast<float>(pixel_ratio));
  io.Fonts->AddFontFromMemoryTTF(const_cast<unsigned char*>(loupe_web::ui_font_data()),
                                 static_cast<int>(loupe_web::ui_font_size()), pixels, &config, loupe_web::kUiGlyphRanges);
  io.FontGlobalScale = font_size / pixels;
  ImGuiStyle& style = ImGui::GetStyle();
  style = g_platform.base_style;
  style.ScaleAllSizes(font_size / loupe_web::kDefaultFontSize);
  ImGui_ImplOpenGL3_DestroyFontsTexture();
  ImGui_ImplOpenGL3_CreateFontsTexture();
  g_platform.font_pixel_ratio = pixel_ratio;
  g_platform.font_size = font_size;
}

// The page's settings changed this frame: the font size is stored (the only thing the page keeps),
// the HTML follows the language.
static void apply_page_settings(AppState& app, const UiActions& actions) {
  const loupe_web::UiSettingsChange change = loupe_web::apply_ui_settings(app, actions);
  if (change.font_size) loupe_web::page_store_font_size(loupe_web::font_size_text(app.ui.font_size));
  if (change.language) loupe_web::page_set_language(loupe_web::language_code(app.ui.language));
}

// Emscripten's GLFW reports sizes and the mouse in device pixels; turn them into CSS pixels.
static void use_css_pixels(double pixel_ratio) {
  ImGuiIO& io = ImGui::GetIO();
  const float ratio = static_cast<float>(pixel_ratio);
  io.DisplaySize = {io.DisplaySize.x / ratio, io.DisplaySize.y / ratio};
  io.DisplayFramebufferScale = {ratio, ratio};
  if (ImGui::IsMousePosValid(&io.MousePos)) io.MousePos = {io.MousePos.x / ratio, io.MousePos.y / ratio};
}

// Uploads RGBA8 pixels into `texture`, creating it on first use (linear filtering, clamped edges).
static void upload_rgba_texture(unsigned& texture, int width, int height, const std::vector<uint8_t>& rgba) {
  if (texture == 0) {
    GLuint created = 0;
    glGenTextures(1, &created);
    texture = created;
  }
  glBindTexture(GL_TEXTURE_2D, texture);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
  glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, width, height, 0, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
  glBindTexture(GL_TEXTURE_2D, 0);
}

// The viewed image as an RGBA8 texture, through the window/level (display only).
static void upload_view_texture(ImageView& view, int max_side) {
  view.texture_dirty = false;
  if (view.entry < 0 || view.image.empty()) return;
  int width = 0, height = 0;
  const std::vector<uint8_t> rgba = loupe_web::display_rgba(view.image, view.window, max_side, width, height);
  upload_rgba_texture(view.texture, width, height, rgba);
  view.texture_width = width;
  view.texture_height = height;
}

// The heat map of the selected image as an RGBA8 texture the size of the image's texture.
static void upload_heat_texture(AppState& app) {
  ImageView& view = app.view;
  view.heat_dirty = false;
  const int cls = loupe_web::heat_map_class(app);
  view.heat_texture_class = cls;
  view.heat_ready = false;
  if (cls < 0 || view.entry != app.selected || view.texture_width <= 0) return;
  std::vector<uint8_t> rgba;
  try {
    rgba = loupe::heat_map_overlay(loupe_web::class_heat_map(app.cam, cls), app.model.info.card.preprocess, view.image.width,
                                   view.image.height, view.texture_width, view.texture_height);
  } catch (const std::exception&) {
    return;  // a degenerate map: no overlay (the image stays)
  }
  upload_rgba_texture(view.heat_texture, view.texture_width, view.texture_height, rgba);
  view.heat_ready = true;
}

static void frame() {
  AppState& app = g_app;
  const int canvas_width = app.canvas_width, canvas_height = app.canvas_height;
  const double pixel_ratio = app.pixel_ratio;
  fit_canvas_to_window(app);
  if (app.canvas_width != canvas_width || app.canvas_height != canvas_height || app.pixel_ratio != pixel_ratio) wake();
  const double now = emscripten_get_now();
  if (g_platform.woken) {
    g_platform.woken = false;
    g_platform.frames_to_draw = 20;
  } else if (g_platform.progress && now - g_platform.last_frame_ms >= kProgressFrameInterval) {
    g_platform.frames_to_draw = std::max(g_platform.frames_to_draw, 1);
  } else if (g_platform.frames_to_draw <= 0 && now - g_platform.last_frame_ms < 1000.0 && app.frames > 0) {
    return;  // nothing new to draw
  }
  g_platform.progress = false;
  --g_platform.frames_to_draw;
  g_platform.last_frame_ms = now;
  if (app.pixel_ratio != g_platform.font_pixel_ratio || app.ui.font_size != g_platform.font_size) {
    rebuild_fonts_for(app.pixel_ratio, app.ui.font_size);
  }

  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  use_css_pixels(app.pixel_ratio);
  if (app.view.texture_dirty) {
    upload_view_texture(app.view, app.max_texture_side);
    app.view.heat_dirty = true;
  }
  if (app.view.heat_dirty || app.view.heat_texture_class != loupe_web::heat_map_class(app)) upload_heat_texture(app);
  loupe_web::refresh_views(app);
  ImGui::NewFrame();
  UiActions actions;
  loupe_web::draw_app(app, actions);
  ImGui::Render();
  // Keys move the selection unless the user is typing (the filter box).
  if (!ImGui::GetIO().WantTextInput) actions.step = g_platform.key_steps;
  g_platform.key_steps = 0;
  app.scroll_to_selected = false;
  loupe_web::apply(app, actions);
  apply_page_settings(app, actions);

  glViewport(0, 0, app.canvas_width, app.canvas_height);
  const ImVec4 background = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];
  glClearColor(background.x, background.y, background.z, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

  if (app.frames++ == 0) loupe_web::page_hide_loading_overlay();
  const double drawn = emscripten_get_now();
  app.profile.frame_ms += drawn - now;
  ++app.profile.frames;
  // The image list changes with every image classified; while a batch runs, send it twice a second
  // (JSON of thousands of entries for every progress frame would slow the batch down), then once
  // when it settles.
  const bool batch_running = loupe_web::batch_progress(app).in_flight > 0;
  const bool with_list = g_platform.list_revision != app.images_revision &&
                         (!batch_running || drawn - g_platform.list_published_ms >= kListPublishInterval);
  if (with_list) {
    g_platform.list_revision = app.images_revision;
    g_platform.list_published_ms = drawn;
  }
  app.heap_bytes = static_cast<double>(emscripten_get_heap_size());
  loupe_web::refresh_views(app);  // the actions may have changed the images
  nlohmann::json state = loupe_web::state_json(app, with_list);
  nlohmann::json widgets = nlohmann::json::object();
  for (const auto& [id, rect] : actions.widgets) widgets[id] = rect;
  state["widgets"] = std::move(widgets);
  state.update(loupe_web::frame_ui_json(actions));
  loupe_web::page_publish_state(state.dump());
  app.profile.publish_ms += emscripten_get_now() - drawn;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Callbacks from JavaScript (see ort_bridge.h, model_files.h, image_files.h)
//-----------------------------------------------------------------------------------------------
// Each hands the answer to the app logic and wakes the frame loop (a batch's file reads and runs
// at the progress rate); buffers malloc'd by the JS side are freed here when the call returns.

using FreeOnReturn = std::unique_ptr<void, void (*)(void*)>;

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_ort_status(int status, const char* version, const char* backend,
                                                         int threads, const char* error) {
  wake();
  loupe_web::on_ort_status(g_app, static_cast<loupe_web::OrtStatus>(status), version ? version : "",
                           backend ? backend : "", threads, error ? error : "");
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_shipped_models(const char* manifest_json, const char* error) {
  wake();
  loupe_web::on_shipped_models(g_app, manifest_json, error);
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_model_file(unsigned char* bytes, double size, const char* name,
                                                         const char* source, const char* error) {
  wake();
  const FreeOnReturn owned(bytes, std::free);
  loupe_web::on_model_file(g_app, bytes, static_cast<size_t>(size), name ? name : "model", source ? source : "file", error);
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_ort_session(int request, int session, const char* weights_sha256,
                                                          const char* error) {
  wake();
  loupe_web::on_ort_session(g_app, request, session, weights_sha256 ? weights_sha256 : "", error);
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_ort_run(int request, float* data, int count, const char* layout_json,
                                                      const char* error) {
  const FreeOnReturn owned(data, std::free);
  loupe_web::on_ort_run(g_app, request, data, static_cast<size_t>(std::max(count, 0)), layout_json, error);
  wake_for_progress();
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_sha256(int request, const char* hex) {
  wake();
  loupe_web::on_sha256(g_app, request, hex ? hex : "");
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_image_file_added(int file_index, const char* name, const char* path,
                                                               double size) {
  wake();
  loupe_web::on_image_file_added(g_app, file_index, name ? name : "", path ? path : "", size);
}

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_image_file_read(int request, unsigned char* bytes, int size,
                                                              const char* dicom_attributes, const char* error) {
  const FreeOnReturn owned(bytes, std::free);
  loupe_web::on_image_file_read(g_app, request, bytes, static_cast<size_t>(std::max(size, 0)), dicom_attributes, error);
  wake_for_progress();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] main
//-----------------------------------------------------------------------------------------------

// Colours and the sizes at the default text size (rebuild_fonts_for scales them).
static void set_style() {
  ImGui::StyleColorsDark();
  ImGuiStyle& style = ImGui::GetStyle();
  style.WindowRounding = 0.0f;
  style.ChildRounding = 6.0f;
  style.FrameRounding = 4.0f;
  style.PopupRounding = 4.0f;
  style.WindowPadding = {12.0f, 10.0f};
  style.ItemSpacing = {8.0f, 6.0f};
  style.Colors[ImGuiCol_WindowBg] = {0.10f, 0.11f, 0.13f, 1.0f};
  style.Colors[ImGuiCol_ChildBg] = {0.13f, 0.14f, 0.17f, 1.0f};
  style.Colors[ImGuiCol_MenuBarBg] = {0.07f, 0.08f, 0.09f, 1.0f};
  style.Colors[ImGuiCol_Border] = {0.22f, 0.24f, 0.28f, 1.0f};
  style.Colors[ImGuiCol_Separator] = {0.22f, 0.24f, 0.28f, 1.0f};
  style.Colors[ImGuiCol_TextDisabled] = {0.62f, 0.64f, 0.70f, 1.0f};
  g_platform.base_style = style;
}

int main() {
  // The language first: even "no WebGL" is said in it. The font size is the page's one stored setting.
  loupe_web::init_ui_settings(g_app, loupe_web::page_browser_languages(), loupe_web::page_load_font_size());
  loupe_web::page_set_language(loupe_web::language_code(g_app.ui.language));
  // WebGL2 is OpenGL ES 3.0. The size is provisional: the first frame fits the canvas to the window.
  if (glfwInit()) {
    glfwWindowHint(GLFW_CLIENT_API, GLFW_OPENGL_ES_API);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    g_platform.window = glfwCreateWindow(1280, 720, "Loupe", nullptr, nullptr);
  }
  if (!g_platform.window) {
    loupe_web::page_show_fatal_error(loupe_web::Catalogue::of(g_app.ui.language).text("fatal.no_webgl").c_str());
    return 1;
  }
  glfwMakeContextCurrent(g_platform.window);

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // no file system to save window positions to
  set_style();
  ImGui_ImplGlfw_InitForOpenGL(g_platform.window, true);
  g_platform.imgui_key_callback = glfwSetKeyCallback(g_platform.window, on_key);
  g_platform.imgui_cursor_callback = glfwSetCursorPosCallback(g_platform.window, on_cursor);
  g_platform.imgui_button_callback = glfwSetMouseButtonCallback(g_platform.window, on_button);
  g_platform.imgui_scroll_callback = glfwSetScrollCallback(g_platform.window, on_scroll);
  g_platform.imgui_char_callback = glfwSetCharCallback(g_platform.window, on_char);
  ImGui_ImplOpenGL3_Init("#version 300 es");

  g_app.host = &g_host;
  g_app.build = loupe::build_info();
  g_app.page = loupe_web::page_info();
  GLint max_texture_side = 0;
  glGetIntegerv(GL_MAX_TEXTURE_SIZE, &max_texture_side);
  g_app.max_texture_side = std::clamp(static_cast<int>(max_texture_side), 256, 4096);
  loupe_web::ort_bridge_load();
  loupe_web::model_files_listen();
  loupe_web::image_files_listen();

  // The browser owns the loop: frame() runs on every requestAnimationFrame. `true` unwinds main()
  // here (Emscripten's "simulate infinite loop"), so nothing after this line runs.
  emscripten_set_main_loop(frame, 0, true);
  return 0;
}
