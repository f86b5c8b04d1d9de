// Drawing: every pixel of the page is a function of AppState (app.h). Nothing here changes the
// state; what the user does is recorded in UiActions and applied by apply() (app_logic.h) and
// apply_ui_settings() (ui_settings.h) after the frame. The table's rows and the evaluation come
// precomputed in AppState::views.
//
// Every text comes from the catalogue of the page's language (tr(), i18n.h) and is drawn through
// ui_text.h, which records any text cut off (the browser tests require none). Sizes are in units
// of the font size (em()), so the layout follows the user's text size and the window's.
//
// Index:
//   [SECTION] Words, colours, small helpers
//   [SECTION] Menu bar: language, text size, help, the two promises
//   [SECTION] Sidebar: model card, runtime, browser, build
//   [SECTION] Workspace: first visit, open buttons, batch progress, table
//   [SECTION] Viewer: image, heat map, probabilities
//   [SECTION] Evaluation window
//   [SECTION] Keyboard help
//   [SECTION] draw_app

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "app.h"
#include "app_logic.h"
#include "draw_calibration.h"
#include "i18n.h"
#include "imgui.h"
#include "loupe/metrics.h"
#include "loupe/prediction.h"
#include "ui_text.h"

namespace loupe_web {

//-----------------------------------------------------------------------------------------------
// [SECTION] Words, colours, small helpers
//-----------------------------------------------------------------------------------------------

// The frame's catalogue (draw_app sets it): one language per frame.
static const Catalogue* g_words = &Catalogue::of(Language::en);

static const std::string& tr(std::string_view key) { return g_words->text(key); }
static std::string trf(std::string_view key, std::initializer_list<std::pair<const char*, std::string>> values) {
  return g_words->format(key, values);
}

static std::string num(const char* format, double value) {
  char text[48];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

// Sizes in ems: a layout that holds at one text size holds at all.
static float em(float count) { return ImGui::GetFontSize() * count; }

namespace colours {
const ImVec4 local{0.40f, 0.82f, 0.50f, 1.0f};    // the "processing is local" promise
const ImVec4 caution{0.96f, 0.72f, 0.28f, 1.0f};  // "not a diagnostic device", degraded modes
const ImVec4 error{0.96f, 0.42f, 0.38f, 1.0f};
const ImVec4 dim{0.62f, 0.64f, 0.70f, 1.0f};
ImVec4 text() { return ImGui::GetStyle().Colors[ImGuiCol_Text]; }
}  // namespace colours

// Records where the last item was drawn (see UiActions::widgets).
static void note_widget(UiActions& actions, const char* id) {
  const ImVec2 min = ImGui::GetItemRectMin(), max = ImGui::GetItemRectMax();
  actions.widgets.emplace_back(id, std::vector<float>{min.x, min.y, max.x - min.x, max.y - min.y});
}

static std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

static float text_width(std::string_view text) { return ImGui::CalcTextSize(text.data(), text.data() + text.size()).x; }
static float button_width(std::string_view label) { return text_width(label) + 2.0f * ImGui::GetStyle().FramePadding.x; }

// Keeps the next item on this line when `width` more pixels fit there, else starts a new line:
// a row of buttons wraps instead of running off the window.
static void same_line_if_fits(float width) {
  const float spacing = ImGui::GetStyle().ItemSpacing.x;
  const float right = ImGui::GetItemRectMax().x + spacing + width;
  // The content region, or what is visible of it (a child window in a table cell is clipped to the cell).
  const float edge = std::min(ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x,
                              ImGui::GetWindowDrawList()->GetClipRectMax().x);
  if (right <= edge) ImGui::SameLine();
}

// A slider's width: `preferred`, or what the line has left for it and its label.
static float slider_width_for(float preferred, std::string_view label) {
  const float room = ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemInnerSpacing.x - text_width(label);
  return std::max(em(3.0f), std::min(preferred, room));
}

// Free-form card entries (training data, test metrics, ...) come from whoever wrote the file: read
// them without trusting their types, so an odd card shows "?" instead of throwing mid-frame.
static double json_number(const nlohmann::json& object, const char* key, double fallback = 0.0) {
  if (!object.is_object()) return fallback;
  const auto found = object.find(key);
  return found != object.end() && found->is_number() ? found->get<double>() : fallback;
}

static std::string json_text(const nlohmann::json& object, const char* key, const std::string& fallback) {
  if (!object.is_object()) return fallback;
  const auto found = object.find(key);
  return found != object.end() && found->is_string() ? found->get<std::string>() : fallback;
}

static std::string json_dump(const nlohmann::json& object, const char* key) {
  return object.is_object() && object.contains(key) ? object[key].dump() : std::string("?");
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Menu bar: language, text size, help, the two promises
//-----------------------------------------------------------------------------------------------

static void draw_language_switch(const AppState& app, UiActions& actions) {
  float width = 0;
  for (const Language language : kLanguages) width = std::max(width, text_width(Catalogue::of(language).text("language.short")));
  width += ImGui::GetFrameHeight() + 2.0f * ImGui::GetStyle().FramePadding.x;
  if (ui::begin_combo("##language", tr("language.short"), width)) {
    for (const Language language : kLanguages) {
      // Each language by its own name: a reader finds theirs whatever the page shows now.
      if (ui::selectable(Catalogue::of(language).text("language.name"), language_code(language), language == app.ui.language)) {
        actions.language = language;
      }
      note_widget(actions, language == Language::id ? "language-id" : "language-en");
    }
    ImGui::EndCombo();
  }
  note_widget(actions, "language");
  ui::tooltip(tr("menu.language_tip"));
}

static float text_size_controls_width() {
  return button_width("A-") + button_width("A+") + ImGui::GetStyle().ItemSpacing.x;
}

static void draw_text_size_controls(const AppState& app, UiActions& actions) {
  const std::string size = num("%.0f", static_cast<double>(app.ui.font_size));
  if (ui::small_button("A-", "smaller")) actions.font_size = app.ui.font_size - 1.0f;
  note_widget(actions, "textSmaller");
  ui::tooltip(trf("menu.text_smaller", {{"size", size}}));
  ImGui::SameLine();
  if (ui::small_button("A+", "larger")) actions.font_size = app.ui.font_size + 1.0f;
  note_widget(actions, "textLarger");
  ui::tooltip(trf("menu.text_larger", {{"size", size}}));
}

static void draw_menu_bar(const AppState& app, UiActions& actions) {
  if (!ImGui::BeginMainMenuBar()) return;
  const ImGuiStyle& style = ImGui::GetStyle();
  const float spacing = style.ItemSpacing.x;
  // The badges never go: on a narrow window they say it shorter (the full text is their tooltip).
  const float controls = ImGui::GetFrameHeight() * 2.0f + text_width(tr("language.short")) + text_size_controls_width() +
                         button_width("?") + 4.0f * spacing + em(1.0f);
  const float title = text_width("Loupe") + spacing;
  const float room = ImGui::GetWindowWidth() - style.WindowPadding.x * 2.0f - controls - title;
  const bool full = ui::badge_width(tr("badge.local")) + ui::badge_width(tr("badge.not_diagnostic")) + spacing <= room;
  const std::string& local = tr(full ? "badge.local" : "badge.local_short");
  const std::string& not_diagnostic = tr(full ? "badge.not_diagnostic" : "badge.not_diagnostic_short");
  const float badges = ui::badge_width(local) + spacing + ui::badge_width(not_diagnostic);
  const float right_x = ImGui::GetWindowWidth() - style.WindowPadding.x - badges - controls;

  ui::text("Loupe");
  ImGui::SameLine();
  // The subtitle is the first thing to go on a narrow window.
  if (ImGui::GetCursorPosX() + text_width(tr("menu.subtitle")) + spacing < right_x) {
    ui::text(colours::dim, tr("menu.subtitle"));
    ImGui::SameLine();
  }
  ImGui::SetCursorPosX(std::max(ImGui::GetCursorPosX(), right_x));
  draw_language_switch(app, actions);
  ImGui::SameLine();
  draw_text_size_controls(app, actions);
  ImGui::SameLine();
  if (ui::small_button("?", "help")) actions.show_help = !app.ui.show_help;
  note_widget(actions, "help");
  ui::tooltip(tr("menu.help_tip"));
  ImGui::SameLine(0.0f, em(1.0f));
  ui::badge(local, colours::local);
  ui::tooltip(tr("badge.local_tip"));
  ImGui::SameLine();
  ui::badge(not_diagnostic, colours::caution);
  ui::tooltip(tr("badge.not_diagnostic_tip"));
  ImGui::EndMainMenuBar();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Sidebar: model card, runtime, browser, build
//-----------------------------------------------------------------------------------------------

// Two-column key/value rows inside a sidebar section; the key column is as wide as its longest key.
static bool begin_facts(const char* id, std::initializer_list<const char*> keys) {
  float key_width = 0;
  for (const char* key : keys) key_width = std::max(key_width, text_width(tr(key)));
  key_width = std::min(key_width, ImGui::GetContentRegionAvail().x * 0.45f);
  if (!ImGui::BeginTable(id, 2, ImGuiTableFlags_SizingFixedFit)) return false;
  ImGui::TableSetupColumn("key", ImGuiTableColumnFlags_WidthFixed, key_width);
  ImGui::TableSetupColumn("value", ImGuiTableColumnFlags_WidthStretch);
  return true;
}

static void fact_key(const char* key) {
  ImGui::TableNextRow();
  ImGui::TableNextColumn();
  ImGui::PushStyleColor(ImGuiCol_Text, colours::dim);
  ImGui::PushTextWrapPos(0.0f);  // a long key in a narrow sidebar wraps rather than spill
  ui::text(tr(key));
  ImGui::PopTextWrapPos();
  ImGui::PopStyleColor();
  ImGui::TableNextColumn();
}

static void section_title(const char* key) {
  ImGui::Spacing();
  ui::text(tr(key));
  ImGui::Separator();
}

static void draw_model_picker(const AppState& app, UiActions& actions) {
  if (ui::button(tr("model.open"), "openModel")) actions.open_model = true;
  note_widget(actions, "openModel");
  ui::tooltip(tr("model.open_tip"));
  const nlohmann::json& shipped = app.shipped_models;
  if (!shipped.is_object() || !shipped.contains("models") || !shipped["models"].is_array()) return;
  // The shipped model's title (not its file name) in the picker; cut to fit, whole on hover.
  std::string current = tr("model.shipped");
  for (const nlohmann::json& entry : shipped["models"]) {
    if (app.model.source == "shipped" && entry.is_object() && entry.value("file", "") == app.model.file) {
      current = entry.value("title", app.model.file);
    }
  }
  const float min_width = em(8.0f);
  same_line_if_fits(min_width);
  const float width = std::max(min_width, ImGui::GetContentRegionAvail().x);
  if (ui::begin_combo("##shipped", current, width)) {
    for (const nlohmann::json& entry : shipped["models"]) {
      if (!entry.is_object()) continue;
      const std::string file = entry.value("file", "");
      const std::string title = entry.value("title", file);
      if (ui::selectable(title, file.c_str(), app.model.source == "shipped" && app.model.file == file)) {
        actions.open_shipped = file;
      }
    }
    ImGui::EndCombo();
  }
  note_widget(actions, "shippedModels");
}

static void draw_model_facts(const AppState& app) {
  const loupe::ModelCard& card = app.model.info.card;
  if (!begin_facts("card", {"card.name", "card.file", "card.architecture", "card.classes", "card.input", "card.trained_on",
                            "card.split", "card.test_metrics", "card.confidence", "card.ood", "card.weights",
                            "card.self_test"})) {
    return;
  }
  fact_key("card.name");
  ui::wrapped(colours::text(), card.name.empty() ? app.model.file : card.name);
  fact_key("card.file");
  ui::wrapped(colours::text(), trf(app.model.source == "shipped" ? "card.file_shipped" : "card.file_opened",
                                   {{"file", app.model.file}}));
  fact_key("card.architecture");
  ui::wrapped(colours::text(), trf("card.parameters", {{"architecture", card.architecture},
                                                        {"millions", num("%.2f", static_cast<double>(app.model.info.parameters) / 1e6)}}));
  ui::wrapped(colours::text(), trf("card.precision", {{"precision", card.precision_note()}}));
  fact_key("card.classes");
  ui::wrapped(colours::text(), join(card.class_names, ", "));
  fact_key("card.input");
  ui::wrapped(colours::text(), trf(card.input_channels == 1 ? "card.input_gray" : "card.input_rgb",
                                   {{"width", std::to_string(card.input_width)}, {"height", std::to_string(card.input_height)}}));
  if (card.training_data.is_object()) {
    const nlohmann::json& data = card.training_data;
    std::string folder = json_text(data, "folder", "?");
    while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
    folder = folder.substr(folder.find_last_of('/') == std::string::npos ? 0 : folder.find_last_of('/') + 1);
    fact_key("card.trained_on");
    ui::wrapped(colours::text(), data.contains("images") ? trf("card.trained_images", {{"folder", folder}, {"images", data["images"].dump()}})
                                                         : folder);
    if (data.contains("split") && data["split"].is_object()) {
      const nlohmann::json& split = data["split"];
      fact_key("card.split");
      ui::wrapped(colours::text(), trf("card.split_counts", {{"train", json_dump(split, "train_images")},
                                                             {"val", json_dump(split, "val_images")},
                                                             {"test", json_dump(split, "test_images")},
                                                             {"seed", json_dump(split, "seed")}}));
    }
  }
  fact_key("card.test_metrics");
  if (card.test_metrics.is_object() && card.test_metrics.contains("accuracy")) {
    // With its 95% interval: how sure the figure is on the test split's size.
    const std::optional<loupe::Interval> ci = loupe::accuracy_interval_of(card.test_metrics);
    const std::string accuracy = ci ? loupe::with_interval(json_number(card.test_metrics, "accuracy"), *ci)
                                    : num("%.3f", json_number(card.test_metrics, "accuracy"));
    ui::wrapped(colours::text(), trf("card.test_accuracy", {{"accuracy", accuracy},
                                                            {"balanced", num("%.3f", json_number(card.test_metrics, "balanced_accuracy"))},
                                                            {"total", json_dump(card.test_metrics, "total")}}));
  } else {
    ui::wrapped(colours::caution, tr("card.none_recorded"));
  }
  fact_key("card.confidence");
  ui::wrapped(colours::text(), probability_note_text(card, g_words->language()));
  fact_key("card.ood");
  if (card.ood) {
    ui::wrapped(colours::text(), trf("card.ood_flags", {{"threshold", num("%.1f", card.ood->threshold)},
                                                        {"method", card.ood->method.empty() ? "distance" : card.ood->method}}));
    // The false-alarm rate the threshold was set for, with its interval, and what the test split
    // measured: a flag is only as useful as the rate at which it cries wolf.
    const nlohmann::json& ood = card.ood->record;
    const auto percent = [](double v) { return num("%.1f%%", 100.0 * v); };
    const auto interval_of = [&](const char* key) -> std::optional<std::pair<double, double>> {
      const auto it = ood.find(key);
      if (it == ood.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_number() || !(*it)[1].is_number()) return std::nullopt;
      return std::make_pair((*it)[0].get<double>(), (*it)[1].get<double>());
    };
    if (const auto stated = interval_of("false_alarm_interval"); stated && ood.contains("false_alarm_rate")) {
      ui::wrapped(colours::dim, trf("card.ood_false_alarms", {{"rate", percent(json_number(ood, "false_alarm_rate"))},
                                                              {"low", percent(stated->first)},
                                                              {"high", percent(stated->second)},
                                                              {"distances", num("%.0f", json_number(ood, "calibration_distances"))}}));
    }
    if (const auto test = interval_of("test_false_alarm_interval"); test && ood.contains("test_images")) {
      const double images = json_number(ood, "test_images"), rate = json_number(ood, "test_false_alarm_rate");
      ui::wrapped(colours::dim, trf("card.ood_test_false_alarms", {{"flagged", num("%.0f", rate * images)},
                                                                   {"images", num("%.0f", images)},
                                                                   {"rate", percent(rate)},
                                                                   {"low", percent(test->first)},
                                                                   {"high", percent(test->second)}}));
    }
  } else {
    ui::wrapped(colours::caution, tr("card.ood_none"));
  }
  if (card.intended_images) {  // DICOM files with another Modality / Body Part / View get a warning
    fact_key("card.trained_for");
    ui::wrapped(colours::text(), trf("card.trained_for_images", {{"images", card.intended_images->summary()}}));
  }
  fact_key("card.weights");
  const bool verified = !card.weights_sha256.empty() && card.weights_sha256 == app.model.weights_sha256;
  ui::wrapped(verified ? colours::local : colours::caution,
              trf(verified ? "card.sha_matches" : card.weights_sha256.empty() ? "card.sha_no_hash" : "card.sha_mismatch",
                  {{"sha", app.model.weights_sha256.substr(0, 12)}}));
  ui::tooltip(app.model.weights_sha256);
  fact_key("card.self_test");
  if (app.model.has_self_test) {
    // Only a passing model becomes active (app_logic.cpp), so this line is the proof.
    ui::wrapped(colours::local, trf("card.self_test_passed", {{"difference", num("%.2g", app.model.self_test.max_abs_diff)},
                                                              {"tolerance", num("%.2g", app.model.self_test.worst_bound)},
                                                              {"images", std::to_string(app.model.self_test.images)}}));
    ui::tooltip(tr("card.self_test_tip"));
  } else {
    ui::wrapped(colours::caution, tr("card.self_test_none"));
  }
  ImGui::EndTable();
}

// Per-class test metrics of the card, as a table (the names of any length fit: it wraps).
static void draw_card_class_metrics(const loupe::ModelCard& card, UiActions& actions) {
  if (!card.test_metrics.is_object() || !card.test_metrics.contains("classes") || !card.test_metrics["classes"].is_array()) return;
  const bool open = ui::tree_node(tr("card.per_class"), "perClass");
  note_widget(actions, "perClassMetrics");
  if (!open) return;
  const ImGuiTableFlags flags = ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_RowBg;
  if (ImGui::BeginTable("per-class", 5, flags)) {
    const char* const headers[] = {"metrics.class", "metrics.precision_short", "metrics.recall_short", "metrics.f1", "metrics.support_short"};
    ImGui::TableSetupColumn("class", ImGuiTableColumnFlags_WidthStretch);
    for (int c = 1; c < 5; ++c) {
      ImGui::TableSetupColumn(headers[c], ImGuiTableColumnFlags_WidthFixed, std::max(text_width(tr(headers[c])), text_width("0.00")));
    }
    ImGui::TableNextRow();
    for (const char* header : headers) {
      ImGui::TableNextColumn();
      ui::text(colours::dim, tr(header));
    }
    for (const nlohmann::json& row : card.test_metrics["classes"]) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ui::fit(json_text(row, "name", "?"));
      ImGui::TableNextColumn();
      ui::text(num("%.2f", json_number(row, "precision")));
      ImGui::TableNextColumn();
      ui::text(num("%.2f", json_number(row, "recall")));
      ImGui::TableNextColumn();
      ui::text(num("%.2f", json_number(row, "f1")));
      ImGui::TableNextColumn();
      ui::text(json_dump(row, "support"));
    }
    ImGui::EndTable();
  }
  ImGui::TreePop();
}

// The model card: what the model is, what it was trained and tested on, and what it is not for.
static void draw_model_section(const AppState& app, UiActions& actions) {
  section_title("section.model");
  draw_model_picker(app, actions);
  if (app.model_load) {
    ui::wrapped(colours::dim, trf(app.model_load->self_test_run > 0 ? "model.self_testing" : "model.opening",
                                  {{"file", app.model_load->file}}));
  }
  if (!app.model_error.empty()) ui::wrapped(colours::error, app.model_error);
  if (app.model.status != ModelStatus::ready) {
    if (!app.model_load && app.model_error.empty()) {
      ui::wrapped(colours::dim, tr(app.shipped_error.empty() ? "model.loading_default" : "model.none"));
    }
    if (!app.shipped_error.empty()) ui::wrapped(colours::caution, trf("model.shipped_unavailable", {{"error", app.shipped_error}}));
    return;
  }
  draw_model_facts(app);
  const loupe::ModelCard& card = app.model.info.card;
  draw_card_class_metrics(card, actions);
  if (!card.intended_use.empty()) ui::wrapped(colours::dim, trf("card.intended_use", {{"use", card.intended_use}}));
  // Loupe's statement in the page's language, then the card's own as its author wrote it.
  ui::wrapped(colours::caution, tr("disclaimer.short"));
  if (!card.disclaimer.empty() && card.disclaimer != tr("disclaimer.short")) {
    ui::wrapped(colours::dim, trf("card.statement", {{"statement", card.disclaimer}}));
  }
}

static void draw_runtime_section(const AppState& app) {
  section_title("section.runtime");
  if (!begin_facts("ort", {"runtime.status", "runtime.version", "runtime.backend", "runtime.threads"})) return;
  fact_key("runtime.status");
  switch (app.ort.status) {
    case OrtStatus::loading: {
      static const char* const dots[] = {"", ".", "..", "..."};
      ui::text(tr("runtime.loading") + dots[(app.frames / 20) % 4]);
      break;
    }
    case OrtStatus::ready: ui::text(colours::local, tr("runtime.ready")); break;
    case OrtStatus::failed: ui::wrapped(colours::error, tr("runtime.failed")); break;
  }
  if (app.ort.status == OrtStatus::ready) {
    fact_key("runtime.version");
    ui::fit(app.ort.version);
    fact_key("runtime.backend");
    if (app.ort.backend == "webgpu") {
      ui::wrapped(colours::local, tr("runtime.webgpu"));
    } else {
      ui::wrapped(colours::text(), tr("runtime.wasm"));
    }
    fact_key("runtime.threads");
    if (app.ort.threads > 1) {
      ui::text(std::to_string(app.ort.threads));
    } else {
      ui::wrapped(colours::caution, trf("runtime.single_thread", {{"threads", std::to_string(app.ort.threads)}}));
    }
  }
  ImGui::EndTable();
  if (app.ort.status == OrtStatus::failed) ui::wrapped(colours::error, app.ort.error);
}

static void draw_browser_section(const AppState& app) {
  section_title("section.browser");
  if (!begin_facts("browser", {"browser.isolated", "browser.cores", "browser.canvas"})) return;
  fact_key("browser.isolated");
  if (app.page.cross_origin_isolated) {
    ui::wrapped(colours::local, tr("browser.isolated_yes"));
  } else {
    ui::wrapped(colours::caution, tr("browser.isolated_no"));
  }
  fact_key("browser.cores");
  ui::text(std::to_string(app.page.hardware_concurrency));
  fact_key("browser.canvas");
  ui::wrapped(colours::text(), trf("browser.canvas_size", {{"width", std::to_string(app.canvas_width)},
                                                           {"height", std::to_string(app.canvas_height)},
                                                           {"ratio", num("%.2g", app.pixel_ratio)}}));
  ImGui::EndTable();
  if (!app.page.cross_origin_isolated) ui::wrapped(colours::caution, tr("browser.not_isolated"));
}

static void draw_build_section(const AppState& app) {
  section_title("section.build");
  if (!begin_facts("build", {"build.loupe", "build.opencv", "build.compiler", "build.imgui"})) return;
  fact_key("build.loupe");
  ui::wrapped(colours::text(), app.build.loupe_version + " (" + app.build.target + ")");
  fact_key("build.opencv");
  ui::fit(app.build.opencv_version);
  fact_key("build.compiler");
  ui::wrapped(colours::text(), app.build.compiler);
  fact_key("build.imgui");
  ui::fit(IMGUI_VERSION);
  ImGui::EndTable();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Workspace: first visit, open buttons, batch progress, table
//-----------------------------------------------------------------------------------------------

static std::string human_size(double bytes) {
  if (bytes < 1024) return num("%.0f B", bytes);
  if (bytes < 1024 * 1024) return num("%.1f KB", bytes / 1024);
  return num("%.1f MB", bytes / (1024 * 1024));
}

static void draw_open_buttons(UiActions& actions) {
  if (ui::button(tr("open.images"), "openImages")) actions.open_files = true;
  note_widget(actions, "openImages");
  ui::tooltip(tr("open.images_tip"));
  same_line_if_fits(button_width(tr("open.folder")));
  if (ui::button(tr("open.folder"), "openFolder")) actions.open_folder = true;
  note_widget(actions, "openFolder");
  ui::tooltip(tr("open.folder_tip"));
}

// A paragraph of the first-visit panel: a bold-ish heading line and wrapped text.
static void empty_state_paragraph(const char* heading, const std::string& body, const ImVec4& colour) {
  ImGui::Spacing();
  ui::wrapped(colours::text(), tr(heading));
  ImGui::Indent(em(0.8f));
  ui::wrapped(colour, body);
  ImGui::Unindent(em(0.8f));
}

// What a first-time visitor needs: what to do, what it accepts, and that (and how) nothing leaves.
static void draw_empty_workspace(const AppState& app, UiActions& actions) {
  const float avail = ImGui::GetContentRegionAvail().x;
  const float width = std::min(avail, em(38.0f));
  const float indent = std::max(0.0f, (avail - width) * 0.5f);
  ImGui::SetCursorPosY(ImGui::GetCursorPosY() + em(1.5f));
  ImGui::Indent(indent);
  ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + width);
  ImGui::BeginGroup();
  ui::wrapped(colours::text(), tr("empty.title"));
  if (app.model.status == ModelStatus::ready) {
    ui::wrapped(colours::local, trf("empty.model_ready", {{"model", app.model.info.card.name}}));
  }
  ImGui::Spacing();
  draw_open_buttons(actions);
  empty_state_paragraph("empty.how_heading", tr("empty.how"), colours::dim);
  empty_state_paragraph("empty.formats_heading", tr("empty.formats"), colours::dim);
  empty_state_paragraph("empty.evaluation_heading", tr("empty.evaluation"), colours::dim);
  empty_state_paragraph("empty.local_heading", tr("empty.local"), colours::local);
  empty_state_paragraph("empty.check_heading", tr("empty.check"), colours::dim);
  ImGui::Spacing();
  ui::wrapped(colours::dim, tr("empty.keyboard"));
  ImGui::EndGroup();
  ImGui::PopTextWrapPos();
  ImGui::Unindent(indent);
}

// Where the evaluation window may start this frame: below the button that opens and closes it.
static float g_evaluation_top = 0;

// "Classified 120/2000", Cancel / Resume, CSV export, the evaluation toggle and a progress bar;
// the buttons wrap onto the next line when the window is narrow.
static void draw_batch_bar(const AppState& app, UiActions& actions) {
  int ok = 0, failed = 0;
  for (const ImageEntry& entry : app.images) {
    ok += entry.status == EntryStatus::ok;
    failed += entry.status == EntryStatus::error;
  }
  const BatchProgress progress = batch_progress(app);
  const bool model_ready = app.model.status == ModelStatus::ready;
  std::string summary;
  if (model_ready && progress.total > 0) {
    summary = trf("batch.classified", {{"files", std::to_string(app.images.size())}, {"failed", std::to_string(failed)},
                                       {"done", std::to_string(progress.done)}, {"total", std::to_string(progress.total)}});
    if (app.paused && progress.done < progress.total) summary += " " + tr("batch.cancelled");
  } else {
    const int pending = static_cast<int>(app.images.size()) - ok - failed;
    summary = trf("batch.read", {{"files", std::to_string(app.images.size())}, {"ok", std::to_string(ok)},
                                 {"failed", std::to_string(failed)}});
    if (pending > 0) summary += " " + tr("batch.reading");
  }
  same_line_if_fits(text_width(summary));
  ui::wrapped(colours::dim, summary);
  const bool busy = progress.running && !app.paused;
  if (busy) {
    same_line_if_fits(button_width(tr("batch.cancel")));
    if (ui::button(tr("batch.cancel"), "cancel")) actions.cancel_batch = true;
    note_widget(actions, "cancel");
  } else if (app.paused && progress.done < progress.total) {
    same_line_if_fits(button_width(tr("batch.resume")));
    if (ui::button(tr("batch.resume"), "resume")) actions.resume_batch = true;
    note_widget(actions, "resume");
  }
  if (model_ready) {
    same_line_if_fits(button_width(tr("batch.export_csv")));
    if (ui::button(tr("batch.export_csv"), "exportCsv")) actions.export_csv = true;
    note_widget(actions, "exportCsv");
    ui::tooltip(tr("batch.export_csv_tip"));
    const std::string& evaluation = tr(app.show_evaluation ? "batch.hide_evaluation" : "batch.evaluation");
    same_line_if_fits(button_width(evaluation));
    if (ui::button(evaluation, "evaluation")) actions.show_evaluation = !app.show_evaluation;
    note_widget(actions, "evaluation");
    g_evaluation_top = ImGui::GetItemRectMax().y + ImGui::GetStyle().ItemSpacing.y;
    ui::tooltip(tr("batch.evaluation_tip"));
  }
  const float fraction = progress.total > 0 ? static_cast<float>(progress.done) / static_cast<float>(progress.total)
                                            : static_cast<float>(ok + failed) / static_cast<float>(std::max<size_t>(1, app.images.size()));
  if (busy || fraction < 1.0f) ui::progress_bar(fraction, -1.0f, num("%.0f%%", static_cast<double>(fraction) * 100.0));
}

// The status cell of a row, in words, and its colour.
static std::pair<std::string, ImVec4> row_status(const AppState& app, const ImageEntry& entry) {
  const Prediction& prediction = entry.prediction;
  const bool current = prediction.model_id == app.model.id && app.model.id > 0;
  switch (entry.status) {
    case EntryStatus::pending: return {tr("status.pending"), colours::dim};
    case EntryStatus::reading: return {tr("status.reading"), colours::dim};
    case EntryStatus::error: return {entry.error, colours::error};  // the core's message, naming the problem
    case EntryStatus::ok: break;
  }
  if (current && prediction.status == PredictionStatus::error) {
    return {trf("status.inference_failed", {{"error", prediction.error}}), colours::error};
  }
  if (current && prediction.status == PredictionStatus::done && !intended_use_warning(app, entry).empty()) {
    return {tr("status.not_intended"), colours::caution};  // the card's intended images (DICOM tags)
  }
  if (current && prediction.status == PredictionStatus::done && prediction.out_of_distribution) {
    return {tr("status.ood"), colours::caution};
  }
  if (current && prediction.status == PredictionStatus::running) return {tr("status.running"), colours::dim};
  return {tr("status.ok"), colours::local};
}

static void draw_batch_table(const AppState& app, UiActions& actions) {
  char filter[256];
  std::snprintf(filter, sizeof filter, "%s", app.table.filter.c_str());
  ImGui::SetNextItemWidth(-1.0f);
  if (ImGui::InputTextWithHint("##filter", tr("table.filter_hint").c_str(), filter, sizeof filter)) actions.filter = filter;
  ui::tooltip(tr("table.filter_tip"));
  if (app.table.cell) {
    // The clicked confusion-matrix cell: which images these are, and the way back to all of them.
    const std::vector<std::string>& names = active_classes(app);
    const auto name = [&](int c) { return c >= 0 && static_cast<size_t>(c) < names.size() ? names[static_cast<size_t>(c)] : std::string("?"); };
    const std::string show_all = tr("table.cell_show_all");
    if (ImGui::Button(show_all.c_str())) actions.matrix_cell = std::optional<loupe::MatrixCell>();
    note_widget(actions, "showAllImages");
    ImGui::SameLine();
    ui::wrapped(colours::caution, trf("table.cell_showing", {{"count", std::to_string(app.views.rows.size())},
                                                            {"true", name(app.table.cell->true_class)},
                                                            {"predicted", name(app.table.cell->predicted_class)}}));
  }

  const std::vector<std::string>& classes = active_classes(app);
  // Fixed columns as wide as their header and widest content (the classes of this model); the
  // name and status stretch and shorten long texts with an ellipsis. A new model, language or text
  // size is a new table, so these widths apply again.
  float class_width = text_width("-");
  for (const std::string& name : classes) class_width = std::max(class_width, text_width(name));
  const float pad = 2.0f * ImGui::GetStyle().CellPadding.x;
  struct ColumnSpec { const char* key; Column column; ImGuiTableColumnFlags flags; float width; };
  const ColumnSpec columns[] = {
      {"table.name", Column::name, ImGuiTableColumnFlags_WidthStretch | ImGuiTableColumnFlags_DefaultSort, 1.0f},
      {"table.prediction", Column::prediction, ImGuiTableColumnFlags_WidthFixed,
       std::max(ui::header_width(tr("table.prediction")), class_width + pad)},
      {"table.confidence", Column::confidence, ImGuiTableColumnFlags_WidthFixed,
       std::max(ui::header_width(tr("table.confidence")), text_width("100%") + pad)},
      {"table.size", Column::size, ImGuiTableColumnFlags_WidthFixed | ImGuiTableColumnFlags_DefaultHide,
       std::max(ui::header_width(tr("table.size")), text_width("999.9 MB") + pad)},
      {"table.pixels", Column::dimensions, ImGuiTableColumnFlags_WidthFixed,
       std::max(ui::header_width(tr("table.pixels")), text_width("8888x8888") + pad)},
      {"table.status", Column::status, ImGuiTableColumnFlags_WidthStretch, 0.6f},
  };
  char table_id[64];
  std::snprintf(table_id, sizeof table_id, "batch-%d-%s-%.0f", app.model.id, language_code(app.ui.language),
                static_cast<double>(app.ui.font_size));
  const ImGuiTableFlags flags = ImGuiTableFlags_Sortable | ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY |
                                ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_Resizable | ImGuiTableFlags_Hideable |
                                ImGuiTableFlags_SizingFixedFit;
  if (!ImGui::BeginTable(table_id, 6, flags)) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  for (const ColumnSpec& spec : columns) {
    ImGui::TableSetupColumn(tr(spec.key).c_str(), spec.flags, spec.width, static_cast<ImGuiID>(spec.column));
  }
  ImGui::TableNextRow(ImGuiTableRowFlags_Headers);
  for (int c = 0; c < 6; ++c) {
    if (!ImGui::TableSetColumnIndex(c)) continue;
    ImGui::PushID(c);
    ui::table_header(tr(columns[c].key));
    ImGui::PopID();
  }
  if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs(); specs && specs->SpecsDirty) {
    if (specs->SpecsCount > 0) {
      const ImGuiTableColumnSortSpecs& spec = specs->Specs[0];
      actions.sort = {static_cast<Column>(spec.ColumnUserID), spec.SortDirection != ImGuiSortDirection_Descending};
    }
    specs->SpecsDirty = false;  // ImGui's own flag: the request is in `actions` now
  }

  const std::vector<int>& rows = app.views.rows;
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
      const Prediction& prediction = entry.prediction;
      ImGui::TableNextRow();
      ImGui::PushID(index);
      if (ImGui::TableNextColumn()) {
        // The path, cut in the middle when the column is narrow (folder start and file name stay);
        // the whole row selects.
        const std::string shown = ui::shortened(entry.path, ImGui::GetContentRegionAvail().x, ui::Shorten::middle);
        if (ImGui::Selectable((shown + "##row").c_str(), index == app.selected, ImGuiSelectableFlags_SpanAllColumns)) {
          actions.select = index;
        }
        if (index == app.selected && app.scroll_to_selected) ImGui::SetScrollHereY(0.5f);
        if (shown.size() != entry.path.size()) {
          actions.ellipsised.push_back({"table", entry.path, text_width(entry.path), ImGui::GetContentRegionAvail().x});
          ui::tooltip(entry.path);
        }
      }
      const std::string predicted = predicted_class(entry, classes, app.model.id);
      if (ImGui::TableNextColumn() && !predicted.empty()) ui::fit(predicted);
      if (ImGui::TableNextColumn() && !predicted.empty()) ui::text(num("%.0f%%", static_cast<double>(prediction.confidence) * 100.0));
      if (ImGui::TableNextColumn()) ui::text(human_size(entry.size_bytes));
      if (ImGui::TableNextColumn() && entry.width > 0) ui::text(std::to_string(entry.width) + "x" + std::to_string(entry.height));
      if (ImGui::TableNextColumn()) {
        const auto [status, colour] = row_status(app, entry);
        ui::fit(colour, status);
      }
      ImGui::PopID();
    }
  }
  ImGui::EndTable();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Viewer: image, heat map, probabilities
//-----------------------------------------------------------------------------------------------

// One horizontal bar per class, the predicted class highlighted.
static void draw_probabilities(const AppState& app, const ImageEntry& entry, UiActions& actions) {
  const Prediction& prediction = entry.prediction;
  const std::vector<std::string>& classes = active_classes(app);
  if (app.model.status != ModelStatus::ready) {
    ui::wrapped(colours::dim, tr("viewer.no_model"));
    return;
  }
  if (prediction.model_id != app.model.id || prediction.status == PredictionStatus::none ||
      prediction.status == PredictionStatus::running) {
    ui::wrapped(colours::dim, tr(app.paused ? "viewer.not_classified" : "viewer.classifying"));
    return;
  }
  if (prediction.status == PredictionStatus::error) {
    ui::wrapped(colours::error, trf("viewer.inference_failed", {{"error", prediction.error}}));
    return;
  }
  if (ui::small_button(tr("viewer.save_report"), "saveReport")) actions.save_report = true;
  note_widget(actions, "saveReport");
  ui::tooltip(tr("viewer.save_report_tip"));
  if (entry.frames > 1) {
    // A multi-frame file: the first frame by default; another one is read and classified again.
    const bool can_choose = can_choose_frame(app);
    ImGui::BeginDisabled(!can_choose || entry.frame <= 0);
    if (ImGui::ArrowButton("##previousFrame", ImGuiDir_Left)) actions.frame = entry.frame - 1;
    ImGui::EndDisabled();
    note_widget(actions, "previousFrame");
    ui::tooltip(tr("viewer.previous_frame"));
    ImGui::SameLine();
    ui::text(colours::dim, trf("viewer.dicom_frame", {{"frame", std::to_string(entry.frame + 1)}, {"frames", std::to_string(entry.frames)}}));
    ImGui::SameLine();
    ImGui::BeginDisabled(!can_choose || entry.frame + 1 >= entry.frames);
    if (ImGui::ArrowButton("##nextFrame", ImGuiDir_Right)) actions.frame = entry.frame + 1;
    ImGui::EndDisabled();
    note_widget(actions, "nextFrame");
    ui::tooltip(tr("viewer.next_frame"));
  }
  // A DICOM file the card says the model was not trained for: said before any probability.
  const std::string intended_warning = intended_use_warning(app, entry);
  if (!intended_warning.empty()) {
    ui::wrapped(colours::error, trf("viewer.not_intended", {{"images", app.model.info.card.intended_images->summary()},
                                                            {"reason", intended_warning}}));
  }
  const std::string& top = classes[static_cast<size_t>(prediction.top)];
  const std::string confidence = num("%.1f", static_cast<double>(prediction.confidence) * 100.0);
  if (prediction.has_ood && prediction.out_of_distribution) {
    // Not a confident answer: the warning comes first and the classes are shown dimmed.
    ui::wrapped(colours::error, trf("viewer.ood_warning", {{"distance", num("%.1f", static_cast<double>(prediction.ood_distance))},
                                                           {"threshold", num("%.1f", app.model.info.card.ood->threshold)},
                                                           {"class", top}, {"confidence", confidence}}));
  } else {
    const std::string line = trf("viewer.prediction", {{"class", top}, {"confidence", confidence}});
    same_line_if_fits(text_width(line));
    ui::fit(colours::text(), line);
    const std::string& note = tr("viewer.not_a_diagnosis");
    same_line_if_fits(text_width(note));
    ui::wrapped(colours::caution, note);
  }
  std::string probabilities = trf("viewer.probabilities", {{"note", probability_note_text(app.model.info.card, g_words->language())}});
  if (prediction.has_ood && !prediction.out_of_distribution) probabilities += " " + tr("viewer.within_training");
  ui::wrapped(colours::dim, probabilities);
  // Class names get up to 40% of the width (cut with an ellipsis beyond, whole on hover).
  float label_width = 0;
  for (const std::string& name : classes) label_width = std::max(label_width, text_width(name));
  label_width = std::min(label_width, ImGui::GetContentRegionAvail().x * 0.4f);
  const ImVec4 bar = prediction.has_ood && prediction.out_of_distribution ? colours::dim
                                                                         : ImGui::GetStyle().Colors[ImGuiCol_PlotHistogram];
  for (size_t c = 0; c < classes.size() && c < prediction.probabilities.size(); ++c) {
    const bool is_top = static_cast<int>(c) == prediction.top;
    ImGui::PushID(static_cast<int>(c));
    const float x = ImGui::GetCursorPosX();
    ImGui::AlignTextToFramePadding();  // the name on the bar's text line
    const std::string shown = ui::shortened(classes[c], label_width);
    ui::text(is_top ? colours::text() : colours::dim, shown);
    if (shown.size() != classes[c].size()) {
      actions.ellipsised.push_back({"probabilities", classes[c], text_width(classes[c]), label_width});
      ui::tooltip(classes[c]);
    }
    ImGui::SameLine(x + label_width + em(1.0f));
    ImGui::PushStyleColor(ImGuiCol_PlotHistogram, is_top ? bar : ImVec4{bar.x * 0.55f, bar.y * 0.55f, bar.z * 0.6f, 1.0f});
    ui::progress_bar(prediction.probabilities[c], -1.0f, num("%.1f%%", static_cast<double>(prediction.probabilities[c]) * 100.0));
    ImGui::PopStyleColor();
    ImGui::PopID();
  }
}

static void draw_image(const AppState& app, UiActions& actions) {
  const ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
  if (entry.status == EntryStatus::error) {
    ui::wrapped(colours::error, trf("viewer.cannot_open", {{"error", entry.error}}));
    return;
  }
  const ImageView& view = app.view;
  if (view.entry != app.selected || view.texture == 0) {
    ui::text(colours::dim, tr("viewer.decoding"));
    return;
  }
  const loupe::Image& image = view.image;
  const std::string& kind = tr(image.channels == 1 ? "viewer.gray" : image.channels == 3 ? "viewer.rgb" : "viewer.rgba");
  ui::fit(colours::dim, trf("viewer.image_info", {{"width", std::to_string(image.width)}, {"height", std::to_string(image.height)},
                                                 {"kind", kind}, {"bits", image.depth == loupe::PixelDepth::U16 ? "16" : "8"},
                                                 {"zoom", num("%.0f", static_cast<double>(view.zoom) * 100.0)}}));
  if (image.channels == 1) {
    // Both sliders share what the labels and the reset button leave of the line (at least 5 em
    // each: below that they wrap onto the next line).
    const ImGuiStyle& style = ImGui::GetStyle();
    const float fixed = text_width(tr("viewer.window")) + text_width(tr("viewer.level")) + button_width(tr("viewer.reset")) +
                        2.0f * style.ItemInnerSpacing.x + 2.0f * style.ItemSpacing.x;
    const float slider_width = std::max(em(5.0f), (ImGui::GetContentRegionAvail().x - fixed) * 0.5f - 1.0f);
    WindowLevel window = view.window;
    ImGui::SetNextItemWidth(slider_width_for(slider_width, tr("viewer.window")));
    bool changed = ui::slider(tr("viewer.window"), "window", &window.width, 0.002f, 1.0f, "%.3f");
    ui::tooltip(tr("viewer.window_tip"));
    same_line_if_fits(slider_width + style.ItemInnerSpacing.x + text_width(tr("viewer.level")));
    ImGui::SetNextItemWidth(slider_width_for(slider_width, tr("viewer.level")));
    changed |= ui::slider(tr("viewer.level"), "level", &window.level, 0.0f, 1.0f, "%.3f");
    ui::tooltip(tr("viewer.level_tip"));
    if (changed) actions.window = window;
    same_line_if_fits(button_width(tr("viewer.reset")));
  }
  if (ui::button(tr("viewer.reset"), "resetView")) actions.reset_view = true;
  note_widget(actions, "resetView");
  ui::tooltip(tr("viewer.reset_tip"));

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
  if (view.heat_ready && view.heat_texture_class >= 0 && view.heat_texture_class == heat_map_class(app)) {
    const int alpha = static_cast<int>(std::lround(std::clamp(app.heat_map.opacity, 0.0f, 1.0f) * 255.0f));
    draw_list->AddImage(reinterpret_cast<ImTextureID>(static_cast<intptr_t>(view.heat_texture)),
                        {mid.x - half_w, mid.y - half_h}, {mid.x + half_w, mid.y + half_h}, {0, 0}, {1, 1},
                        IM_COL32(255, 255, 255, alpha));
  }
  draw_list->PopClipRect();
}

// Heat map on/off, which class, how opaque; or why there is none.
static void draw_heat_map_controls(const AppState& app, UiActions& actions) {
  if (app.model.status != ModelStatus::ready) return;
  if (!app.model.info.card.has_output("cam")) {
    ui::wrapped(colours::dim, tr("heat.none"));
    return;
  }
  HeatMapView heat = app.heat_map;
  bool changed = ui::checkbox(tr("heat.label"), "heatMap", &heat.visible);
  note_widget(actions, "heatMap");
  ui::tooltip(tr("heat.tip"));
  if (heat.visible) {
    const std::vector<std::string>& classes = active_classes(app);
    float combo_width = text_width(tr("heat.predicted_class"));
    for (const std::string& name : classes) combo_width = std::max(combo_width, text_width(name));
    combo_width = std::min(combo_width + ImGui::GetFrameHeight() + 2.0f * ImGui::GetStyle().FramePadding.x, em(14.0f));
    same_line_if_fits(combo_width);
    const std::string& current = heat.class_index < 0 ? tr("heat.predicted_class") : classes[static_cast<size_t>(heat.class_index)];
    if (ui::begin_combo("##heat-class", current, combo_width)) {
      if (ui::selectable(tr("heat.predicted_class"), "predicted", heat.class_index < 0)) heat.class_index = -1, changed = true;
      for (size_t c = 0; c < classes.size(); ++c) {
        if (ui::selectable(classes[c], classes[c].c_str(), heat.class_index == static_cast<int>(c))) {
          heat.class_index = static_cast<int>(c);
          changed = true;
        }
      }
      ImGui::EndCombo();
    }
    const float slider_width = em(7.0f);
    same_line_if_fits(slider_width + ImGui::GetStyle().ItemInnerSpacing.x + text_width(tr("heat.opacity")));
    ImGui::SetNextItemWidth(slider_width_for(slider_width, tr("heat.opacity")));
    changed |= ui::slider(tr("heat.opacity"), "opacity", &heat.opacity, 0.0f, 1.0f, "%.2f");
  }
  if (changed) actions.heat_map = heat;
}

static void draw_viewer(const AppState& app, UiActions& actions) {
  if (app.selected < 0) return;
  const ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
  ui::fit(entry.path, ui::Shorten::middle);
  // The probabilities take a band at the bottom (scrolling if its text needs more); the image gets
  // the rest.
  const float line = ImGui::GetFrameHeightWithSpacing();
  const float band = entry.status == EntryStatus::error ? 0.0f
                     : std::min(ImGui::GetContentRegionAvail().y * 0.5f,
                                line * (4.5f + static_cast<float>(std::max<size_t>(1, active_classes(app).size()))));
  if (entry.status != EntryStatus::error) draw_heat_map_controls(app, actions);
  ImGui::BeginChild("image", {0.0f, -band}, false, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  draw_image(app, actions);
  ImGui::EndChild();
  if (band > 0.0f) {
    ImGui::Separator();
    ImGui::BeginChild("probabilities", {0.0f, 0.0f}, false);
    draw_probabilities(app, entry, actions);
    ImGui::EndChild();
  }
}

static void draw_workspace(const AppState& app, UiActions& actions) {
  if (app.images.empty()) {
    draw_empty_workspace(app, actions);
    return;
  }
  draw_open_buttons(actions);
  draw_batch_bar(app, actions);

  // Table | viewer, with a border the user can drag.
  const float avail = ImGui::GetContentRegionAvail().x;
  char split_id[48];
  std::snprintf(split_id, sizeof split_id, "split-%.0f", static_cast<double>(app.ui.font_size));
  // No vertical cell padding: the panes fill the height exactly (no scrollbar for a few pixels).
  ImGui::PushStyleVar(ImGuiStyleVar_CellPadding, {ImGui::GetStyle().CellPadding.x, 0.0f});
  const bool split = ImGui::BeginTable(split_id, 2, ImGuiTableFlags_Resizable | ImGuiTableFlags_BordersInnerV |
                                                        ImGuiTableFlags_SizingFixedFit, ImGui::GetContentRegionAvail());
  ImGui::PopStyleVar();
  if (!split) return;
  ImGui::TableSetupColumn("batch", ImGuiTableColumnFlags_WidthFixed, std::clamp(avail * 0.55f, em(20.0f), em(46.0f)));
  ImGui::TableSetupColumn("viewer", ImGuiTableColumnFlags_WidthStretch);
  ImGui::TableNextRow();
  ImGui::TableNextColumn();
  ImGui::BeginChild("batch", {0.0f, 0.0f}, false);
  draw_batch_table(app, actions);
  ImGui::EndChild();
  ImGui::TableNextColumn();
  ImGui::BeginChild("viewer", {0.0f, 0.0f}, false, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  draw_viewer(app, actions);
  ImGui::EndChild();
  ImGui::EndTable();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Evaluation window
//-----------------------------------------------------------------------------------------------

// `text` turned a quarter to the left (read bottom to top), its baseline start at `bottom_left`:
// a column header as long as a class name needs, in a column as narrow as a line.
static void add_vertical_text(ImDrawList* draw_list, ImVec2 bottom_left, ImU32 colour, std::string_view text) {
  const int first = draw_list->VtxBuffer.Size;
  draw_list->AddText(bottom_left, colour, text.data(), text.data() + text.size());
  for (int i = first; i < draw_list->VtxBuffer.Size; ++i) {
    ImVec2& p = draw_list->VtxBuffer[i].pos;
    const ImVec2 d{p.x - bottom_left.x, p.y - bottom_left.y};
    p = {bottom_left.x + d.y, bottom_left.y - d.x};
  }
}

// Rows are true classes, columns predicted ones; each cell is shaded by its share of the row
// (recall), so a good model shows a bright diagonal whatever the class sizes. Column headers are
// the whole class names, turned upright.
// Each cell is a button: it shows its images in the table (and the first in the viewer, with its
// heat map); the same cell again, or "Show all images" above the table, shows every image.
static void draw_confusion_matrix(const loupe::ConfusionMatrix& matrix, const std::optional<loupe::MatrixCell>& chosen,
                                  UiActions& actions) {
  const size_t n = matrix.num_classes();
  const std::vector<std::string>& names = matrix.class_names();
  float label_width = text_width(tr("eval.true_class"));
  float name_width = 0;
  for (const std::string& name : names) {
    label_width = std::max(label_width, text_width(name));
    name_width = std::max(name_width, text_width(name));
  }
  const float line = ImGui::GetTextLineHeight();
  char widest[32];
  std::snprintf(widest, sizeof widest, "%lld", static_cast<long long>(matrix.total()));
  const float min_cell = std::max(line * 1.8f, text_width(widest) + em(0.8f));
  const float gap = em(0.8f);
  const float cell = std::clamp((ImGui::GetContentRegionAvail().x - label_width - gap) / static_cast<float>(n), min_cell, em(4.5f));
  ImDrawList* draw_list = ImGui::GetWindowDrawList();
  ui::text(colours::dim, tr("eval.predicted_class"));
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const float header = name_width + em(0.6f);
  const float grid_x = origin.x + label_width + gap;
  ui::check_span(tr("eval.true_class"), origin.x, origin.x + text_width(tr("eval.true_class")), origin.y + header - line);
  draw_list->AddText({origin.x, origin.y + header - line}, ImGui::GetColorU32(colours::dim), tr("eval.true_class").c_str());
  for (size_t j = 0; j < n; ++j) {
    const float x = grid_x + static_cast<float>(j) * cell + (cell - line) * 0.5f;
    add_vertical_text(draw_list, {x, origin.y + header - em(0.3f)}, ImGui::GetColorU32(ImGuiCol_Text), names[j]);
    ui::check_span(names[j], x, x + line, origin.y + header * 0.5f);
  }
  for (size_t i = 0; i < n; ++i) {
    const float y = origin.y + header + static_cast<float>(i) * cell;
    draw_list->AddText({origin.x, y + (cell - line) * 0.5f}, ImGui::GetColorU32(ImGuiCol_Text), names[i].c_str());
    ui::check_span(names[i], origin.x, origin.x + text_width(names[i]), y + cell * 0.5f);
    const double row = static_cast<double>(std::max<int64_t>(1, matrix.true_count(static_cast<int>(i))));
    for (size_t j = 0; j < n; ++j) {
      const int64_t count = matrix.at(static_cast<int>(i), static_cast<int>(j));
      const float share = static_cast<float>(static_cast<double>(count) / row);
      const ImVec2 min{grid_x + static_cast<float>(j) * cell, y};
      const ImVec2 max{min.x + cell - 2.0f, min.y + cell - 2.0f};
      const ImVec4 fill{0.12f + 0.10f * share, 0.16f + 0.50f * share, 0.22f + 0.62f * share, 1.0f};
      draw_list->AddRectFilled(min, max, ImGui::ColorConvertFloat4ToU32(fill), 3.0f);
      const loupe::MatrixCell here{static_cast<int>(i), static_cast<int>(j)};
      const bool is_chosen = chosen && *chosen == here;
      ImGui::SetCursorScreenPos(min);
      ImGui::PushID(static_cast<int>(i * n + j));
      if (ImGui::InvisibleButton("cell", {max.x - min.x, max.y - min.y}) && count > 0) {
        actions.matrix_cell = is_chosen ? std::optional<loupe::MatrixCell>() : std::optional<loupe::MatrixCell>(here);
      }
      ImGui::PopID();
      const std::string widget = "matrixCell-" + std::to_string(i) + "-" + std::to_string(j);
      note_widget(actions, widget.c_str());
      if (count > 0) {
        ui::tooltip(trf(is_chosen ? "eval.cell_tip_chosen" : "eval.cell_tip",
                        {{"count", std::to_string(count)}, {"true", names[i]}, {"predicted", names[j]}}));
      }
      if (is_chosen || (count > 0 && ImGui::IsItemHovered())) {
        draw_list->AddRect(min, max, ImGui::GetColorU32(is_chosen ? colours::caution : colours::text()), 3.0f, 0,
                           is_chosen ? 3.0f : 1.5f);
      }
      const std::string text = std::to_string(count);
      const ImVec2 size = ImGui::CalcTextSize(text.c_str());
      draw_list->AddText({min.x + (cell - size.x) * 0.5f, min.y + (cell - size.y) * 0.5f},
                         ImGui::GetColorU32(share > 0.5f ? ImVec4{0, 0, 0, 1} : ImVec4{1, 1, 1, 1}), text.c_str());
      ui::check_span(text, min.x + (cell - size.x) * 0.5f, min.x + (cell + size.x) * 0.5f, min.y + cell * 0.5f);
    }
  }
  ImGui::SetCursorScreenPos(origin);
  ImGui::Dummy({label_width + gap + cell * static_cast<float>(n), header + cell * static_cast<float>(n)});
  ui::wrapped(colours::dim, tr("eval.cell_hint"));
}

// The classification report as a table: per class and averaged, with 95% intervals once the
// batch has finished.
static void draw_report_table(const loupe::ClassificationReport& report) {
  const std::optional<loupe::ReportIntervals>& intervals = report.intervals;
  const auto value = [&](double v, const std::vector<loupe::Interval>* per_class, size_t c) {
    return per_class && c < per_class->size() ? loupe::with_interval(v, (*per_class)[c]) : num("%.3f", v);
  };
  const char* const headers[] = {"metrics.class", "metrics.precision", "metrics.recall", "metrics.f1", "metrics.support"};
  if (!ImGui::BeginTable("report", 5, ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) return;
  ImGui::TableNextRow();
  for (const char* header : headers) {
    ImGui::TableNextColumn();
    ui::text(colours::dim, tr(header));
  }
  const auto row = [&](const loupe::ClassMetrics& metrics, size_t c, bool per_class) {
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ui::text(metrics.name);
    ImGui::TableNextColumn();
    ui::text(value(metrics.precision, per_class && intervals ? &intervals->precision : nullptr, c));
    ImGui::TableNextColumn();
    ui::text(value(metrics.recall, per_class && intervals ? &intervals->recall : nullptr, c));
    ImGui::TableNextColumn();
    ui::text(value(metrics.f1, per_class && intervals ? &intervals->f1 : nullptr, c));
    ImGui::TableNextColumn();
    ui::text(std::to_string(metrics.support));
  };
  for (size_t c = 0; c < report.per_class.size(); ++c) row(report.per_class[c], c, true);
  loupe::ClassMetrics macro = report.macro_avg, weighted = report.weighted_avg;
  macro.name = tr("metrics.macro_avg");
  weighted.name = tr("metrics.weighted_avg");
  row(macro, 0, false);
  row(weighted, 0, false);
  ImGui::EndTable();

  const auto with = [&](double v, const std::optional<loupe::Interval>& interval) {
    return interval ? loupe::with_interval(v, *interval) : num("%.3f", v);
  };
  ui::wrapped(colours::text(), trf("eval.accuracy", {{"value", with(report.accuracy, intervals ? std::optional(intervals->accuracy) : std::nullopt)},
                                                     {"total", std::to_string(report.total)}}));
  ui::wrapped(colours::text(), trf("eval.balanced_accuracy",
                                   {{"value", with(report.balanced_accuracy, intervals ? std::optional(intervals->balanced_accuracy) : std::nullopt)}}));
  if (report.macro_roc_auc) {
    ui::wrapped(colours::text(), trf("eval.roc_auc", {{"value", with(*report.macro_roc_auc, intervals ? intervals->macro_roc_auc : std::nullopt)}}));
  }
  if (report.ece) {
    ui::wrapped(colours::text(), trf("eval.ece", {{"value", with(*report.ece, intervals ? std::optional(intervals->ece) : std::nullopt)}}));
  }
  if (intervals) {
    ui::wrapped(colours::dim, trf("eval.intervals_note", {{"resamples", std::to_string(intervals->resamples)}}));
  } else {
    ui::wrapped(colours::dim, tr("eval.intervals_pending"));
  }
}

static void draw_evaluation_window(const AppState& app, UiActions& actions) {
  if (!app.show_evaluation || app.model.status != ModelStatus::ready) return;
  const ImGuiViewport* viewport = ImGui::GetMainViewport();
  // Below the button that toggles it (the workspace's button row), so "Hide evaluation" stays in
  // reach; never larger than the rest of the page, and back inside it when the page shrinks: a
  // window partly off screen would cut its text off.
  const float top = std::clamp(g_evaluation_top, viewport->WorkPos.y, viewport->WorkPos.y + viewport->WorkSize.y * 0.4f);
  const float room_y = viewport->WorkPos.y + viewport->WorkSize.y - top - 10.0f;
  ImGui::SetNextWindowSize({std::min(em(50.0f), viewport->WorkSize.x - 40.0f), std::min(em(44.0f), room_y)}, ImGuiCond_Appearing);
  ImGui::SetNextWindowPos({viewport->WorkPos.x + viewport->WorkSize.x * 0.5f, top}, ImGuiCond_Appearing, {0.5f, 0.0f});
  ImGui::SetNextWindowSizeConstraints({std::min(em(20.0f), viewport->WorkSize.x), std::min(em(12.0f), room_y)},
                                      {viewport->WorkSize.x - 20.0f, room_y});
  bool open = true;
  if (ImGui::Begin((tr("eval.title") + "###evaluation").c_str(), &open, ImGuiWindowFlags_NoSavedSettings)) {
    const ImVec2 pos = ImGui::GetWindowPos(), size = ImGui::GetWindowSize();
    const ImVec2 inside{std::max(viewport->WorkPos.x, std::min(pos.x, viewport->WorkPos.x + viewport->WorkSize.x - size.x)),
                        std::max(top, std::min(pos.y, viewport->WorkPos.y + viewport->WorkSize.y - size.y))};
    if (inside.x != pos.x || inside.y != pos.y) ImGui::SetWindowPos(inside);
    const std::vector<std::string>& classes = active_classes(app);
    const loupe::Evaluation& evaluation = app.views.evaluation;
    const BatchProgress progress = batch_progress(app);
    ui::wrapped(colours::text(), trf("eval.intro", {{"classes", join(classes, ", ")}}));
    std::string counts = trf("eval.counts", {{"labelled", std::to_string(evaluation.labelled)},
                                             {"ood", std::to_string(evaluation.out_of_distribution)},
                                             {"unlabelled", std::to_string(evaluation.unlabelled)},
                                             {"failed", std::to_string(evaluation.failed)}});
    if (progress.done < progress.total) counts += " " + tr("eval.partial");
    ui::wrapped(colours::dim, counts);
    if (!evaluation.report) {
      ui::wrapped(colours::caution, tr("eval.no_labels"));
    } else {
      ImGui::Spacing();
      draw_confusion_matrix(*evaluation.matrix, app.table.cell, actions);
      ImGui::Spacing();
      draw_report_table(*evaluation.report);
      ui::wrapped(colours::caution, tr("eval.not_validation"));
    }
    draw_site_calibration_button(app, actions);
  }
  ImGui::End();
  if (!open) actions.show_evaluation = false;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Keyboard help
//-----------------------------------------------------------------------------------------------

// `?` opens and closes it, Escape closes it; typing in the filter box is left alone.
static void read_help_keys(const AppState& app, UiActions& actions) {
  const ImGuiIO& io = ImGui::GetIO();
  if (io.WantTextInput) return;
  for (const ImWchar c : io.InputQueueCharacters) {
    if (c == '?') actions.show_help = !app.ui.show_help;
    if (c == '+' || c == '=') actions.font_size = app.ui.font_size + 1.0f;
    if (c == '-') actions.font_size = app.ui.font_size - 1.0f;
  }
  // Escape closes the window on top: the help, else the evaluation.
  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) {
    if (app.ui.show_help) actions.show_help = false;
    else if (app.show_evaluation) actions.show_evaluation = false;
  }
}

static void draw_help_window(const AppState& app, UiActions& actions) {
  if (!app.ui.show_help) return;
  const ImGuiViewport* viewport = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos({viewport->WorkPos.x + viewport->WorkSize.x * 0.5f, viewport->WorkPos.y + viewport->WorkSize.y * 0.5f},
                          ImGuiCond_Always, {0.5f, 0.5f});
  ImGui::SetNextWindowSize({std::min(em(34.0f), viewport->WorkSize.x - 40.0f), 0.0f}, ImGuiCond_Always);
  bool open = true;
  if (ImGui::Begin((tr("help.title") + "###help").c_str(), &open,
                   ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoCollapse | ImGuiWindowFlags_NoResize)) {
    struct Row { const char* keys; const char* what; };
    const Row rows[] = {
        {"help.keys_help", "help.help"},       {"help.keys_move", "help.move"},     {"help.keys_zoom", "help.zoom"},
        {"help.keys_pan", "help.pan"},         {"help.keys_text", "help.text"},     {"help.keys_filter", "help.filter"},
        {"help.keys_close", "help.close"},
    };
    float key_width = 0;
    for (const Row& row : rows) key_width = std::max(key_width, text_width(tr(row.keys)));
    if (ImGui::BeginTable("keys", 2, ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_RowBg)) {
      ImGui::TableSetupColumn("keys", ImGuiTableColumnFlags_WidthFixed, std::min(key_width, ImGui::GetContentRegionAvail().x * 0.4f));
      ImGui::TableSetupColumn("what", ImGuiTableColumnFlags_WidthStretch);
      for (const Row& row : rows) {
        ImGui::TableNextRow();
        ImGui::TableNextColumn();
        ui::wrapped(colours::local, tr(row.keys));
        ImGui::TableNextColumn();
        ui::wrapped(colours::text(), tr(row.what));
      }
      ImGui::EndTable();
    }
    ImGui::Spacing();
    ui::wrapped(colours::dim, tr("help.local"));
  }
  ImGui::End();
  if (!open) actions.show_help = false;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] draw_app
//-----------------------------------------------------------------------------------------------

void draw_app(const AppState& app, UiActions& actions) {
  g_words = &Catalogue::of(app.ui.language);
  const ui::FrameRecord record(actions);
  read_help_keys(app, actions);
  draw_menu_bar(app, actions);

  // One undecorated window covering the rest of the page: sidebar | workspace (a border the user
  // can drag between them), footer below.
  const ImGuiViewport* viewport = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(viewport->WorkPos);
  ImGui::SetNextWindowSize(viewport->WorkSize);
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove |
                                 ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;
  ImGui::Begin("Loupe", nullptr, flags);
  const std::string& footer = tr("footer.not_diagnostic");
  const ImGuiStyle& style = ImGui::GetStyle();
  const float footer_height =
      ImGui::CalcTextSize(footer.c_str(), nullptr, false, ImGui::GetContentRegionAvail().x).y + 2.0f * style.ItemSpacing.y;

  const float avail = ImGui::GetContentRegionAvail().x;
  char layout_id[48];
  std::snprintf(layout_id, sizeof layout_id, "layout-%.0f", static_cast<double>(app.ui.font_size));
  // Child windows sized 0 fill their window to the bottom, so the footer's room is kept explicitly.
  const float panels_height = std::max(em(4.0f), ImGui::GetContentRegionAvail().y - footer_height);
  ImGui::PushStyleVar(ImGuiStyleVar_CellPadding, {ImGui::GetStyle().CellPadding.x, 0.0f});
  const bool layout = ImGui::BeginTable(layout_id, 2, ImGuiTableFlags_Resizable | ImGuiTableFlags_BordersInnerV |
                                                          ImGuiTableFlags_SizingFixedFit, {0.0f, panels_height});
  ImGui::PopStyleVar();
  if (layout) {
    ImGui::TableSetupColumn("sidebar", ImGuiTableColumnFlags_WidthFixed, std::clamp(avail * 0.26f, em(16.0f), em(26.0f)));
    ImGui::TableSetupColumn("workspace", ImGuiTableColumnFlags_WidthStretch);
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ImGui::BeginChild("sidebar", {0.0f, panels_height}, true);
    draw_model_section(app, actions);
    draw_runtime_section(app);
    draw_browser_section(app);
    draw_build_section(app);
    ImGui::EndChild();
    ImGui::TableNextColumn();
    ImGui::BeginChild("workspace", {0.0f, panels_height}, true);
    draw_workspace(app, actions);
    ImGui::EndChild();
    ImGui::EndTable();
  }
  ui::wrapped(colours::dim, footer);
  ImGui::End();
  draw_evaluation_window(app, actions);
  draw_site_calibration_window(app, actions);
  draw_help_window(app, actions);
}

}  // namespace loupe_web
