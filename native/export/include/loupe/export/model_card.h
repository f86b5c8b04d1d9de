// The model card every exported ONNX file carries, and reading it back without ONNX Runtime.
//
//   loupe::exporter::OnnxFileInfo info = loupe::exporter::read_onnx_file("model.onnx");
//   const loupe::exporter::ModelCard& card = info.card;
//   loupe::Tensor x = loupe::preprocess(image, card.preprocess);     // the exact training recipe
//   ... run it (ort_session.h), then card.class_names[argmax(logits)] ...
//
// Where it lives: ModelProto.metadata_props, key "loupe.model_card" (kModelCardKey), one JSON
// document (ModelCard::to_json()). `loupe export` also writes it as a sidecar MODEL.card.json.
//
// The card (format "loupe.model_card", format_version 1):
//   name, version, description       what the run was called; the model's version string
//   created_utc                      ISO 8601, e.g. "2025-05-20T14:03:07Z"
//   architecture, model              the zoo name and the full ModelConfig JSON (model_config.h)
//   class_names                      in logit order; their count equals the logits' width
//   input                            {"name": "input", "layout": "NCHW", "dtype": "float32",
//                                     "batch": "dynamic", "channels": C, "height": H, "width": W}
//   preprocess                       the exact PreprocessSpec JSON of the shared core (preprocess.h)
//   outputs                          one entry per graph output: {"name", "shape", "description"};
//                                    shapes use "batch" for the dynamic dimension (see onnx_export.h)
//   training_data                    {"folder", "kind", "classes", "class_counts", "images",
//                                     "split": {"seed", "val", "test", "train_images", ...}} or null
//   test_metrics                     the held-out test report of the run (accuracy, balanced
//                                    accuracy, per-class precision/recall/F1/support, confusion
//                                    matrix, log loss) or null when the run has none
//   weights_sha256, weights_digest   SHA-256 (hex) of the weights, and how it is computed: the
//                                    raw_data bytes of every graph initializer, concatenated in
//                                    file order (see weights_sha256() in onnx_export.h)
//   intended_use, disclaimer         research / education text and the "not a diagnostic device"
//                                    statement
//   producer                         {"name": "loupe", "version", "opset"}
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/models/model_config.h"
#include "loupe/preprocess.h"

namespace loupe::exporter {

// metadata_props key of the card.
inline constexpr const char* kModelCardKey = "loupe.model_card";
inline constexpr const char* kModelCardFormat = "loupe.model_card";
inline constexpr int kModelCardFormatVersion = 1;

inline constexpr const char* kDefaultIntendedUse =
    "Research, education and demonstration: classifying images like those of the training data set "
    "described in this card, preprocessed exactly as the 'preprocess' entry says.";
inline constexpr const char* kDisclaimer =
    "Loupe is not a diagnostic device. This model's outputs are for research, education and "
    "demonstration only and must not be used for clinical decisions.";

// One graph output as described in the card.
struct CardOutput {
  std::string name;                 // "logits", "probabilities", "embedding", "cam", "feature_map"
  nlohmann::json shape;             // e.g. ["batch", 2]
  std::string description;
};

struct ModelCard {
  std::string name;
  std::string version = "1";
  std::string description;
  std::string created_utc;
  std::string architecture;
  models::ModelConfig model;
  std::vector<std::string> class_names;
  int input_channels = 3;
  int input_height = 224;
  int input_width = 224;
  PreprocessSpec preprocess;
  std::vector<CardOutput> outputs;
  nlohmann::json training_data;   // null when unknown
  nlohmann::json test_metrics;    // null when the run has no test report
  std::string weights_sha256;
  std::string intended_use = kDefaultIntendedUse;
  std::string disclaimer = kDisclaimer;
  std::string producer_version;   // Loupe version that wrote the file
  int opset = 0;

  bool has_output(const std::string& output_name) const;

  nlohmann::json to_json() const;
  // Strict about what a consumer relies on (format, class_names, input, preprocess, outputs;
  // model through ModelConfig::from_json, preprocess through PreprocessSpec::from_json); throws
  // Error(InvalidSpec) naming the key ("model card: class_names: ..."). Unknown keys are kept out
  // of the struct but are not errors (newer writers may add some).
  static ModelCard from_json(const nlohmann::json& json);
};

// A graph input or output as declared in the file.
struct TensorInfo {
  std::string name;
  std::string element_type;            // "float32", "int64", ...
  std::vector<std::string> dims;       // "batch" for a symbolic dimension, else the number
};

struct OnnxFileInfo {
  ModelCard card;
  std::vector<TensorInfo> inputs, outputs;
  int64_t ir_version = 0;
  int64_t opset = 0;                   // of the default ("ai.onnx") domain
  std::string producer;                // "loupe 0.1.0"
  int64_t file_bytes = 0;
  int64_t parameters = 0;              // elements of every initializer
  bool weights_verified = false;       // weights_sha256 recomputed and equal to the card's
};

struct ReadOptions {
  // Recompute the weights' SHA-256 and compare it with the card (about 1 s per 500 MB).
  bool verify_weights = true;
};

// Reads and checks an ONNX file written by `loupe export`. Errors (loupe::Error) say which:
//   Io               the file cannot be read
//   EmptyInput       zero bytes
//   UnknownFormat    not an ONNX model (e.g. an image or a text file)
//   InvalidArgument  an ONNX file that is truncated or corrupt (protobuf does not parse, or parts
//                    a complete model always has are missing)
//   InvalidSpec      no Loupe model card, a card that is not valid JSON or misses keys, a card whose
//                    class count differs from the width of the 'logits' output (or lists outputs
//                    the graph lacks), or weights that do not match the card's SHA-256
OnnxFileInfo read_onnx_file(const std::string& path, const ReadOptions& options = {});
// The same from bytes in memory; `what` names them in messages.
OnnxFileInfo read_onnx_bytes(const std::string& bytes, const std::string& what, const ReadOptions& options = {});

// read_onnx_file(path).card.
ModelCard read_model_card(const std::string& path, const ReadOptions& options = {});

// A readable summary for `loupe inspect`: the card's main entries and the graph's inputs/outputs.
std::string describe(const OnnxFileInfo& info);

// The current time as ISO 8601 UTC ("2025-05-20T14:03:07Z").
std::string utc_now_iso8601();

}  // namespace loupe::exporter
