// Loupe in the browser: a Dear ImGui page over loupe::core, drawn on WebGL2.
//
// Everything the page shows lives in one AppState. Three things write it: the frame loop (frame
// counter, canvas size, textures), callbacks the JS side calls between frames (ORT status, files
// added, file bytes read), and the UiActions that draw_app() returns, applied after each frame.
// draw_app() reads the state and nothing else, and the state is mirrored to `window.loupe.state`
// every frame so the browser tests can check what is on screen without reading pixels.
//
// Index:
//   [SECTION] App state
//   [SECTION] Drawing
//   [SECTION] Applying UI actions; reading files one at a time
//   [SECTION] Frame loop (canvas size, device pixel ratio, fonts, the image texture)
//   [SECTION] Callbacks from JavaScript
//   [SECTION] main

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <GLES3/gl3.h>
#include <GLFW/glfw3.h>
#include <emscripten.h>
#include <emscripten/heap.h>
#include <nlohmann/json.hpp>

#include "imgui.h"
#include "imgui_impl_glfw.h"
#include "imgui_impl_opengl3.h"
#include "image_batch.h"
#include "image_files.h"
#include "loupe/image.h"
#include "loupe/version.h"
#include "ort_bridge.h"
#include "page.h"

using loupe_web::Column;
using loupe_web::EntryStatus;
using loupe_web::ImageEntry;
using loupe_web::OrtStatus;
using loupe_web::WindowLevel;

//-----------------------------------------------------------------------------------------------
// [SECTION] App state
//-----------------------------------------------------------------------------------------------

struct OrtRuntime {
  OrtStatus status = OrtStatus::loading;
  std::string version;  // ONNX Runtime Web's, e.g. "1.30.0"
  int threads = 0;      // wasm threads its sessions use (1 when the page is not cross-origin isolated)
  std::string error;    // why loading failed
};

// The selected image, decoded: the only full-resolution pixels the app holds.
struct ImageView {
  int entry = -1;           // index into AppState::images; -1 while nothing is decoded
  loupe::Image image;
  WindowLevel window;       // display only (gray images)
  WindowLevel auto_window;  // the image's own min..max: what "Reset" returns to
  float zoom = 1.0f;        // 1 = fit the panel
  float pan_x = 0, pan_y = 0;  // offset of the image centre from the panel centre, CSS px
  unsigned texture = 0;     // GL texture (RGBA8) of the image as displayed
  int texture_width = 0, texture_height = 0;
  bool texture_dirty = false;  // the pixels or the window changed: upload before drawing
};

// A file read in flight. A few run at once so the browser's file reads overlap decoding (one at a
// time, a batch would advance by one file per frame); only these few files' bytes are in memory.
struct FileRead {
  int request = 0;
  int entry = -1;
};
constexpr size_t kMaxReadsInFlight = 8;

struct AppState {
  loupe::BuildInfo build;
  loupe_web::PageInfo page;
  OrtRuntime ort;
  std::vector<ImageEntry> images;  // every file opened, in the order added
  loupe_web::TableView table;
  int selected = -1;               // index into images
  bool scroll_to_selected = false; // keyboard moved the selection: bring it into view this frame
  long images_revision = 0;        // bumped when images or the table view change (test hook)
  size_t scan_cursor = 0;          // images before this one are no longer pending
  std::vector<FileRead> reads;  // in flight, at most kMaxReadsInFlight
  int next_request = 1;
  ImageView view;
  int max_texture_side = 4096;
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

static nlohmann::json images_json(const AppState& app, bool with_list) {
  int ok = 0, failed = 0;
  for (const ImageEntry& entry : app.images) {
    ok += entry.status == EntryStatus::ok;
    failed += entry.status == EntryStatus::error;
  }
  const ImageView& view = app.view;
  nlohmann::json json = {
      {"count", app.images.size()},
      {"ok", ok},
      {"failed", failed},
      {"pending", static_cast<int>(app.images.size()) - ok - failed},
      {"revision", app.images_revision},
      {"selected", app.selected},
      {"selectedPath", app.selected >= 0 ? app.images[static_cast<size_t>(app.selected)].path : ""},
      {"table", {{"filter", app.table.filter}, {"sortColumn", static_cast<int>(app.table.sort_column)},
                 {"ascending", app.table.ascending}}},
      {"view", {{"entry", view.entry}, {"width", view.image.width}, {"height", view.image.height},
                {"channels", view.image.channels}, {"bits", view.image.depth == loupe::PixelDepth::U16 ? 16 : 8},
                {"zoom", view.zoom}, {"pan", {view.pan_x, view.pan_y}},
                {"window", {{"width", view.window.width}, {"level", view.window.level}}},
                {"texture", {{"width", view.texture_width}, {"height", view.texture_height}}}}},
  };
  // The list can hold thousands of entries: it is sent only when it changed (page.cpp keeps the
  // previous one otherwise).
  if (with_list) {
    nlohmann::json list = nlohmann::json::array();
    for (const ImageEntry& entry : app.images) {
      list.push_back({{"name", entry.name}, {"path", entry.path}, {"size", entry.size_bytes},
                      {"status", loupe_web::status_text(entry)}, {"ok", entry.status == EntryStatus::ok},
                      {"width", entry.width}, {"height", entry.height}, {"channels", entry.channels},
                      {"bits", entry.bits}});
    }
    json["list"] = std::move(list);
    json["rows"] = loupe_web::visible_rows(app.images, app.table);
  }
  return json;
}

// The test hook's shape: window.loupe.state. Keep keys stable, tests depend on them.
static nlohmann::json to_json(const AppState& app, bool with_image_list) {
  return {
      {"images", images_json(app, with_image_list)},
      // The wasm heap only grows: its size is the app's peak memory (JS-side File handles aside).
      {"memory", {{"heapBytes", emscripten_get_heap_size()}}},
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

// What the user did this frame. draw_app() only reads AppState; the frame loop applies these.
struct UiActions {
  bool open_files = false, open_folder = false;
  int select = -1;  // an entry clicked in the table
  int step = 0;     // keyboard (see on_key): rows to move in the table as shown, + down, - up
  std::optional<std::string> filter;
  std::optional<std::pair<Column, bool>> sort;  // column, ascending
  float zoom_factor = 1.0f;
  float zoom_anchor_x = 0, zoom_anchor_y = 0;  // cursor relative to the panel centre
  float pan_dx = 0, pan_dy = 0;
  std::optional<WindowLevel> window;
  bool reset_view = false;
};

static std::string human_size(double bytes) {
  char text[32];
  if (bytes < 1024) std::snprintf(text, sizeof text, "%.0f B", bytes);
  else if (bytes < 1024 * 1024) std::snprintf(text, sizeof text, "%.1f KB", bytes / 1024);
  else std::snprintf(text, sizeof text, "%.1f MB", bytes / (1024 * 1024));
  return text;
}

static void draw_open_buttons(UiActions& actions) {
  if (ImGui::Button("Open images...")) actions.open_files = true;
  ImGui::SameLine();
  if (ImGui::Button("Open folder...")) actions.open_folder = true;
}

static void draw_empty_workspace(UiActions& actions) {
  const float line = ImGui::GetTextLineHeightWithSpacing();
  ImGui::SetCursorPosY(ImGui::GetCursorPosY() + (ImGui::GetContentRegionAvail().y - 4.0f * line) * 0.5f);
  centered_text("No images opened (and no model loaded yet)", ImGui::GetStyle().Colors[ImGuiCol_Text]);
  centered_text("Open images or a folder, or drop them onto the page. They are read inside this tab, never uploaded.",
                colours::dim);
  const float buttons = ImGui::CalcTextSize("Open images...Open folder...").x + 4.0f * ImGui::GetStyle().FramePadding.x +
                        ImGui::GetStyle().ItemSpacing.x;
  ImGui::SetCursorPosX(ImGui::GetCursorPosX() + std::max(0.0f, (ImGui::GetContentRegionAvail().x - buttons) * 0.5f));
  draw_open_buttons(actions);
}

static void draw_batch_table(const AppState& app, UiActions& actions) {
  char filter[256];
  std::snprintf(filter, sizeof filter, "%s", app.table.filter.c_str());
  ImGui::SetNextItemWidth(-1.0f);
  if (ImGui::InputTextWithHint("##filter", "Filter by path or status", filter, sizeof filter)) actions.filter = filter;

  const ImGuiTableFlags flags = ImGuiTableFlags_Sortable | ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY |
                                ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_Resizable | ImGuiTableFlags_SizingFixedFit;
  if (!ImGui::BeginTable("batch", 4, flags)) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("Name", ImGuiTableColumnFlags_WidthStretch | ImGuiTableColumnFlags_DefaultSort, 1.0f,
                          static_cast<ImGuiID>(Column::name));
  ImGui::TableSetupColumn("Size", ImGuiTableColumnFlags_WidthFixed, 64.0f, static_cast<ImGuiID>(Column::size));
  ImGui::TableSetupColumn("Pixels", ImGuiTableColumnFlags_WidthFixed, 76.0f, static_cast<ImGuiID>(Column::dimensions));
  ImGui::TableSetupColumn("Status", ImGuiTableColumnFlags_WidthStretch, 0.9f, static_cast<ImGuiID>(Column::status));
  ImGui::TableHeadersRow();
  if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs(); specs && specs->SpecsDirty) {
    if (specs->SpecsCount > 0) {
      const ImGuiTableColumnSortSpecs& spec = specs->Specs[0];
      actions.sort = {static_cast<Column>(spec.ColumnUserID), spec.SortDirection != ImGuiSortDirection_Descending};
    }
    specs->SpecsDirty = false;  // ImGui's own flag: the request is in `actions` now
  }

  const std::vector<int> rows = loupe_web::visible_rows(app.images, app.table);
  const auto selected_row = std::find(rows.begin(), rows.end(), app.selected);
  ImGuiListClipper clipper;
  clipper.Begin(static_cast<int>(rows.size()));
  if (app.scroll_to_selected && selected_row != rows.end()) {
    const int at = static_cast<int>(selected_row - rows.begin());
    clipper.ForceDisplayRangeByIndices(at, at + 1);
  }
  while (clipper.Step()) {
    for (int row = clipper.DisplayStart; row < clipper.DisplayEnd; ++row) {
      const int index = rows[static_cast<size_t>(row)];
      const ImageEntry& entry = app.images[static_cast<size_t>(index)];
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::PushID(index);
      if (ImGui::Selectable(entry.path.c_str(), index == app.selected, ImGuiSelectableFlags_SpanAllColumns)) {
        actions.select = index;
      }
      if (index == app.selected && app.scroll_to_selected) ImGui::SetScrollHereY(0.5f);
      if (ImGui::IsItemHovered() && entry.status == EntryStatus::error) ImGui::SetTooltip("%s", entry.error.c_str());
      ImGui::PopID();
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(human_size(entry.size_bytes).c_str());
      ImGui::TableNextColumn();
      if (entry.width > 0) ImGui::Text("%dx%d", entry.width, entry.height);
      ImGui::TableNextColumn();
      const std::string status = loupe_web::status_text(entry);
      const ImVec4 colour = entry.status == EntryStatus::ok      ? colours::local
                            : entry.status == EntryStatus::error ? colours::error
                                                                 : colours::dim;
      ImGui::TextColored(colour, "%s", status.c_str());
      if (ImGui::IsItemHovered() && entry.status == EntryStatus::error) ImGui::SetTooltip("%s", entry.error.c_str());
    }
  }
  ImGui::EndTable();
}

static void draw_viewer(const AppState& app, UiActions& actions) {
  if (app.selected < 0) return;
  const ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
  ImGui::TextUnformatted(entry.path.c_str());
  if (entry.status == EntryStatus::error) {
    ImGui::PushStyleColor(ImGuiCol_Text, colours::error);
    ImGui::TextWrapped("Cannot open this file: %s", entry.error.c_str());
    ImGui::PopStyleColor();
    return;
  }
  const ImageView& view = app.view;
  if (view.entry != app.selected || view.texture == 0) {
    ImGui::TextColored(colours::dim, "Decoding...");
    return;
  }
  const loupe::Image& image = view.image;
  ImGui::TextColored(colours::dim, "%dx%d, %s, %d-bit, %.0f%%", image.width, image.height,
                     image.channels == 1 ? "gray" : image.channels == 3 ? "RGB" : "RGBA",
                     image.depth == loupe::PixelDepth::U16 ? 16 : 8, view.zoom * 100.0f);
  if (image.channels == 1) {
    // Both sliders share what the labels and the reset button leave of the line.
    const ImGuiStyle& style = ImGui::GetStyle();
    const float fixed = ImGui::CalcTextSize("WindowLevelReset view").x + 2.0f * style.FramePadding.x +
                        2.0f * style.ItemInnerSpacing.x + 2.0f * style.ItemSpacing.x;
    const float slider_width = std::max(60.0f, (ImGui::GetContentRegionAvail().x - fixed) * 0.5f);
    WindowLevel window = view.window;
    ImGui::SetNextItemWidth(slider_width);
    bool changed = ImGui::SliderFloat("Window", &window.width, 0.002f, 1.0f, "%.3f");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(slider_width);
    changed |= ImGui::SliderFloat("Level", &window.level, 0.0f, 1.0f, "%.3f");
    if (changed) actions.window = window;
    ImGui::SameLine();
  }
  if (ImGui::Button("Reset view")) actions.reset_view = true;
  if (ImGui::IsItemHovered()) {
    ImGui::SetTooltip("Fit the image and restore its own window/level.\n"
                      "Wheel: zoom. Drag: pan. Up/down or j/k: previous/next image.");
  }

  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  if (avail.x < 8.0f || avail.y < 8.0f) return;
  ImGui::InvisibleButton("image", avail);
  const ImGuiIO& io = ImGui::GetIO();
  const ImVec2 centre{origin.x + avail.x * 0.5f, origin.y + avail.y * 0.5f};
  if (ImGui::IsItemActive() && ImGui::IsMouseDragging(ImGuiMouseButton_Left, 0.0f)) {
    actions.pan_dx = io.MouseDelta.x;
    actions.pan_dy = io.MouseDelta.y;
  }
  if (ImGui::IsItemHovered() && io.MouseWheel != 0.0f) {
    // Emscripten 3.1.6's GLFW passes the DOM's deltaY as is: pixels (about 100 a notch), positive
    // when scrolling down. Scrolling up zooms in, 20% a notch.
    actions.zoom_factor = std::pow(1.2f, std::clamp(-io.MouseWheel / 100.0f, -5.0f, 5.0f));
    actions.zoom_anchor_x = io.MousePos.x - centre.x;
    actions.zoom_anchor_y = io.MousePos.y - centre.y;
  }
  const float fit = std::min(avail.x / static_cast<float>(image.width), avail.y / static_cast<float>(image.height));
  const float half_w = static_cast<float>(image.width) * fit * view.zoom * 0.5f;
  const float half_h = static_cast<float>(image.height) * fit * view.zoom * 0.5f;
  const ImVec2 mid{centre.x + view.pan_x, centre.y + view.pan_y};
  ImDrawList* draw_list = ImGui::GetWindowDrawList();
  draw_list->PushClipRect(origin, {origin.x + avail.x, origin.y + avail.y}, true);
  draw_list->AddRectFilled(origin, {origin.x + avail.x, origin.y + avail.y}, IM_COL32(0, 0, 0, 255));
  draw_list->AddImage(reinterpret_cast<ImTextureID>(static_cast<intptr_t>(view.texture)),
                      {mid.x - half_w, mid.y - half_h}, {mid.x + half_w, mid.y + half_h});
  draw_list->PopClipRect();
}

static void draw_workspace(const AppState& app, UiActions& actions) {
  if (app.images.empty()) {
    draw_empty_workspace(actions);
    return;
  }
  draw_open_buttons(actions);
  ImGui::SameLine();
  int ok = 0, failed = 0;
  for (const ImageEntry& entry : app.images) {
    ok += entry.status == EntryStatus::ok;
    failed += entry.status == EntryStatus::error;
  }
  const int pending = static_cast<int>(app.images.size()) - ok - failed;
  ImGui::TextColored(colours::dim, "%zu files: %d ok, %d failed%s", app.images.size(), ok, failed,
                     pending > 0 ? ", reading..." : "");
  if (pending > 0) {
    ImGui::SameLine();
    const float done = static_cast<float>(ok + failed) / static_cast<float>(app.images.size());
    ImGui::ProgressBar(done, {-1.0f, 0.0f});
  }

  const float table_width = std::min(520.0f, ImGui::GetContentRegionAvail().x * 0.55f);
  ImGui::BeginChild("batch", {table_width, 0.0f}, false);
  draw_batch_table(app, actions);
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("viewer", {0.0f, 0.0f}, false, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  draw_viewer(app, actions);
  ImGui::EndChild();
}

static void draw_app(const AppState& app, UiActions& actions) {
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
  draw_workspace(app, actions);
  ImGui::EndChild();

  ImGui::PushStyleColor(ImGuiCol_Text, colours::dim);
  ImGui::TextWrapped("%s", footer);
  ImGui::PopStyleColor();
  ImGui::End();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Applying UI actions; reading files one at a time
//-----------------------------------------------------------------------------------------------

static bool reading(const AppState& app, int entry) {
  return std::any_of(app.reads.begin(), app.reads.end(), [&](const FileRead& read) { return read.entry == entry; });
}

// Asks JS for the next files to decode, up to kMaxReadsInFlight: the selected image first when its
// pixels are not held, then the pending entries of the batch in order. Called after every change.
static void pump_reads(AppState& app) {
  while (app.reads.size() < kMaxReadsInFlight) {
    int entry = -1;
    if (app.selected >= 0 && app.view.entry != app.selected &&
        app.images[static_cast<size_t>(app.selected)].status != EntryStatus::error && !reading(app, app.selected)) {
      entry = app.selected;
    } else {
      while (app.scan_cursor < app.images.size() && app.images[app.scan_cursor].status != EntryStatus::pending) {
        ++app.scan_cursor;
      }
      if (app.scan_cursor < app.images.size()) entry = static_cast<int>(app.scan_cursor);
    }
    if (entry < 0) return;
    ImageEntry& image = app.images[static_cast<size_t>(entry)];
    if (image.status == EntryStatus::pending) {
      image.status = EntryStatus::reading;
      ++app.images_revision;
    }
    const FileRead read{app.next_request++, entry};
    app.reads.push_back(read);
    loupe_web::image_files_read(read.request, image.file_index);
  }
}

static void select_entry(AppState& app, int entry) {
  if (entry == app.selected) return;
  app.selected = entry;
  // Only one full image is held: drop the previous one now, not when the next one arrives.
  app.view.entry = -1;
  app.view.image = loupe::Image{};
  app.view.zoom = 1.0f;
  app.view.pan_x = app.view.pan_y = 0.0f;
  pump_reads(app);
}

static void apply(AppState& app, const UiActions& actions) {
  if (actions.open_files) loupe_web::image_files_open_picker(false);
  if (actions.open_folder) loupe_web::image_files_open_picker(true);
  if (actions.filter) {
    app.table.filter = *actions.filter;
    ++app.images_revision;
  }
  if (actions.sort) {
    app.table.sort_column = actions.sort->first;
    app.table.ascending = actions.sort->second;
    ++app.images_revision;
  }
  if (actions.select >= 0) select_entry(app, actions.select);
  if (actions.step != 0) {
    const std::vector<int> rows = loupe_web::visible_rows(app.images, app.table);
    if (!rows.empty()) {
      const auto at = std::find(rows.begin(), rows.end(), app.selected);
      long position = at == rows.end() ? 0 : (at - rows.begin()) + actions.step;
      position = std::clamp(position, 0L, static_cast<long>(rows.size()) - 1);
      select_entry(app, rows[static_cast<size_t>(position)]);
      app.scroll_to_selected = true;
    }
  }
  ImageView& view = app.view;
  if (actions.zoom_factor != 1.0f) {
    const float zoom = std::clamp(view.zoom * actions.zoom_factor, 0.1f, 64.0f);
    const float ratio = zoom / view.zoom;
    // Keep the point under the cursor where it is.
    view.pan_x = actions.zoom_anchor_x - (actions.zoom_anchor_x - view.pan_x) * ratio;
    view.pan_y = actions.zoom_anchor_y - (actions.zoom_anchor_y - view.pan_y) * ratio;
    view.zoom = zoom;
  }
  view.pan_x += actions.pan_dx;
  view.pan_y += actions.pan_dy;
  if (actions.window) {
    view.window = *actions.window;
    view.texture_dirty = true;
  }
  if (actions.reset_view) {
    view.zoom = 1.0f;
    view.pan_x = view.pan_y = 0.0f;
    view.window = view.auto_window;
    view.texture_dirty = true;
  }
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Frame loop
//-----------------------------------------------------------------------------------------------

// Platform objects: not app state, nothing draws from them.
struct Platform {
  GLFWwindow* window = nullptr;
  double font_pixel_ratio = 0;  // the ratio the font atlas was rasterised for
  GLFWkeyfun imgui_key_callback = nullptr;
  int key_steps = 0;  // next/previous presses since the last frame
};
static Platform g_platform;

// Next/previous image keys, counted as they arrive. ImGui 1.86 only sees which keys are down at
// each frame, so a press and release between two frames (a quick tap, a test's keyboard.press)
// would be lost; counting presses in the GLFW callback keeps every one.
static void on_key(GLFWwindow* window, int key, int scancode, int action, int mods) {
  if (g_platform.imgui_key_callback) g_platform.imgui_key_callback(window, key, scancode, action, mods);
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

// The viewed image as an RGBA8 texture, through the window/level (display only).
static void upload_view_texture(ImageView& view, int max_side) {
  view.texture_dirty = false;
  if (view.entry < 0 || view.image.empty()) return;
  int width = 0, height = 0;
  const std::vector<uint8_t> rgba = loupe_web::display_rgba(view.image, view.window, max_side, width, height);
  if (view.texture == 0) {
    GLuint texture = 0;
    glGenTextures(1, &texture);
    view.texture = texture;
  }
  glBindTexture(GL_TEXTURE_2D, view.texture);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
  glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, width, height, 0, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
  glBindTexture(GL_TEXTURE_2D, 0);
  view.texture_width = width;
  view.texture_height = height;
}

static void frame() {
  AppState& app = g_app;
  fit_canvas_to_window(app);
  if (app.pixel_ratio != g_platform.font_pixel_ratio) rebuild_fonts_for(app.pixel_ratio);

  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  use_css_pixels(app.pixel_ratio);
  if (app.view.texture_dirty) upload_view_texture(app.view, app.max_texture_side);
  ImGui::NewFrame();
  UiActions actions;
  draw_app(app, actions);
  ImGui::Render();
  // Keys move the selection unless the user is typing (the filter box).
  if (!ImGui::GetIO().WantTextInput) actions.step = g_platform.key_steps;
  g_platform.key_steps = 0;
  app.scroll_to_selected = false;
  apply(app, actions);

  glViewport(0, 0, app.canvas_width, app.canvas_height);
  const ImVec4 background = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];
  glClearColor(background.x, background.y, background.z, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

  if (app.frames++ == 0) loupe_web::page_hide_loading_overlay();
  // The image list changes with every file decoded; while a batch streams, send it twice a second
  // (JSON of thousands of entries every frame would slow the batch down), then once when it settles.
  static long published_revision = -1;
  const bool streaming = !app.reads.empty();
  const bool with_list = published_revision != app.images_revision && (!streaming || app.frames % 30 == 0);
  if (with_list) published_revision = app.images_revision;
  loupe_web::page_publish_state(to_json(app, with_list).dump());
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

// A file was opened (picker, folder or drop). Only its name and size: bytes come when it is read.
extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_image_file_added(int file_index, const char* name, const char* path,
                                                               double size) {
  AppState& app = g_app;
  ImageEntry entry;
  entry.file_index = file_index;
  entry.name = name ? name : "";
  entry.path = path && *path ? path : entry.name;
  entry.size_bytes = size;
  app.images.push_back(std::move(entry));
  ++app.images_revision;
  if (app.selected < 0) select_entry(app, static_cast<int>(app.images.size()) - 1);
  pump_reads(app);
}

// The bytes of the file in flight: decode them with the shared core, keep the metadata, and keep
// the pixels only when this is the selected image.
extern "C" EMSCRIPTEN_KEEPALIVE void loupe_on_image_file_read(int request, unsigned char* bytes, int size,
                                                              const char* error) {
  std::unique_ptr<unsigned char, void (*)(void*)> owned(bytes, std::free);
  AppState& app = g_app;
  const auto read = std::find_if(app.reads.begin(), app.reads.end(),
                                 [&](const FileRead& r) { return r.request == request; });
  if (read == app.reads.end()) return;
  const int index = read->entry;
  app.reads.erase(read);
  ImageEntry& entry = app.images[static_cast<size_t>(index)];
  ++app.images_revision;
  if (!bytes) {
    entry.status = EntryStatus::error;
    entry.error = std::string("could not read the file: ") + (error ? error : "unknown error");
  } else {
    try {
      loupe::Image image = loupe::decode_image(bytes, static_cast<size_t>(std::max(size, 0)));
      owned.reset();  // the file's bytes are not needed once decoded
      entry.status = EntryStatus::ok;
      entry.error.clear();
      entry.width = image.width;
      entry.height = image.height;
      entry.channels = image.channels;
      entry.bits = image.depth == loupe::PixelDepth::U16 ? 16 : 8;
      if (index == app.selected) {
        ImageView& view = app.view;
        view.entry = index;
        view.auto_window = loupe_web::auto_window(image);
        view.window = view.auto_window;
        view.image = std::move(image);
        view.texture_dirty = true;
      }
    } catch (const std::exception& decode_error) {  // loupe::Error, or std::bad_alloc
      entry.status = EntryStatus::error;
      entry.error = decode_error.what();
    }
  }
  pump_reads(app);
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
  g_platform.imgui_key_callback = glfwSetKeyCallback(g_platform.window, on_key);
  ImGui_ImplOpenGL3_Init("#version 300 es");

  g_app.build = loupe::build_info();
  g_app.page = loupe_web::page_info();
  GLint max_texture_side = 0;
  glGetIntegerv(GL_MAX_TEXTURE_SIZE, &max_texture_side);
  g_app.max_texture_side = std::clamp(static_cast<int>(max_texture_side), 256, 4096);
  loupe_web::ort_bridge_load();
  loupe_web::image_files_listen();

  // The browser owns the loop: frame() runs on every requestAnimationFrame. `true` unwinds main()
  // here (Emscripten's "simulate infinite loop"), so nothing after this line runs.
  emscripten_set_main_loop(frame, 0, true);
  return 0;
}
