// Drawing: every pixel of the page is a function of AppState (app.h). Nothing here changes the
// state; what the user does is recorded in UiActions and applied by apply() (app_logic.h) after
// the frame. The table's rows and the evaluation come precomputed in AppState::views.
//
// Index:
//   [SECTION] Colours, badges, menu bar
//   [SECTION] Sidebar: model card, runtime, browser, build
//   [SECTION] Workspace: open buttons, batch progress, table, viewer, probabilities
//   [SECTION] Evaluation window
//   [SECTION] draw_app

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "app.h"
#include "loupe/metrics.h"
#include "loupe/prediction.h"
#include "imgui.h"

namespace loupe_web {


//-----------------------------------------------------------------------------------------------
// [SECTION] Colours, badges, menu bar
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

//-----------------------------------------------------------------------------------------------
// [SECTION] Sidebar: model card, runtime, browser, build
//-----------------------------------------------------------------------------------------------

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

static void wrapped(const ImVec4& colour, const std::string& text) {
  ImGui::PushStyleColor(ImGuiCol_Text, colour);
  ImGui::TextWrapped("%s", text.c_str());
  ImGui::PopStyleColor();
}

static void draw_model_picker(const AppState& app, UiActions& actions) {
  if (ImGui::Button("Open model...")) actions.open_model = true;
  note_widget(actions, "openModel");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("An .onnx file exported by `loupe export` (it carries a model card).");
  const nlohmann::json& shipped = app.shipped_models;
  if (!shipped.is_object() || !shipped.contains("models") || !shipped["models"].is_array()) return;
  ImGui::SameLine();
  ImGui::SetNextItemWidth(-1.0f);
  const std::string current = app.model.source == "shipped" ? app.model.file : std::string("Shipped models");
  if (ImGui::BeginCombo("##shipped", current.c_str())) {
    for (const nlohmann::json& entry : shipped["models"]) {
      const std::string file = entry.value("file", "");
      const std::string title = entry.value("title", file);
      if (ImGui::Selectable(title.c_str(), app.model.source == "shipped" && app.model.file == file)) {
        actions.open_shipped = file;
      }
    }
    ImGui::EndCombo();
  }
}

// The model card: what the model is, what it was trained and tested on, and what it is not for.
static void draw_model_section(const AppState& app, UiActions& actions) {
  section_title("Model");
  draw_model_picker(app, actions);
  if (app.model_load) {
    if (app.model_load->self_test_run > 0) {
      ImGui::TextColored(colours::dim, "Running the self-test of %s...", app.model_load->file.c_str());
    } else {
      ImGui::TextColored(colours::dim, "Opening %s...", app.model_load->file.c_str());
    }
  }
  if (!app.model_error.empty()) wrapped(colours::error, app.model_error);
  if (app.model.status != ModelStatus::ready) {
    if (!app.model_load && app.model_error.empty()) {
      ImGui::TextColored(colours::dim, app.shipped_error.empty() ? "Loading the default model..." : "No model loaded.");
    }
    if (!app.shipped_error.empty()) wrapped(colours::caution, "Shipped models unavailable: " + app.shipped_error);
    return;
  }
  const loupe::ModelCard& card = app.model.info.card;
  if (!begin_facts("card")) return;
  fact_key("Name");
  ImGui::TextWrapped("%s", card.name.empty() ? app.model.file.c_str() : card.name.c_str());
  fact_key("File");
  ImGui::TextWrapped("%s (%s)", app.model.file.c_str(), app.model.source == "shipped" ? "shipped" : "opened");
  fact_key("Architecture");
  ImGui::Text("%s, %.2f M parameters", card.architecture.c_str(), static_cast<double>(app.model.info.parameters) / 1e6);
  ImGui::TextWrapped("precision %s", card.precision_note().c_str());
  fact_key("Classes");
  ImGui::TextWrapped("%s", join(card.class_names, ", ").c_str());
  fact_key("Input");
  ImGui::Text("%s %dx%d", card.input_channels == 1 ? "gray" : "RGB", card.input_width, card.input_height);
  if (card.training_data.is_object()) {
    const nlohmann::json& data = card.training_data;
    std::string folder = json_text(data, "folder", "?");
    while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
    folder = folder.substr(folder.find_last_of('/') == std::string::npos ? 0 : folder.find_last_of('/') + 1);
    fact_key("Trained on");
    if (data.contains("images")) {
      ImGui::TextWrapped("%s, %s images", folder.c_str(), data["images"].dump().c_str());
    } else {
      ImGui::TextWrapped("%s", folder.c_str());
    }
    if (data.contains("split") && data["split"].is_object()) {
      const nlohmann::json& split = data["split"];
      fact_key("Split");
      ImGui::TextWrapped("%s train / %s val / %s test, seed %s", split.value("train_images", nlohmann::json()).dump().c_str(),
                         split.value("val_images", nlohmann::json()).dump().c_str(),
                         split.value("test_images", nlohmann::json()).dump().c_str(),
                         split.value("seed", nlohmann::json()).dump().c_str());
    }
  }
  fact_key("Test metrics");
  if (card.test_metrics.is_object() && card.test_metrics.contains("accuracy")) {
    // With its 95% interval: how sure the figure is on the test split's size.
    const std::optional<loupe::Interval> ci = loupe::accuracy_interval_of(card.test_metrics);
    const std::string accuracy = ci ? loupe::with_interval(json_number(card.test_metrics, "accuracy"), *ci)
                                    : std::to_string(json_number(card.test_metrics, "accuracy"));
    ImGui::TextWrapped("accuracy %s (95%% interval), balanced %.3f, on %s held-out test images", accuracy.c_str(),
                       json_number(card.test_metrics, "balanced_accuracy"),
                       card.test_metrics.value("total", nlohmann::json()).dump().c_str());
  } else {
    ImGui::TextColored(colours::caution, "none recorded");
  }
  fact_key("Confidence");
  ImGui::TextWrapped("%s", loupe::probability_note(card).c_str());
  fact_key("OOD check");
  if (card.ood) {
    ImGui::TextWrapped("flags images beyond distance %.1f (%s)", card.ood->threshold,
                       card.ood->method.empty() ? "distance" : card.ood->method.c_str());
  } else {
    ImGui::TextColored(colours::caution, "none: unusual images are not flagged");
  }
  fact_key("Weights");
  const bool verified = !card.weights_sha256.empty() && card.weights_sha256 == app.model.weights_sha256;
  ImGui::TextColored(verified ? colours::local : colours::caution, "SHA-256 %s... %s",
                     app.model.weights_sha256.substr(0, 12).c_str(),
                     verified ? "(matches the card)" : card.weights_sha256.empty() ? "(card has no hash)" : "(MISMATCH)");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", app.model.weights_sha256.c_str());
  fact_key("Self-test");
  if (app.model.has_self_test) {
    // Only a passing model becomes active (app_logic.cpp), so this line is the proof.
    ImGui::TextColored(colours::local, "verified in this browser: max difference %.2g (tolerance %.2g), %d synthetic images",
                       app.model.self_test.max_abs_diff, app.model.self_test.worst_bound, app.model.self_test.images);
    if (ImGui::IsItemHovered()) {
      ImGui::SetTooltip("The model file carries synthetic images (generated from a seed, not patient images) and the\n"
                        "outputs LibTorch gave for them at export. This browser's ONNX Runtime reproduced them.");
    }
  } else {
    ImGui::TextColored(colours::caution, "none in this file (exported before Loupe wrote one)");
  }
  ImGui::EndTable();
  if (card.test_metrics.is_object() && card.test_metrics.contains("classes") && card.test_metrics["classes"].is_array() &&
      ImGui::TreeNode("Per-class test metrics")) {
    for (const nlohmann::json& row : card.test_metrics["classes"]) {
      ImGui::Text("%-14s P %.2f R %.2f F1 %.2f n=%s", json_text(row, "name", "?").c_str(),
                  json_number(row, "precision"), json_number(row, "recall"), json_number(row, "f1"),
                  row.is_object() ? row.value("support", nlohmann::json()).dump().c_str() : "?");
    }
    ImGui::TreePop();
  }
  if (!card.intended_use.empty()) wrapped(colours::dim, "Intended use: " + card.intended_use);
  wrapped(colours::caution, card.disclaimer.empty() ? std::string("Not a diagnostic device.") : card.disclaimer);
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
    if (app.ort.backend == "webgpu") {
      ImGui::TextColored(colours::local, "WebGPU (wasm fallback)");
    } else {
      ImGui::Text("wasm, SIMD (no GPU found)");
    }
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


//-----------------------------------------------------------------------------------------------
// [SECTION] Workspace: open buttons, batch progress, table, viewer, probabilities
//-----------------------------------------------------------------------------------------------

static std::string human_size(double bytes) {
  char text[32];
  if (bytes < 1024) std::snprintf(text, sizeof text, "%.0f B", bytes);
  else if (bytes < 1024 * 1024) std::snprintf(text, sizeof text, "%.1f KB", bytes / 1024);
  else std::snprintf(text, sizeof text, "%.1f MB", bytes / (1024 * 1024));
  return text;
}


static void draw_open_buttons(UiActions& actions) {
  if (ImGui::Button("Open images...")) actions.open_files = true;
  note_widget(actions, "openImages");
  ImGui::SameLine();
  if (ImGui::Button("Open folder...")) actions.open_folder = true;
  note_widget(actions, "openFolder");
}

static void draw_empty_workspace(const AppState& app, UiActions& actions) {
  const float line = ImGui::GetTextLineHeightWithSpacing();
  ImGui::SetCursorPosY(ImGui::GetCursorPosY() + (ImGui::GetContentRegionAvail().y - 4.0f * line) * 0.5f);
  const std::string title = app.model.status == ModelStatus::ready
                                ? "No images opened. The model is ready: " + app.model.info.card.name
                                : std::string("No images opened");
  centered_text(title.c_str(), ImGui::GetStyle().Colors[ImGuiCol_Text]);
  centered_text("Open images or a folder, or drop them onto the page. They are read inside this tab, never uploaded.",
                colours::dim);
  centered_text("A folder with one sub-folder per class (named like the model's classes) also gets an evaluation.",
                colours::dim);
  const float buttons = ImGui::CalcTextSize("Open images...Open folder...").x + 4.0f * ImGui::GetStyle().FramePadding.x +
                        ImGui::GetStyle().ItemSpacing.x;
  ImGui::SetCursorPosX(ImGui::GetCursorPosX() + std::max(0.0f, (ImGui::GetContentRegionAvail().x - buttons) * 0.5f));
  draw_open_buttons(actions);
}

// "Classifying 120/2000", a progress bar, Cancel / Resume, CSV export and the evaluation toggle.
static void draw_batch_bar(const AppState& app, UiActions& actions) {
  int ok = 0, failed = 0;
  for (const ImageEntry& entry : app.images) {
    ok += entry.status == EntryStatus::ok;
    failed += entry.status == EntryStatus::error;
  }
  const BatchProgress progress = batch_progress(app);
  const bool model_ready = app.model.status == ModelStatus::ready;
  if (model_ready && progress.total > 0) {
    ImGui::TextColored(colours::dim, "%zu files, %d unreadable. Classified %d/%d%s", app.images.size(), failed,
                       progress.done, progress.total, app.paused && progress.done < progress.total ? " (cancelled)" : "");
  } else {
    const int pending = static_cast<int>(app.images.size()) - ok - failed;
    ImGui::TextColored(colours::dim, "%zu files: %d ok, %d failed%s", app.images.size(), ok, failed,
                       pending > 0 ? ", reading..." : "");
  }
  const bool busy = progress.running && !app.paused;
  if (busy) {
    ImGui::SameLine();
    if (ImGui::Button("Cancel")) actions.cancel_batch = true;
    note_widget(actions, "cancel");
  } else if (app.paused && progress.done < progress.total) {
    ImGui::SameLine();
    if (ImGui::Button("Resume")) actions.resume_batch = true;
    note_widget(actions, "resume");
  }
  if (model_ready) {
    ImGui::SameLine();
    if (ImGui::Button("Export CSV")) actions.export_csv = true;
    note_widget(actions, "exportCsv");
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("All results as a CSV file, saved by this browser (nothing is sent).");
    ImGui::SameLine();
    if (ImGui::Button(app.show_evaluation ? "Hide evaluation" : "Evaluation")) actions.show_evaluation = !app.show_evaluation;
    note_widget(actions, "evaluation");
    if (ImGui::IsItemHovered()) {
      ImGui::SetTooltip("Classification report and confusion matrix for images in folders named after the classes.");
    }
  }
  const float fraction = progress.total > 0 ? static_cast<float>(progress.done) / static_cast<float>(progress.total)
                                            : static_cast<float>(ok + failed) / static_cast<float>(std::max<size_t>(1, app.images.size()));
  if (busy || fraction < 1.0f) ImGui::ProgressBar(fraction, {-1.0f, 0.0f});
}

static void draw_batch_table(const AppState& app, UiActions& actions) {
  char filter[256];
  std::snprintf(filter, sizeof filter, "%s", app.table.filter.c_str());
  ImGui::SetNextItemWidth(-1.0f);
  if (ImGui::InputTextWithHint("##filter", "Filter by path, status or predicted class", filter, sizeof filter)) {
    actions.filter = filter;
  }

  const ImGuiTableFlags flags = ImGuiTableFlags_Sortable | ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY |
                                ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_Resizable | ImGuiTableFlags_SizingFixedFit;
  if (!ImGui::BeginTable("batch", 6, flags)) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("Name", ImGuiTableColumnFlags_WidthStretch | ImGuiTableColumnFlags_DefaultSort, 1.0f,
                          static_cast<ImGuiID>(Column::name));
  ImGui::TableSetupColumn("Prediction", ImGuiTableColumnFlags_WidthFixed, 96.0f, static_cast<ImGuiID>(Column::prediction));
  ImGui::TableSetupColumn("Conf.", ImGuiTableColumnFlags_WidthFixed, 44.0f, static_cast<ImGuiID>(Column::confidence));
  ImGui::TableSetupColumn("Size", ImGuiTableColumnFlags_WidthFixed | ImGuiTableColumnFlags_DefaultHide, 64.0f,
                          static_cast<ImGuiID>(Column::size));
  ImGui::TableSetupColumn("Pixels", ImGuiTableColumnFlags_WidthFixed, 76.0f, static_cast<ImGuiID>(Column::dimensions));
  ImGui::TableSetupColumn("Status", ImGuiTableColumnFlags_WidthStretch, 0.6f, static_cast<ImGuiID>(Column::status));
  ImGui::TableHeadersRow();
  if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs(); specs && specs->SpecsDirty) {
    if (specs->SpecsCount > 0) {
      const ImGuiTableColumnSortSpecs& spec = specs->Specs[0];
      actions.sort = {static_cast<Column>(spec.ColumnUserID), spec.SortDirection != ImGuiSortDirection_Descending};
    }
    specs->SpecsDirty = false;  // ImGui's own flag: the request is in `actions` now
  }

  const std::vector<std::string>& classes = active_classes(app);
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
      const bool current = prediction.model_id == app.model.id && app.model.id > 0;
      const std::string error = entry.status == EntryStatus::error ? entry.error
                                : current && prediction.status == PredictionStatus::error ? prediction.error
                                                                                          : std::string();
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::PushID(index);
      if (ImGui::Selectable(entry.path.c_str(), index == app.selected, ImGuiSelectableFlags_SpanAllColumns)) {
        actions.select = index;
      }
      if (index == app.selected && app.scroll_to_selected) ImGui::SetScrollHereY(0.5f);
      if (ImGui::IsItemHovered() && !error.empty()) ImGui::SetTooltip("%s", error.c_str());
      ImGui::PopID();
      ImGui::TableNextColumn();
      const std::string predicted = predicted_class(entry, classes, app.model.id);
      if (!predicted.empty()) ImGui::TextUnformatted(predicted.c_str());
      ImGui::TableNextColumn();
      if (!predicted.empty()) ImGui::Text("%.0f%%", prediction.confidence * 100.0f);
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(human_size(entry.size_bytes).c_str());
      ImGui::TableNextColumn();
      if (entry.width > 0) ImGui::Text("%dx%d", entry.width, entry.height);
      ImGui::TableNextColumn();
      std::string status = status_text(entry);
      ImVec4 colour = entry.status == EntryStatus::ok ? colours::local
                      : entry.status == EntryStatus::error ? colours::error
                                                           : colours::dim;
      if (entry.status == EntryStatus::ok && current && prediction.status == PredictionStatus::error) {
        status = "inference failed: " + prediction.error;
        colour = colours::error;
      } else if (entry.status == EntryStatus::ok && current && prediction.status == PredictionStatus::done &&
                 prediction.out_of_distribution) {
        status = "outside training data";
        colour = colours::caution;
      } else if (entry.status == EntryStatus::ok && current && prediction.status == PredictionStatus::running) {
        status = "running";
        colour = colours::dim;
      }
      ImGui::TextColored(colour, "%s", status.c_str());
      if (ImGui::IsItemHovered() && !error.empty()) ImGui::SetTooltip("%s", error.c_str());
    }
  }
  ImGui::EndTable();
}

// One horizontal bar per class, the predicted class highlighted.
static void draw_probabilities(const AppState& app, const ImageEntry& entry, UiActions& actions) {
  const Prediction& prediction = entry.prediction;
  const std::vector<std::string>& classes = active_classes(app);
  if (app.model.status != ModelStatus::ready) {
    ImGui::TextColored(colours::dim, "No model loaded: open one to classify this image.");
    return;
  }
  if (prediction.model_id != app.model.id || prediction.status == PredictionStatus::none ||
      prediction.status == PredictionStatus::running) {
    ImGui::TextColored(colours::dim, app.paused ? "Not classified (batch cancelled)." : "Classifying...");
    return;
  }
  if (prediction.status == PredictionStatus::error) {
    wrapped(colours::error, "Inference failed: " + prediction.error);
    return;
  }
  if (ImGui::SmallButton("Save report")) actions.save_report = true;
  note_widget(actions, "saveReport");
  if (ImGui::IsItemHovered()) {
    ImGui::SetTooltip("A PNG with the image, heat map, probabilities, model and hash, date and the\n"
                      "not-a-diagnostic-device statement, saved by this browser (nothing is sent).");
  }
  ImGui::SameLine();
  if (prediction.has_ood && prediction.out_of_distribution) {
    // Not a confident answer: the warning comes first and the classes are shown dimmed.
    char warning[256];
    std::snprintf(warning, sizeof warning,
                  "Outside the training data: this image does not look like what the model was trained on "
                  "(distance %.1f > %.1f). Model output, not reliable here: %s (%.1f%%)",
                  static_cast<double>(prediction.ood_distance), app.model.info.card.ood->threshold,
                  classes[static_cast<size_t>(prediction.top)].c_str(), static_cast<double>(prediction.confidence) * 100.0);
    wrapped(colours::error, warning);
  } else {
    ImGui::Text("Prediction: %s (%.1f%%)", classes[static_cast<size_t>(prediction.top)].c_str(),
                prediction.confidence * 100.0f);
    ImGui::SameLine();
    ImGui::TextColored(colours::caution, " model output, not a diagnosis");
  }
  wrapped(colours::dim, "Probabilities: " + loupe::probability_note(app.model.info.card) + "." +
                            (prediction.has_ood && !prediction.out_of_distribution ? " Within the training data's range." : ""));
  float label_width = 0;
  for (const std::string& name : classes) label_width = std::max(label_width, ImGui::CalcTextSize(name.c_str()).x);
  const ImVec4 bar = prediction.has_ood && prediction.out_of_distribution ? colours::dim
                                                                         : ImGui::GetStyle().Colors[ImGuiCol_PlotHistogram];
  for (size_t c = 0; c < classes.size() && c < prediction.probabilities.size(); ++c) {
    const bool top = static_cast<int>(c) == prediction.top;
    ImGui::TextColored(top ? ImGui::GetStyle().Colors[ImGuiCol_Text] : colours::dim, "%s", classes[c].c_str());
    ImGui::SameLine(label_width + 16.0f);
    char overlay[16];
    std::snprintf(overlay, sizeof overlay, "%.1f%%", prediction.probabilities[c] * 100.0f);
    ImGui::PushStyleColor(ImGuiCol_PlotHistogram, top ? bar : ImVec4{bar.x * 0.55f, bar.y * 0.55f, bar.z * 0.6f, 1.0f});
    ImGui::ProgressBar(prediction.probabilities[c], {-1.0f, 0.0f}, overlay);
    ImGui::PopStyleColor();
  }
}

static void draw_image(const AppState& app, UiActions& actions) {
  const ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
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
    ImGui::TextColored(colours::dim, "No heat map: this model has no 'cam' output (export it with one).");
    return;
  }
  HeatMapView heat = app.heat_map;
  bool changed = ImGui::Checkbox("Heat map", &heat.visible);
  note_widget(actions, "heatMap");
  if (ImGui::IsItemHovered()) {
    ImGui::SetTooltip("Class activation map from the same forward pass: where the features that raised this "
                      "class's score were. An explanation aid, not a localisation of disease.");
  }
  if (heat.visible) {
    const std::vector<std::string>& classes = active_classes(app);
    ImGui::SameLine();
    ImGui::SetNextItemWidth(150.0f);
    const std::string current = heat.class_index < 0 ? std::string("predicted class")
                                                     : classes[static_cast<size_t>(heat.class_index)];
    if (ImGui::BeginCombo("##heat-class", current.c_str())) {
      if (ImGui::Selectable("predicted class", heat.class_index < 0)) heat.class_index = -1, changed = true;
      for (size_t c = 0; c < classes.size(); ++c) {
        if (ImGui::Selectable(classes[c].c_str(), heat.class_index == static_cast<int>(c))) {
          heat.class_index = static_cast<int>(c);
          changed = true;
        }
      }
      ImGui::EndCombo();
    }
    ImGui::SameLine();
    ImGui::SetNextItemWidth(120.0f);
    changed |= ImGui::SliderFloat("Opacity", &heat.opacity, 0.0f, 1.0f, "%.2f");
  }
  if (changed) actions.heat_map = heat;
}

static void draw_viewer(const AppState& app, UiActions& actions) {
  if (app.selected < 0) return;
  const ImageEntry& entry = app.images[static_cast<size_t>(app.selected)];
  ImGui::TextUnformatted(entry.path.c_str());
  // The probabilities take a fixed band at the bottom; the image gets the rest.
  const float line = ImGui::GetFrameHeightWithSpacing();
  const float band = entry.status == EntryStatus::error ? 0.0f
                     : line * (4.5f + static_cast<float>(std::max<size_t>(1, active_classes(app).size())));
  if (entry.status != EntryStatus::error) draw_heat_map_controls(app, actions);
  ImGui::BeginChild("image", {0.0f, -band}, false, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  draw_image(app, actions);
  ImGui::EndChild();
  if (band > 0.0f) {
    ImGui::Separator();
    draw_probabilities(app, entry, actions);
  }
}

static void draw_workspace(const AppState& app, UiActions& actions) {
  if (app.images.empty()) {
    draw_empty_workspace(app, actions);
    return;
  }
  draw_open_buttons(actions);
  ImGui::SameLine();
  draw_batch_bar(app, actions);

  const float table_width = std::min(560.0f, ImGui::GetContentRegionAvail().x * 0.55f);
  ImGui::BeginChild("batch", {table_width, 0.0f}, false);
  draw_batch_table(app, actions);
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("viewer", {0.0f, 0.0f}, false, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  draw_viewer(app, actions);
  ImGui::EndChild();
}

//-----------------------------------------------------------------------------------------------
// [SECTION] Evaluation window
//-----------------------------------------------------------------------------------------------

// Rows are true classes, columns predicted ones; each cell is shaded by its share of the row
// (recall), so a good model shows a bright diagonal whatever the class sizes.
static void draw_confusion_matrix(const loupe::ConfusionMatrix& matrix) {
  const size_t n = matrix.num_classes();
  float label_width = ImGui::CalcTextSize("true \\ predicted").x;
  for (const std::string& name : matrix.class_names()) label_width = std::max(label_width, ImGui::CalcTextSize(name.c_str()).x);
  const float cell = std::clamp((ImGui::GetContentRegionAvail().x - label_width - 16.0f) / static_cast<float>(n), 36.0f, 64.0f);
  ImDrawList* draw_list = ImGui::GetWindowDrawList();
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const float header = ImGui::GetTextLineHeightWithSpacing() * 1.5f;
  draw_list->AddText({origin.x, origin.y}, ImGui::GetColorU32(colours::dim), "true \\ predicted");
  for (size_t j = 0; j < n; ++j) {
    const std::string& name = matrix.class_names()[j];
    const std::string shown = ImGui::CalcTextSize(name.c_str()).x > cell - 4.0f ? name.substr(0, static_cast<size_t>(cell / 8.0f)) : name;
    draw_list->AddText({origin.x + label_width + 12.0f + static_cast<float>(j) * cell + 2.0f, origin.y},
                       ImGui::GetColorU32(ImGuiCol_Text), shown.c_str());
  }
  for (size_t i = 0; i < n; ++i) {
    const float y = origin.y + header + static_cast<float>(i) * cell;
    draw_list->AddText({origin.x, y + cell * 0.5f - 7.0f}, ImGui::GetColorU32(ImGuiCol_Text), matrix.class_names()[i].c_str());
    const double row = static_cast<double>(std::max<int64_t>(1, matrix.true_count(static_cast<int>(i))));
    for (size_t j = 0; j < n; ++j) {
      const int64_t count = matrix.at(static_cast<int>(i), static_cast<int>(j));
      const float share = static_cast<float>(static_cast<double>(count) / row);
      const ImVec2 min{origin.x + label_width + 12.0f + static_cast<float>(j) * cell, y};
      const ImVec2 max{min.x + cell - 2.0f, min.y + cell - 2.0f};
      const ImVec4 fill{0.12f + 0.10f * share, 0.16f + 0.50f * share, 0.22f + 0.62f * share, 1.0f};
      draw_list->AddRectFilled(min, max, ImGui::ColorConvertFloat4ToU32(fill), 3.0f);
      char text[32];
      std::snprintf(text, sizeof text, "%lld", static_cast<long long>(count));
      const ImVec2 size = ImGui::CalcTextSize(text);
      draw_list->AddText({min.x + (cell - size.x) * 0.5f, min.y + (cell - size.y) * 0.5f},
                         ImGui::GetColorU32(share > 0.5f ? ImVec4{0, 0, 0, 1} : ImVec4{1, 1, 1, 1}), text);
    }
  }
  ImGui::Dummy({label_width + 12.0f + cell * static_cast<float>(n), header + cell * static_cast<float>(n)});
}

static void draw_evaluation_window(const AppState& app, UiActions& actions) {
  if (!app.show_evaluation || app.model.status != ModelStatus::ready) return;
  const ImGuiViewport* viewport = ImGui::GetMainViewport();
  ImGui::SetNextWindowSize({std::min(720.0f, viewport->WorkSize.x - 40.0f), std::min(620.0f, viewport->WorkSize.y - 40.0f)},
                           ImGuiCond_Appearing);
  ImGui::SetNextWindowPos({viewport->WorkPos.x + viewport->WorkSize.x * 0.5f, viewport->WorkPos.y + viewport->WorkSize.y * 0.5f},
                          ImGuiCond_Appearing, {0.5f, 0.5f});
  bool open = true;
  if (ImGui::Begin("Evaluation", &open, ImGuiWindowFlags_NoSavedSettings)) {
    const std::vector<std::string>& classes = active_classes(app);
    const loupe::Evaluation& evaluation = app.views.evaluation;
    const BatchProgress progress = batch_progress(app);
    ImGui::TextWrapped("Images whose folder is named after one of the model's classes (%s) are scored against it. "
                       "Same metrics code as `loupe eval`.", join(classes, ", ").c_str());
    ImGui::TextColored(colours::dim, "%d labelled images scored (%d flagged as outside the training data), %d predicted "
                       "images without a class folder, %d failed%s",
                       evaluation.labelled, evaluation.out_of_distribution, evaluation.unlabelled, evaluation.failed,
                       progress.done < progress.total ? " (batch still running: partial figures)" : "");
    if (!evaluation.report) {
      wrapped(colours::caution, "No labelled images yet. Open a folder laid out as FOLDER/<class>/<image> with the "
                                "class names above.");
    } else {
      draw_confusion_matrix(*evaluation.matrix);
      ImGui::Spacing();
      ImGui::TextUnformatted(evaluation.report->to_text(3).c_str());
      if (!evaluation.report->intervals) {
        wrapped(colours::dim, "Confidence intervals appear when the batch has finished.");
      }
      wrapped(colours::caution, "These figures describe only the images opened here. They are not a validation of "
                                "the model for clinical use.");
    }
  }
  ImGui::End();
  if (!open) actions.show_evaluation = false;
}

//-----------------------------------------------------------------------------------------------
// [SECTION] draw_app
//-----------------------------------------------------------------------------------------------

void draw_app(const AppState& app, UiActions& actions) {
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
  draw_model_section(app, actions);
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
  draw_evaluation_window(app, actions);
}

}  // namespace loupe_web
