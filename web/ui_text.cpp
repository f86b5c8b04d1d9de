// Text that is never lost (ui_text.h).
//
// Index:
//   [SECTION] The frame's record
//   [SECTION] Checking an item against where it was drawn
//   [SECTION] Text, shortened text
//   [SECTION] Widgets with checked labels
//   [SECTION] Tooltips beside their item
//   [SECTION] Badges

#include "ui_text.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "imgui_internal.h"  // the current window's clip rectangle: what is really visible

namespace loupe_web::ui {

//-----------------------------------------------------------------------------------------------
// [SECTION] The frame's record
//-----------------------------------------------------------------------------------------------

// Drawing is a function of the state; what it finds goes into the frame's UiActions, like the
// clicks. One frame is drawn at a time, so one pointer is enough.
static UiActions* g_record = nullptr;

FrameRecord::FrameRecord(UiActions& actions) { g_record = &actions; }
FrameRecord::~FrameRecord() { g_record = nullptr; }

static TextFit finding(std::string_view text, float needed, float available) {
  const ImGuiWindow* window = ImGui::GetCurrentWindow();
  TextFit fit;
  fit.window = window ? window->Name : "";
  fit.text = std::string(text.substr(0, 160));
  fit.needed = needed;
  fit.available = available;
  return fit;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Checking an item against where it was drawn
//-----------------------------------------------------------------------------------------------

void check_span(std::string_view text, float x_min, float x_max, float y) {
  const ImGuiWindow* window = ImGui::GetCurrentWindow();
  if (!g_record || !window || window->SkipItems || text.empty()) return;
  const ImRect& clip = window->ClipRect;
  // Rows scrolled out of view are not lost: only what is on screen vertically is checked.
  if (y < clip.Min.y - 1.0f || y > clip.Max.y + 1.0f) return;
  // Half a pixel of slack: layouts round to whole CSS pixels.
  if (x_max > clip.Max.x + 0.5f || x_min < clip.Min.x - 0.5f) {
    g_record->clipped.push_back(finding(text, x_max - x_min, std::max(0.0f, clip.Max.x - std::max(x_min, clip.Min.x))));
  }
}

void check_last_item(std::string_view text) {
  const ImVec2 min = ImGui::GetItemRectMin(), max = ImGui::GetItemRectMax();
  check_span(text, min.x, max.x, (min.y + max.y) * 0.5f);
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Text, shortened text
//-----------------------------------------------------------------------------------------------

void text(std::string_view text) {
  ImGui::TextUnformatted(text.data(), text.data() + text.size());
  check_last_item(text);
}

void text(const ImVec4& colour, std::string_view text_) {
  ImGui::PushStyleColor(ImGuiCol_Text, colour);
  text(text_);
  ImGui::PopStyleColor();
}

void wrapped(const ImVec4& colour, std::string_view text) {
  ImGui::PushStyleColor(ImGuiCol_Text, colour);
  ImGui::PushTextWrapPos(0.0f);
  ImGui::TextUnformatted(text.data(), text.data() + text.size());
  ImGui::PopTextWrapPos();
  ImGui::PopStyleColor();
  check_last_item(text);
}

static float width_of(std::string_view text) {
  return ImGui::CalcTextSize(text.data(), text.data() + text.size()).x;
}

// The byte where the UTF-8 character that contains byte `i` starts.
static size_t char_start(std::string_view text, size_t i) {
  while (i > 0 && i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}

std::string shortened(std::string_view text, float width, Shorten where) {
  if (width_of(text) <= width) return std::string(text);
  static const std::string ellipsis = "\xE2\x80\xA6";  // U+2026
  // The longest cut that fits, by bisection over how many bytes stay.
  size_t lo = 0, hi = text.size();
  const auto candidate = [&](size_t keep) {
    if (where == Shorten::end) return std::string(text.substr(0, char_start(text, keep))) + ellipsis;
    const size_t head = char_start(text, keep / 3);  // a third from the start, the rest from the end
    const size_t tail = char_start(text, text.size() - (keep - keep / 3));
    return std::string(text.substr(0, head)) + ellipsis + std::string(text.substr(std::max(tail, head)));
  };
  while (lo < hi) {
    const size_t mid = (lo + hi + 1) / 2;
    if (width_of(candidate(mid)) <= width) lo = mid;
    else hi = mid - 1;
  }
  return candidate(lo);
}

bool fit(std::string_view text_, Shorten where) {
  const float available = ImGui::GetContentRegionAvail().x;
  if (width_of(text_) <= available) {
    text(text_);
    return false;
  }
  const std::string shown = shortened(text_, available, where);
  ImGui::TextUnformatted(shown.c_str());
  if (g_record) g_record->ellipsised.push_back(finding(text_, width_of(text_), available));
  check_last_item(shown);  // the shortened text itself must fit (it does, unless not even "…" does)
  tooltip(text_);
  return true;
}

bool fit(const ImVec4& colour, std::string_view text, Shorten where) {
  ImGui::PushStyleColor(ImGuiCol_Text, colour);
  const bool cut = fit(text, where);
  ImGui::PopStyleColor();
  return cut;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Widgets with checked labels
//-----------------------------------------------------------------------------------------------

// "label###id": ImGui shows the label and identifies the widget by the id alone.
static std::string labelled(std::string_view label, const char* id) {
  return std::string(label) + "###" + id;
}

bool button(std::string_view label, const char* id) {
  const bool pressed = ImGui::Button(labelled(label, id).c_str());
  check_last_item(label);
  return pressed;
}

bool small_button(std::string_view label, const char* id) {
  const bool pressed = ImGui::SmallButton(labelled(label, id).c_str());
  check_last_item(label);
  return pressed;
}

bool checkbox(std::string_view label, const char* id, bool* value) {
  const bool changed = ImGui::Checkbox(labelled(label, id).c_str(), value);
  check_last_item(label);
  return changed;
}

bool slider(std::string_view label, const char* id, float* value, float min, float max, const char* format) {
  const bool changed = ImGui::SliderFloat(labelled(label, id).c_str(), value, min, max, format);
  check_last_item(label);
  return changed;
}

bool tree_node(std::string_view label, const char* id) {
  const bool open = ImGui::TreeNode(labelled(label, id).c_str());
  check_last_item(label);
  return open;
}

bool begin_combo(const char* id, std::string_view preview, float width) {
  ImGui::SetNextItemWidth(width);
  const ImGuiStyle& style = ImGui::GetStyle();
  const float room = ImGui::CalcItemWidth() - ImGui::GetFrameHeight() - 2.0f * style.FramePadding.x;
  const std::string shown = shortened(preview, room);
  const bool cut = shown.size() != preview.size();
  const bool open = ImGui::BeginCombo(id, shown.c_str());
  if (cut) {
    if (g_record) g_record->ellipsised.push_back(finding(preview, width_of(preview), room));
    if (!open) tooltip(preview);
  }
  check_last_item(shown);
  return open;
}

bool selectable(std::string_view label, const char* id, bool selected) {
  const bool clicked = ImGui::Selectable(labelled(label, id).c_str(), selected);
  check_span(label, ImGui::GetItemRectMin().x, ImGui::GetItemRectMin().x + width_of(label),
             (ImGui::GetItemRectMin().y + ImGui::GetItemRectMax().y) * 0.5f);
  return clicked;
}

void progress_bar(float fraction, float width, std::string_view overlay) {
  const std::string text(overlay);
  ImGui::ProgressBar(fraction, {width, 0.0f}, overlay.empty() ? nullptr : text.c_str());
  if (overlay.empty()) return;
  // The overlay sits inside the bar: it fits when the bar is wider than it.
  const ImVec2 min = ImGui::GetItemRectMin(), max = ImGui::GetItemRectMax();
  const float needed = width_of(overlay) + 2.0f * ImGui::GetStyle().FramePadding.x;
  if (needed > max.x - min.x && g_record) g_record->clipped.push_back(finding(overlay, needed, max.x - min.x));
  check_last_item(overlay);
}

float header_width(std::string_view label) {
  // TableHeader keeps room for the sort arrow beside the label.
  const ImGuiStyle& style = ImGui::GetStyle();
  return width_of(label) + ImGui::GetFontSize() * 0.65f + style.FramePadding.x + style.ItemInnerSpacing.x +
         2.0f * style.CellPadding.x;
}

void table_header(std::string_view label) {
  const float available = ImGui::GetContentRegionAvail().x;
  const std::string text(label);
  ImGui::TableHeader(text.c_str());
  const float needed = header_width(label) - 2.0f * ImGui::GetStyle().CellPadding.x;
  if (needed > available + 0.5f && g_record) {
    // ImGui ellipsises it and shows the label on hover: shortened on purpose, not lost.
    g_record->ellipsised.push_back(finding(label, needed, available));
    tooltip(label);
  }
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Tooltips beside their item
//-----------------------------------------------------------------------------------------------

void tooltip(std::string_view text) {
  if (text.empty()) return;
  // A click on the item hides its tooltip until the mouse leaves it: after "Evaluation" or a row
  // is clicked, what the click showed is not covered by the explanation of the click.
  ImGuiStorage* storage = ImGui::GetStateStorage();
  const ImGuiID clicked_key = ImGui::GetID("##tooltip-clicked");
  const ImVec2 item_min = ImGui::GetItemRectMin(), item_max = ImGui::GetItemRectMax();
  const ImGuiID item_key = ImHashData(&item_min, sizeof item_min, ImHashStr(text.data(), text.size()));
  if (!ImGui::IsItemHovered()) {
    if (static_cast<ImGuiID>(storage->GetInt(clicked_key)) == item_key) storage->SetInt(clicked_key, 0);
    return;
  }
  if (ImGui::IsMouseClicked(ImGuiMouseButton_Left) || ImGui::IsMouseDown(ImGuiMouseButton_Left)) {
    storage->SetInt(clicked_key, static_cast<int>(item_key));
  }
  if (static_cast<ImGuiID>(storage->GetInt(clicked_key)) == item_key) return;

  const ImGuiStyle& style = ImGui::GetStyle();
  const ImGuiViewport* viewport = ImGui::GetMainViewport();
  const float wrap = std::min(ImGui::GetFontSize() * 28.0f, viewport->WorkSize.x - 4.0f * style.WindowPadding.x);
  const ImVec2 text_size = ImGui::CalcTextSize(text.data(), text.data() + text.size(), false, wrap);
  const ImVec2 size{text_size.x + 2.0f * style.WindowPadding.x, text_size.y + 2.0f * style.WindowPadding.y};
  const float gap = 4.0f;
  const float view_min_y = viewport->Pos.y, view_max_y = viewport->Pos.y + viewport->Size.y;
  // Below the item when it fits there, else above it, else beside it.
  ImVec2 pos{item_min.x, item_max.y + gap};
  if (pos.y + size.y > view_max_y) pos.y = item_min.y - gap - size.y;
  if (pos.y < view_min_y) {
    pos.y = std::clamp(item_min.y, view_min_y, std::max(view_min_y, view_max_y - size.y));
    pos.x = item_max.x + gap;
    if (pos.x + size.x > viewport->Pos.x + viewport->Size.x) pos.x = item_min.x - gap - size.x;
  }
  pos.x = std::clamp(pos.x, viewport->Pos.x, std::max(viewport->Pos.x, viewport->Pos.x + viewport->Size.x - size.x));
  ImGui::SetNextWindowPos(pos);
  ImGui::BeginTooltip();
  ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + wrap);
  ImGui::TextUnformatted(text.data(), text.data() + text.size());
  ImGui::PopTextWrapPos();
  ImGui::EndTooltip();
  if (g_record) {
    TooltipPlacement placed;
    placed.text = std::string(text.substr(0, 160));
    placed.item = {item_min.x, item_min.y, item_max.x - item_min.x, item_max.y - item_min.y};
    placed.tooltip = {pos.x, pos.y, size.x, size.y};
    g_record->tooltip = std::move(placed);
  }
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Badges
//-----------------------------------------------------------------------------------------------

float badge_width(std::string_view text) { return width_of(text) + ImGui::GetFontSize() * 1.2f; }

void badge(std::string_view text, const ImVec4& colour) {
  const float pad_x = ImGui::GetFontSize() * 0.6f, pad_y = 2.0f;
  const ImVec2 size{badge_width(text), ImGui::GetTextLineHeight() + 2.0f * pad_y};
  const ImVec2 min = ImGui::GetCursorScreenPos();
  const ImVec2 max{min.x + size.x, min.y + size.y};
  ImDrawList* draw_list = ImGui::GetWindowDrawList();
  const ImVec4 fill{colour.x, colour.y, colour.z, 0.14f};
  draw_list->AddRectFilled(min, max, ImGui::ColorConvertFloat4ToU32(fill), size.y * 0.5f);
  draw_list->AddRect(min, max, ImGui::ColorConvertFloat4ToU32(colour), size.y * 0.5f);
  draw_list->AddText({min.x + pad_x, min.y + pad_y}, ImGui::ColorConvertFloat4ToU32(colour), text.data(),
                     text.data() + text.size());
  ImGui::Dummy(size);
  check_last_item(text);
}

}  // namespace loupe_web::ui
