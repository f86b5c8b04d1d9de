// Text that is never lost: wrappers around the ImGui calls that draw text (labels, cells, buttons,
// headers, tooltips) which check, as they draw, that the text fits the box it is drawn into.
//
//   ui::FrameRecord record(actions);     // once per frame (draw_app): where the findings go
//   ui::text("fits or is reported");     // drawn as is; recorded in actions.clipped if cut off
//   ui::fit(entry.path, ui::Shorten::middle);  // shortened with "..." to fit, full text on hover
//   ui::tooltip("what the last item does");    // beside its item, never over it
//
// A text is *clipped* when the box it is drawn into (the window's, or the table cell's, visible
// width) is narrower than the text: part of it is not on screen and nothing says so. A text that
// is shortened on purpose with an ellipsis and shows its full text on hover is *ellipsised*, not
// clipped. Both lists are published in the test-hook state (state_json.h: frame_ui_json), and the
// browser tests require the clipped list to be empty on every main view at every screen size.
//
// Only the horizontal extent counts: a row scrolled out of a list is not lost, a text that runs
// past the right edge is.
#pragma once

#include <string>
#include <string_view>

#include "app.h"
#include "imgui.h"

namespace loupe_web::ui {

// Routes this frame's findings into `actions` (clipped, ellipsised, tooltip) while it lives.
class FrameRecord {
 public:
  explicit FrameRecord(UiActions& actions);
  ~FrameRecord();
  FrameRecord(const FrameRecord&) = delete;
  FrameRecord& operator=(const FrameRecord&) = delete;
};

// Checks the last item, which shows `text`, against the visible width of where it was drawn.
void check_last_item(std::string_view text);
// The same for text drawn by hand (ImDrawList::AddText) from x_min to x_max, at y (screen).
void check_span(std::string_view text, float x_min, float x_max, float y);

// Text drawn as it is (recorded when clipped).
void text(std::string_view text);
void text(const ImVec4& colour, std::string_view text);
// Wrapped at the window's (or cell's) right edge. ImGui breaks a word longer than a line anywhere,
// so a wrapped text is never clipped; checked all the same.
void wrapped(const ImVec4& colour, std::string_view text);

// Where a shortened text loses its characters: at the end (labels), or in the middle (paths: the
// folder's start and the file name stay).
enum class Shorten { end, middle };
// `text` cut to `width` pixels with an ellipsis (unchanged when it fits).
std::string shortened(std::string_view text, float width, Shorten where = Shorten::end);
// Draws `text` into the rest of the line, shortened when it does not fit; the full text is then a
// tooltip (and an ellipsised entry). Returns true when it had to be shortened.
bool fit(std::string_view text, Shorten where = Shorten::end);
bool fit(const ImVec4& colour, std::string_view text, Shorten where = Shorten::end);

// Widgets whose label is checked. `id` keeps the widget's identity across languages (the label is
// the catalogue's text, the id is not).
bool button(std::string_view label, const char* id);
bool small_button(std::string_view label, const char* id);
bool checkbox(std::string_view label, const char* id, bool* value);
bool slider(std::string_view label, const char* id, float* value, float min, float max, const char* format);
bool tree_node(std::string_view label, const char* id);
// A combo whose closed preview is shortened to its width (full text on hover).
bool begin_combo(const char* id, std::string_view preview, float width);
bool selectable(std::string_view label, const char* id, bool selected);
// A progress bar whose overlay (e.g. "42.0%") must fit inside it.
void progress_bar(float fraction, float width, std::string_view overlay = {});
// A table header cell: ImGui ellipsises a label that does not fit and shows it on hover; recorded
// as ellipsised (the header row of a table sized by header_width() never needs it).
void table_header(std::string_view label);
// The width a table column needs for its header label (and the sort arrow).
float header_width(std::string_view label);

// A tooltip for the last item, shown while it is hovered: placed below it (or above, when there is
// no room below), never over it; not shown again after a click on that item until the mouse leaves
// it. Long texts wrap at about 40 characters.
void tooltip(std::string_view text);

// A badge: a pill-shaped, tinted label at the cursor.
float badge_width(std::string_view text);
void badge(std::string_view text, const ImVec4& colour);

}  // namespace loupe_web::ui
