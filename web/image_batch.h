// The batch of images the user opened: one ImageEntry per file, in the order they were added, plus
// the one image being viewed. Pure C++ over loupe::core (no ImGui, no browser), so the app's
// drawing code and its JS callbacks share one model.
//
// Memory stays bounded for large batches: a file's bytes live only while it is decoded, and the
// decoded pixels are kept for the viewed image only. Every other entry keeps its metadata (size,
// dimensions, status) and nothing else.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loupe/image.h"
#include "loupe/prediction.h"
#include "loupe/results.h"

namespace loupe_web {

enum class EntryStatus { pending, reading, ok, error };
const char* to_string(EntryStatus status);

// What the model said about one image: the shared core's prediction (loupe/prediction.h:
// probabilities, top class, the out-of-distribution flag; its CAM is moved to AppState::cam), and
// how far it got. `model_id` names the model that produced it, so opening another model makes
// every prediction stale at once without touching the entries.
enum class PredictionStatus { none, running, done, error };
struct Prediction : loupe::Prediction {
  int model_id = 0;                  // 0: never predicted
  PredictionStatus status = PredictionStatus::none;
  std::string error;                 // why inference failed (preprocessing or ONNX Runtime)
};

struct ImageEntry {
  int file_index = 0;     // the File's index in image_files.js
  std::string name;       // file name
  std::string path;       // relative path: "folder/class/file.png" for folders, the name otherwise
  double size_bytes = 0;  // the file's size
  EntryStatus status = EntryStatus::pending;
  std::string error;      // why decoding failed (loupe::Error's message)
  int width = 0, height = 0, channels = 0, bits = 0;
  Prediction prediction;
  // A DICOM file: the attributes the card's intended images are checked against (nothing else is
  // kept), and the frame classified of how many (frames > 1: a multi-frame file).
  std::string modality, body_part, view_position;
  int frame = 0, frames = 0;
};

// Table columns, in display order; the table sorts by one of them.
enum class Column { name = 0, size = 1, dimensions = 2, status = 3, prediction = 4, confidence = 5 };

struct TableView {
  std::string filter;  // case-insensitive substring of the path, the status text or the predicted class
  // A confusion-matrix cell clicked in the evaluation: only the images it counts (with the filter).
  std::optional<loupe::MatrixCell> cell;
  Column sort_column = Column::name;
  bool ascending = true;
};

// The entries to show, as indices into `entries`: filtered, then sorted (ties keep file order).
// `class_names` (the model's) name the predicted class for filtering and sorting; predictions of
// another model than `model_id` count as none. With a view's matrix cell, `results` (one row per
// entry, result_row()) says which entries the cell counts (loupe::evaluation_cell); without them
// the cell shows nothing.
std::vector<int> visible_rows(const std::vector<ImageEntry>& entries, const TableView& view,
                              const std::vector<std::string>& class_names = {}, int model_id = 0,
                              const std::vector<loupe::ResultRow>* results = nullptr);

// The predicted class name of an entry for model `model_id`, or "" when it has none.
std::string predicted_class(const ImageEntry& entry, const std::vector<std::string>& class_names, int model_id);

// The status column's text: "ok", the error message, or "pending" / "reading".
std::string status_text(const ImageEntry& entry);

// The entry as a row of the shared results table (loupe/results.h): its label from its folders,
// and model `model_id`'s prediction when it has one.
// With `intended` (the card's intended_images), a DICOM file that contradicts it gets its warning.
loupe::ResultRow result_row(const ImageEntry& entry, const std::vector<std::string>& class_names, int model_id,
                            const loupe::IntendedImages* intended = nullptr);

// Window/level for display, as fractions of the sample range (0..1): the shown range is
// [level - width/2, level + width/2], mapped to 0..255. Display only: the model sees raw pixels.
struct WindowLevel {
  float width = 1.0f;
  float level = 0.5f;
};

// The window that spans the image's own darkest..brightest sample (what "reset" returns to).
WindowLevel auto_window(const loupe::Image& image);

// RGBA8 pixels for a GL_RGBA8 texture. Gray images go through the window/level; colour images are
// scaled to 8 bit as they are. Images wider or taller than `max_side` are subsampled (nearest) to
// fit; out_width/out_height receive the texture's size.
std::vector<uint8_t> display_rgba(const loupe::Image& image, const WindowLevel& window, int max_side,
                                  int& out_width, int& out_height);

}  // namespace loupe_web
