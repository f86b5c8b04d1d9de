// Drawing "Calibrate for this site" (draw_calibration.h). Every text from the catalogue of the
// page's language, drawn through ui_text.h (the clipped-text detector covers the window); sizes in
// ems, as draw.cpp.
//
// Index:
//   [SECTION] Words and small helpers
//   [SECTION] Reliability diagram
//   [SECTION] Figures: temperature, ECE, NLL
//   [SECTION] Operating points
//   [SECTION] The button and the window

#include "draw_calibration.h"

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <string>
#include <vector>

#include "app_logic.h"
#include "i18n.h"
#include "imgui.h"
#include "loupe/metrics.h"
#include "site_calibration.h"
#include "ui_text.h"

namespace loupe_web {

//-----------------------------------------------------------------------------------------------
// [SECTION] Words and small helpers
//-----------------------------------------------------------------------------------------------

namespace {

const Catalogue* g_words = &Catalogue::of(Language::en);  // set per frame by the window

const std::string& tr(std::string_view key) { return g_words->text(key); }
std::string trf(std::string_view key, std::initializer_list<std::pair<const char*, std::string>> values) {
  return g_words->format(key, values);
}

std::string num(const char* format, double value) {
  char text[48];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

float em(float count) { return ImGui::GetFontSize() * count; }
float text_width(std::string_view text) { return ImGui::CalcTextSize(text.data(), text.data() + text.size()).x; }

namespace colours {
const ImVec4 caution{0.96f, 0.72f, 0.28f, 1.0f};
const ImVec4 dim{0.62f, 0.64f, 0.70f, 1.0f};
const ImVec4 good{0.40f, 0.82f, 0.50f, 1.0f};
ImVec4 text() { return ImGui::GetStyle().Colors[ImGuiCol_Text]; }
}  // namespace colours

void note_widget(UiActions& actions, const std::string& id) {
  const ImVec2 min = ImGui::GetItemRectMin(), max = ImGui::GetItemRectMax();
  actions.widgets.emplace_back(id, std::vector<float>{min.x, min.y, max.x - min.x, max.y - min.y});
}

// The calibration a card uses, in words ("site", "export", "none").
const std::string& calibration_name(const char* in_use) {
  const std::string which = in_use;
  return tr(which == "site" ? "calib.in_use_site" : which == "export" ? "calib.in_use_export" : "calib.in_use_none");
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Reliability diagram
//-----------------------------------------------------------------------------------------------

// Accuracy against confidence per bin: a bar per non-empty bin (its accuracy), a tick at its mean
// confidence, the diagonal (perfect calibration), the image count under each bar where it fits
// (and every bin's figures on hover).
void draw_reliability(const char* title_key, const char* id, const loupe::ReliabilityBins& bins, float side) {
  ui::text(colours::text(), tr(title_key));
  ui::text(colours::dim, trf("calib.ece_short", {{"value", num("%.4f", bins.ece)}}));
  const float line = ImGui::GetTextLineHeight();
  const float margin = text_width("0.5") + em(0.4f);
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const ImVec2 min{origin.x + margin, origin.y + line * 0.5f}, max{min.x + side, min.y + side};
  ImDrawList* draw = ImGui::GetWindowDrawList();
  draw->AddRectFilled(min, max, ImGui::GetColorU32(ImVec4{0.10f, 0.11f, 0.14f, 1.0f}));
  const int n = std::max(1, bins.bins);
  const float width = side / static_cast<float>(n);
  for (int b = 0; b < n && static_cast<size_t>(b) < bins.count.size(); ++b) {
    if (bins.count[static_cast<size_t>(b)] == 0) continue;
    const float x0 = min.x + width * static_cast<float>(b), x1 = x0 + width - 1.0f;
    const float accuracy = static_cast<float>(bins.accuracy[static_cast<size_t>(b)]);
    const float confidence = static_cast<float>(bins.confidence[static_cast<size_t>(b)]);
    draw->AddRectFilled({x0, max.y - accuracy * side}, {x1, max.y}, ImGui::GetColorU32(ImVec4{0.26f, 0.52f, 0.86f, 1.0f}));
    const float y = max.y - confidence * side;  // where a calibrated bar would end
    draw->AddLine({x0, y}, {x1, y}, ImGui::GetColorU32(colours::caution), 2.0f);
    // In a smaller type, so two-digit counts fit under the 15 bins of a narrow diagram.
    const std::string count = std::to_string(bins.count[static_cast<size_t>(b)]);
    const float small = ImGui::GetFontSize() * 0.75f;
    const float count_width = ImGui::GetFont()->CalcTextSizeA(small, FLT_MAX, 0.0f, count.c_str()).x;
    if (count_width <= width) {
      const float x = x0 + (width - count_width) * 0.5f;
      draw->AddText(ImGui::GetFont(), small, {x, max.y + 2.0f}, ImGui::GetColorU32(colours::dim), count.c_str());
      ui::check_span(count, x, x + count_width, max.y + 2.0f + small * 0.5f);
    }
  }
  draw->AddLine({min.x, max.y}, {max.x, min.y}, ImGui::GetColorU32(colours::dim), 1.0f);
  draw->AddRect(min, max, ImGui::GetColorU32(colours::dim));
  for (const auto& [label, y] : {std::pair{"1", min.y}, std::pair{"0.5", (min.y + max.y) * 0.5f}, std::pair{"0", max.y}}) {
    const float x = min.x - em(0.2f) - text_width(label);
    draw->AddText({x, y - line * 0.5f}, ImGui::GetColorU32(colours::dim), label);
    ui::check_span(label, x, x + text_width(label), y);
  }
  // The plot is one item: hovering it names the bin under the mouse and its figures.
  ImGui::SetCursorScreenPos(min);
  ImGui::InvisibleButton(id, {side, side});
  if (ImGui::IsItemHovered()) {
    const int b = std::clamp(static_cast<int>((ImGui::GetIO().MousePos.x - min.x) / width), 0, n - 1);
    if (static_cast<size_t>(b) < bins.count.size()) {
      ui::tooltip(trf("calib.bin_tip", {{"low", num("%.2f", static_cast<double>(b) / n)},
                                        {"high", num("%.2f", static_cast<double>(b + 1) / n)},
                                        {"images", std::to_string(bins.count[static_cast<size_t>(b)])},
                                        {"confidence", num("%.3f", bins.confidence[static_cast<size_t>(b)])},
                                        {"accuracy", num("%.3f", bins.accuracy[static_cast<size_t>(b)])}}));
    }
  }
  ImGui::SetCursorScreenPos({origin.x, max.y + line + em(0.3f)});
  ui::text(colours::dim, tr("calib.axis_confidence"));
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Figures: temperature, ECE, NLL
//-----------------------------------------------------------------------------------------------

void draw_figures(const AppState& app, const loupe::SiteCalibrationResult& result) {
  const loupe::CalibrationComparison& cmp = result.comparison;
  const std::vector<std::string>& classes = active_classes(app);
  std::string counts;
  for (size_t c = 0; c < classes.size() && c < result.class_counts.size(); ++c) {
    counts += (counts.empty() ? "" : ", ") + classes[c] + " " + std::to_string(result.class_counts[c]);
  }
  ui::wrapped(colours::text(), trf("calib.images", {{"images", std::to_string(result.images)}, {"counts", counts}}));
  ui::wrapped(colours::text(), trf("calib.temperature", {{"before", num("%.4f", cmp.before.temperature)},
                                                         {"replaced", calibration_name(result.replaced)},
                                                         {"after", num("%.4f", cmp.after.temperature)}}));
  if (!result.temperature_applied) ui::wrapped(colours::caution, result.note);  // the core's words: why it was kept

  const SiteFigureTexts shown = site_figure_texts(result);
  if (ImGui::BeginTable("site-figures", 4, ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) {
    ImGui::TableNextRow();
    for (const char* header : {"calib.col_figure", "calib.col_before", "calib.col_after", "calib.col_change"}) {
      ImGui::TableNextColumn();
      ui::text(colours::dim, tr(header));
    }
    const auto row = [](const char* name, const std::string& before, const std::string& after, const std::string& change) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ui::text(tr(name));
      ImGui::TableNextColumn();
      ui::text(before);
      ImGui::TableNextColumn();
      ui::text(after);
      ImGui::TableNextColumn();
      ui::text(change);
    };
    row("calib.ece", shown.ece_before, shown.ece_after, shown.ece_change);
    row("calib.nll", shown.nll_before, shown.nll_after, shown.nll_change);
    ImGui::EndTable();
  }
  ui::wrapped(colours::dim, trf("calib.intervals_note", {{"resamples", std::to_string(cmp.bootstrap.resamples)},
                                                         {"bins", std::to_string(cmp.before.bins.bins)}}));
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Operating points
//-----------------------------------------------------------------------------------------------

const char* kind_key(const SiteTarget& target) {
  if (!target.enabled) return "calib.kind_none";
  switch (target.kind) {
    case loupe::TargetKind::sensitivity: return "calib.kind_sensitivity";
    case loupe::TargetKind::specificity: return "calib.kind_specificity";
    case loupe::TargetKind::threshold: return "calib.kind_threshold";
  }
  return "calib.kind_none";
}

// Per class: the kind of target (none, sensitivity, specificity, threshold) and its value; then
// the threshold it gives and the sensitivity and specificity on these images with their intervals.
void draw_operating_points(const AppState& app, const loupe::SiteCalibrationResult& result, UiActions& actions) {
  const SiteCalibrationView& view = app.site;
  const std::vector<std::string>& classes = active_classes(app);
  ui::text(colours::text(), tr("calib.operating_points"));
  ui::wrapped(colours::dim, tr("calib.operating_points_intro"));
  float kind_width = 0;
  for (const char* key : {"calib.kind_none", "calib.kind_sensitivity", "calib.kind_specificity", "calib.kind_threshold"}) {
    kind_width = std::max(kind_width, text_width(tr(key)));
  }
  kind_width += ImGui::GetFrameHeight() + 2.0f * ImGui::GetStyle().FramePadding.x;
  for (size_t c = 0; c < classes.size() && c < view.targets.size(); ++c) {
    ImGui::PushID(static_cast<int>(c));
    const SiteTarget& current = view.targets[c];
    ui::text(colours::text(), classes[c]);
    const std::string combo_id = "siteKind-" + std::to_string(c);
    if (ui::begin_combo("##kind", tr(kind_key(current)), kind_width)) {
      const struct { const char* key; bool enabled; loupe::TargetKind kind; double value; const char* id; } choices[] = {
          {"calib.kind_none", false, current.kind, current.value, "none"},
          {"calib.kind_sensitivity", true, loupe::TargetKind::sensitivity, 0.95, "sensitivity"},
          {"calib.kind_specificity", true, loupe::TargetKind::specificity, 0.95, "specificity"},
          {"calib.kind_threshold", true, loupe::TargetKind::threshold, 0.5, "threshold"}};
      for (const auto& choice : choices) {
        if (ui::selectable(tr(choice.key), choice.id, std::string(kind_key(current)) == choice.key)) {
          actions.site_calibration.target_class = static_cast<int>(c);
          // A new kind starts at its usual value; the same kind keeps the user's.
          const bool same = current.enabled == choice.enabled && (!choice.enabled || current.kind == choice.kind);
          actions.site_calibration.target = {choice.enabled, choice.kind, same ? current.value : choice.value};
        }
        note_widget(actions, combo_id + "-" + choice.id);
      }
      ImGui::EndCombo();
    }
    note_widget(actions, combo_id);
    if (current.enabled) {
      ImGui::SameLine();
      float value = static_cast<float>(current.value);
      const std::string& label = tr("calib.value");
      ImGui::SetNextItemWidth(std::max(em(5.0f), std::min(em(10.0f), ImGui::GetContentRegionAvail().x - text_width(label) - em(1.0f))));
      // Live: the threshold is re-chosen at every change (a sort of these images; no bootstrap).
      if (ui::slider(label, "value", &value, current.kind == loupe::TargetKind::threshold ? 0.0f : 0.01f, 1.0f, "%.3f")) {
        actions.site_calibration.target_class = static_cast<int>(c);
        actions.site_calibration.target = {true, current.kind, static_cast<double>(value)};
      }
      note_widget(actions, "siteValue-" + std::to_string(c));
      ui::tooltip(tr("calib.value_tip"));
      for (const loupe::OperatingPoint& point : result.operating_points) {
        if (point.class_index != static_cast<int>(c)) continue;
        ui::wrapped(colours::good, trf("calib.point", {{"threshold", num("%.4f", point.threshold)},
                                                       {"sensitivity", loupe::with_interval(point.sensitivity, point.sensitivity_interval)},
                                                       {"tp", std::to_string(point.true_positives)},
                                                       {"positives", std::to_string(point.positives)},
                                                       {"specificity", loupe::with_interval(point.specificity, point.specificity_interval)},
                                                       {"tn", std::to_string(point.true_negatives)},
                                                       {"negatives", std::to_string(point.negatives)}}));
      }
    }
    ImGui::PopID();
  }
  if (!view.operating_point_error.empty()) ui::wrapped(colours::caution, view.operating_point_error);
  ui::wrapped(colours::caution, tr("calib.in_sample"));
}

}  // namespace

//-----------------------------------------------------------------------------------------------
// [SECTION] The button and the window
//-----------------------------------------------------------------------------------------------

void draw_site_calibration_button(const AppState& app, UiActions& actions) {
  g_words = &Catalogue::of(app.ui.language);
  ImGui::Spacing();
  if (ui::button(tr("calib.open"), "siteCalibration")) actions.site_calibration.show = !app.site.open;
  note_widget(actions, "siteCalibration");
  ui::tooltip(tr("calib.open_tip"));
}

void draw_site_calibration_window(const AppState& app, UiActions& actions) {
  if (!app.site.open || app.model.status != ModelStatus::ready) return;
  g_words = &Catalogue::of(app.ui.language);
  const SiteCalibrationView& view = app.site;
  const ImGuiViewport* viewport = ImGui::GetMainViewport();
  const float room_y = viewport->WorkSize.y - 20.0f;
  ImGui::SetNextWindowSize({std::min(em(46.0f), viewport->WorkSize.x - 40.0f), std::min(em(56.0f), room_y)}, ImGuiCond_Appearing);
  ImGui::SetNextWindowPos({viewport->WorkPos.x + viewport->WorkSize.x * 0.5f, viewport->WorkPos.y + 10.0f}, ImGuiCond_Appearing,
                          {0.5f, 0.0f});
  ImGui::SetNextWindowSizeConstraints({std::min(em(24.0f), viewport->WorkSize.x), std::min(em(12.0f), room_y)},
                                      {viewport->WorkSize.x - 20.0f, room_y});
  bool open = true;
  if (ImGui::Begin((tr("calib.title") + "###site-calibration").c_str(), &open, ImGuiWindowFlags_NoSavedSettings)) {
    // Kept inside the page: a window partly off screen would cut its text off.
    const ImVec2 pos = ImGui::GetWindowPos(), size = ImGui::GetWindowSize();
    const ImVec2 inside{std::max(viewport->WorkPos.x, std::min(pos.x, viewport->WorkPos.x + viewport->WorkSize.x - size.x)),
                        std::max(viewport->WorkPos.y, std::min(pos.y, viewport->WorkPos.y + viewport->WorkSize.y - size.y))};
    if (inside.x != pos.x || inside.y != pos.y) ImGui::SetWindowPos(inside);
    actions.widgets.emplace_back("siteCalibrationWindow", std::vector<float>{inside.x, inside.y, size.x, size.y});
    ui::wrapped(colours::text(), tr("calib.intro"));
    ui::wrapped(colours::dim, trf("calib.in_use", {{"note", probability_note_text(app.model.info.card, app.ui.language)}}));
    ImGui::Separator();
    if (!view.result) {
      const std::string reason = !view.refusal.empty() ? trf("calib.refused", {{"reason", view.refusal}})
                                 : view.refusal_key.empty() ? std::string() : tr(view.refusal_key);
      ui::wrapped(colours::caution, reason);
      ui::wrapped(colours::caution, tr("calib.not_diagnostic"));
    } else {
      const loupe::SiteCalibrationResult& result = *view.result;
      draw_figures(app, result);
      ImGui::Spacing();
      // The two diagrams side by side when they fit, else one under the other.
      const float available = ImGui::GetContentRegionAvail().x;
      const float margin = text_width("0.5") + em(0.4f);
      const float side = std::clamp((available - 2.0f * margin - em(2.0f)) * 0.5f, em(8.0f), em(16.0f));
      const float column = side + margin + em(1.0f);
      ImGui::BeginGroup();
      draw_reliability("calib.diagram_before", "reliability-before", result.comparison.before.bins, side);
      ImGui::EndGroup();
      if (available >= 2.0f * column) ImGui::SameLine(0.0f, em(1.5f));
      ImGui::BeginGroup();
      draw_reliability("calib.diagram_after", "reliability-after", result.comparison.after.bins, side);
      ImGui::EndGroup();
      ui::wrapped(colours::dim, tr("calib.diagram_legend"));
      ImGui::Separator();
      draw_operating_points(app, result, actions);
      ImGui::Separator();
      ui::wrapped(colours::caution, tr("calib.not_diagnostic"));  // where the calibrated model is taken away
      const std::string file = site_calibrated_file_name(app.model.file);
      if (ui::button(tr("calib.download"), "siteDownload")) actions.site_calibration.download = true;
      note_widget(actions, "siteDownload");
      ui::tooltip(trf("calib.download_tip", {{"file", file}}));
      if (!view.downloaded.empty()) ui::wrapped(colours::good, trf("calib.downloaded", {{"file", view.downloaded}}));
      if (!view.download_error.empty()) ui::wrapped(colours::caution, view.download_error);
    }
  }
  ImGui::End();
  if (!open) actions.site_calibration.show = false;
}

}  // namespace loupe_web
