// Loupe in the browser: a Dear ImGui page over loupe::core, drawn on WebGL2.
//
// Everything the page shows lives in one AppState. Two things write it: the frame loop (frame
// counter, canvas size) and callbacks the JS side calls between frames (ORT status). draw_app()
// reads it and nothing else, and the state is mirrored to `window.loupe.state` every frame so the
// browser tests can check what is on screen without reading pixels.
//
// Index:
//   [SECTION] App state
//   [SECTION] Drawing
//   [SECTION] Frame loop (canvas size, device pixel ratio, fonts)
//   [SECTION] Callbacks from JavaScript
//   [SECTION] main

#include <algorithm>
#include <cmath>
#include <string>

#include <GLES3/gl3.h>
#include <GLFW/glfw3.h>
#include <emscripten.h>
#include <nlohmann/json.hpp>

#include "imgui.h"
#include "imgui_impl_glfw.h"
#include "imgui_impl_opengl3.h"
#include "loupe/version.h"
#include "ort_bridge.h"
#include "page.h"

using loupe_web::OrtStatus;

//-----------------------------------------------------------------------------------------------
// [SECTION] App state
//-----------------------------------------------------------------------------------------------

struct OrtRuntime {
  OrtStatus status = OrtStatus::loading;
  std::string version;  // ONNX Runtime Web's, e.g. "1.30.0"
  int threads = 0;      // wasm threads its sessions use (1 when the page is not cross-origin isolated)
  std::string error;    // why loading failed
};

struct AppState {
  loupe::BuildInfo build;
  loupe_web::PageInfo page;
  OrtRuntime ort;
  long frames = 0;  // frames rendered so far; the first one makes the app "ready"
  int canvas_width = 0, canvas_height = 0;  // backbuffer, device pixels
  double pixel_ratio = 1;
};

static AppState g_app;

static const char* to_string(OrtStatus status) {
  switch (status) {
    case OrtStatus::loading: return "loading";
    case OrtStatus::ready: return "ready";
    case OrtStatus::failed: return "failed";
  }
  return "unknown";
}

// The test hook's shape: window.loupe.state. Keep keys stable, tests depend on them.
static nlohmann::json to_json(const AppState& app) {
  return {
      {"ready", app.frames > 0},
      {"frames", app.frames},
      {"coreVersion", app.build.loupe_version},
      {"target", app.build.target},
      {"compiler", app.build.compiler},
      {"opencvVersion", app.build.opencv_version},
      {"crossOriginIsolated", app.page.cross_origin_isolated},
      {"hardwareConcurrency", app.page.hardware_concurrency},
      {"canvas", {{"width", app.canvas_width}, {"height", app.canvas_height}, {"pixelRatio", app.pixel_ratio}}},
      {"ort", {{"status", to_string(app.ort.status)}, {"version", app.ort.version},
               {"threads", app.ort.threads}, {"error", app.ort.error}}},
  };
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Drawing: a function of AppState only
//-----------------------------------------------------------------------------------------------

namespace colours {
const ImVec4 local{0.40f, 0.82f, 0.50f, 1.0f};    // the "processing is local" promise
const ImVec4 caution{0.96f, 0.72f, 0.28f, 1.0f};  // "not a diagnostic device", degraded modes
const ImVec4 error{0.96f, 0.42f, 0.38f, 1.0f};
const ImVec4 dim{0.58f, 0.60f, 0.66f, 1.0f};
}  // namespace colours

static ImVec2 badge_size(const char* text) {
  const ImVec2 text_size = ImGui::CalcTextSize(text);
  return {text_size.x + 16.0f, text_size.y + 4.0f};
}

// A pill-shaped, tinted label at the cursor.
static void draw_badge(const char* text, const ImVec4& colour) {
  const ImVec2 size = badge_size(text);
  const ImVec2 min = ImGui::GetCursorScreenPos();
  const ImVec2 max{min.x + size.x, min.y + size.y};
  ImDrawList* draw_list = ImGui::GetWindowDrawList();
  const ImVec4 fill{colour.x, colour.y, colour.z, 0.14f};
  draw_list->AddRectFilled(min, max, ImGui::ColorConvertFloat4ToU32(fill), size.y * 0.5f);
  draw_list->AddRect(min, max, ImGui::ColorConvertFloat4ToU32(colour), size.y * 0.5f);
  draw_list->AddText({min.x + 8.0f, min.y + 2.0f}, ImGui::ColorConvertFloat4ToU32(colour), text);
  ImGui::Dummy(size);
}

static const char* const kLocalBadge = "Processing is local: no image leaves this device";
static const char* const kNotDiagnosticBadge = "Not a diagnostic device";

static void draw_menu_bar() {
  if (!ImGui::BeginMainMenuBar()) return;
  const ImGuiStyle& style = ImGui::GetStyle();
  const char* const subtitle = "medical image classifiers, in your browser";
  const float badges_width = badge_size(kLocalBadge).x + style.ItemSpacing.x + badge_size(kNotDiagnosticBadge).x;
  const float badges_x = ImGui::GetWindowWidth() - badges_width - style.WindowPadding.x;

  ImGui::Text("Loupe");
  // The subtitle is the first thing to go on a narrow window; the badges never go.
  ImGui::SameLine();
  if (ImGui::GetCursorPosX() + ImGui::CalcTextSize(subtitle).x + style.ItemSpacing.x < badges_x) {
    ImGui::TextColored(colours::dim, "%s", subtitle);
    ImGui::SameLine();
  }
  ImGui::SetCursorPosX(std::max(ImGui::GetCursorPosX(), badges_x));
  draw_badge(kLocalBadge, colours::local);
  if (ImGui::IsItemHovered()) {
    ImGui::SetTooltip(
        "Images and models are opened from this device and processed inside this tab.\n"
        "The page's Content-Security-Policy forbids connections to any other origin.");
  }
  ImGui::SameLine();
  draw_badge(kNotDiagnosticBadge, colours::caution);
  if (ImGui::IsItemHovered()) {
    ImGui::SetTooltip("For research and education. Not for clinical decisions.");
  }
  ImGui::EndMainMenuBar();
}

// Two-column key/value rows inside a sidebar section.
static bool begin_facts(const char* id) {
  if (!ImGui::BeginTable(id, 2, ImGuiTableFlags_SizingFixedFit)) return false;
  ImGui::TableSetupColumn("key", ImGuiTableColumnFlags_WidthFixed, 96.0f);
  ImGui::TableSetupColumn("value", ImGuiTableColumnFlags_WidthStretch);
  return true;
}

static void fact_key(const char* key) {
  ImGui::TableNextRow();
  ImGui::TableNextColumn();
  ImGui::TextColored(colours::dim, "%s", key);
  ImGui::TableNextColumn();
}

static void section_title(const char* title) {
  ImGui::Spacing();
  ImGui::Text("%s", title);
  ImGui::Separator();
}

static void draw_runtime_section(const AppState& app) {
  section_title("ONNX Runtime Web");
  if (!begin_facts("ort")) return;
  fact_key("Status");
  switch (app.ort.status) {
    case OrtStatus::loading: {
      static const char* const dots[] = {"", ".", "..", "..."};
      ImGui::Text("Loading%s", dots[(app.frames / 20) % 4]);
      break;
    }
    case OrtStatus::ready: ImGui::TextColored(colours::local, "Ready"); break;
    case OrtStatus::failed: ImGui::TextColored(colours::error, "Failed to load"); break;
  }
  if (app.ort.status == OrtStatus::ready) {
    fact_key("Version");
    ImGui::Text("%s", app.ort.version.c_str());
    fact_key("Backend");
    ImGui::Text("wasm, SIMD");
    fact_key("Threads");
    if (app.ort.threads > 1) {
      ImGui::Text("%d", app.ort.threads);
    } else {
      ImGui::TextColored(colours::caution, "%d (single-threaded)", app.ort.threads);
    }
  }
  ImGui::EndTable();
  if (app.ort.status == OrtStatus::failed) {
    ImGui::PushStyleColor(ImGuiCol_Text, colours::error);
    ImGui::TextWrapped("%s", app.ort.error.c_str());
    ImGui::PopStyleColor();
  }
}

static void draw_browser_section(const AppState& app) {
  section_title("Browser");
  if (!begin_facts("browser")) return;
  fact_key("Isolated");
  if (app.page.cross_origin_isolated) {
    ImGui::TextColored(colours::local, "Yes (threads available)");
  } else {
    ImGui::TextColored(colours::caution, "No");
  }
  fact_key("CPU cores");
  ImGui::Text("%d", app.page.hardware_concurrency);
  fact_key("Canvas");
  ImGui::Text("%d x %d px @ %.2gx", app.canvas_width, app.canvas_height, app.pixel_ratio);
  ImGui::EndTable();
  if (!app.page.cross_origin_isolated) {
    ImGui::PushStyleColor(ImGuiCol_Text, colours::caution);
    ImGui::TextWrapped(
        "Without cross-origin isolation ORT runs on one thread. Serve the page with "
        "scripts/serve, which sends the COOP/COEP headers.");
    ImGui::PopStyleColor();
  }
}

static void draw_build_section(const AppState& app) {
  section_title("Build");
  if (!begin_facts("build")) return;
  fact_key("Loupe");
  ImGui::Text("%s (%s)", app.build.loupe_version.c_str(), app.build.target.c_str());
  fact_key("OpenCV");
  ImGui::Text("%s", app.build.opencv_version.c_str());
  fact_key("Compiler");
  ImGui::TextWrapped("%s", app.build.compiler.c_str());
  fact_key("ImGui");
  ImGui::Text("%s", IMGUI_VERSION);
  ImGui::EndTable();
}

// Centred while it fits, wrapped when the window is narrow.
static void centered_text(const char* text, const ImVec4& colour) {
  const float width = ImGui::GetContentRegionAvail().x;
  const float text_width = ImGui::CalcTextSize(text).x;
  if (text_width < width) ImGui::SetCursorPosX(ImGui::GetCursorPosX() + (width - text_width) * 0.5f);
  ImGui::PushStyleColor(ImGuiCol_Text, colour);
  ImGui::TextWrapped("%s", text);
  ImGui::PopStyleColor();
}

static void draw_workspace() {
  const float line = ImGui::GetTextLineHeightWithSpacing();
  ImGui::SetCursorPosY(ImGui::GetCursorPosY() + (ImGui::GetContentRegionAvail().y - 2.0f * line) * 0.5f);
  centered_text("No model loaded", ImGui::GetStyle().Colors[ImGuiCol_Text]);
  centered_text("Models (.onnx) and images are opened from this device and never uploaded.", colours::dim);
}

static void draw_app(const AppState& app) {
  draw_menu_bar();

  // One undecorated window covering the rest of the page: sidebar | workspace, footer below.
  const ImGuiViewport* viewport = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(viewport->WorkPos);
  ImGui::SetNextWindowSize(viewport->WorkSize);
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove |
                                 ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;
  ImGui::Begin("Loupe", nullptr, flags);
  const char* const footer =
      "Research and education use only. Not a diagnostic device: do not use its output for clinical decisions.";
  const ImGuiStyle& style = ImGui::GetStyle();
  const float footer_height =
      ImGui::CalcTextSize(footer, nullptr, false, ImGui::GetContentRegionAvail().x).y + 2.0f * style.ItemSpacing.y;

  ImGui::BeginChild("sidebar", {320.0f, -footer_height}, true);
  draw_runtime_section(app);
  draw_browser_section(app);
  draw_build_section(app);
  ImGui::EndChild();

  ImGui::SameLine();
  ImGui::BeginChild("workspace", {0.0f, -footer_height}, true);
  draw_workspace();
  ImGui::EndChild();

  ImGui::PushStyleColor(ImGuiCol_Text, colours::dim);
  ImGui::TextWrapped("%s", footer);
  ImGui::PopStyleColor();
  ImGui::End();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Frame loop
//-----------------------------------------------------------------------------------------------

// Platform objects: not app state, nothing draws from them.
struct Platform {
  GLFWwindow* window = nullptr;
  double font_pixel_ratio = 0;  // the ratio the font atlas was rasterised for
};
static Platform g_platform;

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

// ImGui works in CSS pixels; the font is rasterised at device resolution and scaled back, so text
// stays sharp at any devicePixelRatio.
static void rebuild_fonts_for(double pixel_ratio) {
  ImGuiIO& io = ImGui::GetIO();
  io.Fonts->Clear();
  ImFontConfig config;
  config.SizePixels = std::round(13.0f * static_cast<float>(pixel_ratio));
  io.Fonts->AddFontDefault(&config);
  io.FontGlobalScale = 1.0f / static_cast<float>(pixel_ratio);
  ImGui_ImplOpenGL3_DestroyFontsTexture();
  ImGui_ImplOpenGL3_CreateFontsTexture();
  g_platform.font_pixel_ratio = pixel_ratio;
}

// Emscripten's GLFW reports sizes and the mouse in device pixels; turn them into CSS pixels.
static void use_css_pixels(double pixel_ratio) {
  ImGuiIO& io = ImGui::GetIO();
  const float ratio = static_cast<float>(pixel_ratio);
  io.DisplaySize = {io.DisplaySize.x / ratio, io.DisplaySize.y / ratio};
  io.DisplayFramebufferScale = {ratio, ratio};
  if (ImGui::IsMousePosValid(&io.MousePos)) io.MousePos = {io.MousePos.x / ratio, io.MousePos.y / ratio};
}

static void frame() {
  AppState& app = g_app;
  fit_canvas_to_window(app);
  if (app.pixel_ratio != g_platform.font_pixel_ratio) rebuild_fonts_for(app.pixel_ratio);

  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  use_css_pixels(app.pixel_ratio);
  ImGui::NewFrame();
  draw_app(app);
  ImGui::Render();

  glViewport(0, 0, app.canvas_width, app.canvas_height);
  const ImVec4 background = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];
  glClearColor(background.x, background.y, background.z, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

  if (app.frames++ == 0) loupe_web::page_hide_loading_overlay();
  loupe_web::page_publish_state(to_json(app).dump());
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Callbacks from JavaScript (see ort_bridge.h)
//-----------------------------------------------------------------------------------------------

extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_ort_status(int status, const char* version, int threads,
                                                         const char* error) {
  OrtRuntime& ort = g_app.ort;
  ort.status = static_cast<OrtStatus>(status);
  ort.version = version ? version : "";
  ort.threads = threads;
  ort.error = error ? error : "";
}

//-----------------------------------------------------------------------------------------------
// [SECTION] main
//-----------------------------------------------------------------------------------------------

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
}

int main() {
  // WebGL2 is OpenGL ES 3.0. The size is provisional: the first frame fits the canvas to the window.
  if (glfwInit()) {
    glfwWindowHint(GLFW_CLIENT_API, GLFW_OPENGL_ES_API);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    g_platform.window = glfwCreateWindow(1280, 720, "Loupe", nullptr, nullptr);
  }
  if (!g_platform.window) {
    loupe_web::page_show_fatal_error(
        "WebGL 2 is not available in this browser (is WebGL or hardware acceleration turned off?)");
    return 1;
  }
  glfwMakeContextCurrent(g_platform.window);

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // no file system to save window positions to
  set_style();
  ImGui_ImplGlfw_InitForOpenGL(g_platform.window, true);
  ImGui_ImplOpenGL3_Init("#version 300 es");

  g_app.build = loupe::build_info();
  g_app.page = loupe_web::page_info();
  loupe_web::ort_bridge_load();

  // The browser owns the loop: frame() runs on every requestAnimationFrame. `true` unwinds main()
  // here (Emscripten's "simulate infinite loop"), so nothing after this line runs.
  emscripten_set_main_loop(frame, 0, true);
  return 0;
}
