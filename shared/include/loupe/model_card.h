// The model card every exported ONNX file carries: what the model classifies, how its input is
// preprocessed, what it was trained and tested on, and what it must not be used for. Both sides
// read it with this code: `loupe inspect` / `loupe predict` natively and the web page in the
// browser (onnx_model.h reads it out of the ONNX file).
//
//   loupe::OnnxModelInfo info = loupe::read_onnx_model(bytes.data(), bytes.size(), "model.onnx");
//   const loupe::ModelCard& card = info.card;
//   loupe::Tensor x = loupe::preprocess(image, card.preprocess);     // the exact training recipe
//   ... run the model, then card.class_names[argmax(logits)] ...
//
// Where it lives: ModelProto.metadata_props, key "loupe.model_card" (kModelCardKey), one JSON
// document (ModelCard::to_json()). `loupe export` also writes it as a sidecar MODEL.card.json.
//
// The card (format "loupe.model_card", format_version 1):
//   name, version, description       what the run was called; the model's version string
//   created_utc                      ISO 8601, e.g. "2025-05-20T14:03:07Z"
//   architecture, model              the zoo name and the full model config JSON (the native
//                                    ModelConfig, native/models/.../model_config.h; the shared core
//                                    keeps it as JSON and checks only architecture and num_classes)
//   class_names                      in logit order; their count equals the logits' width
//   input                            {"name": "input", "layout": "NCHW", "dtype": "float32",
//                                     "batch": "dynamic", "channels": C, "height": H, "width": W}
//   preprocess                       the exact PreprocessSpec JSON (preprocess.h)
//   outputs                          one entry per graph output: {"name", "shape", "description"};
//                                    shapes use "batch" for the dynamic dimension
//   training_data                    {"folder", "kind", "classes", "class_counts", "images",
//                                     "split": {"seed", "val", "test", "train_images", ...}} or null
//   test_metrics                     the held-out test report of the run (accuracy, balanced
//                                    accuracy, per-class precision/recall/F1/support, confusion
//                                    matrix, log loss) or null when the run has none
//   calibration                      temperature scaling of "probabilities" (softmax(logits / T)),
//                                    fitted at export on the validation split: {"method":
//                                    "temperature_scaling", "temperature", "fitted_on", "ece_bins",
//                                    "val": {"ece_before", "ece_after", "nll_before", "nll_after"},
//                                    "test": {...}} or null
//   ood                              out-of-distribution check: {"method":
//                                    "mahalanobis_shared_covariance", "output": "ood_distance",
//                                    "threshold", "threshold_quantile", "dims", "fitted_on",
//                                    "val_false_alarm_rate", "test_false_alarm_rate"} or null; an
//                                    image whose output value exceeds threshold is flagged
//   self_test                        synthetic reference images (from a seed) and the outputs the
//                                    model must give for them (LibTorch's for fp32 models, ONNX
//                                    Runtime's for int8 ones), with a hash: self_test.h; null in
//                                    models exported before it existed
//   precision                        "fp32" or "int8" (absent in cards written before it: fp32)
//   quantization                     an int8 model's calibration and gate record (Quantization
//                                    below; `loupe quantize`, native/export/.../quantize.h):
//                                    {"method": "static_qdq", "weights": {...}, "activations": {...},
//                                     "calibration": {"method", "images", "split", ...},
//                                     "test": {"images", "float_accuracy", "int8_accuracy",
//                                     "agreement", ...}, "gate": {...}, ...}; required when precision
//                                    is "int8", refused otherwise
//   site_calibration                 a temperature refitted on a site's labelled images and the
//                                    operating points set there (`loupe calibrate`, calibration.h):
//                                    {"method": "temperature_scaling", "temperature", "created_utc",
//                                    "images", "class_counts", "before", "after", "operating_points":
//                                    [{"class", "threshold", ...}], ...}; absent until a site
//                                    calibrates. When present it is the calibration in use; the
//                                    export's "calibration" stays beside it, unused
//   weights_sha256, weights_digest   SHA-256 (hex) of the weights, and how it is computed: the
//                                    raw_data bytes of every graph initializer, concatenated in
//                                    file order (OnnxModelInfo::weight_ranges in onnx_model.h)
//   intended_use, disclaimer         research / education text and the "not a diagnostic device"
//                                    statement
//   intended_images                  the DICOM images the model was trained for: {"modality":
//                                    ["CR", "DX"], "body_part": ["CHEST"], "view_position": ["PA",
//                                    "AP"]} (each list optional; IntendedImages) or absent; a DICOM
//                                    file whose attribute contradicts it is warned about
//   producer                         {"name": "loupe", "version", "opset"}
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loupe/preprocess.h"
#include "loupe/self_test.h"

namespace loupe {

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

// The card's "calibration": how the model's probabilities are calibrated. Loupe applies one
// method, temperature scaling: probabilities = softmax(logits / temperature).
struct Calibration {
  std::string method = "temperature_scaling";
  double temperature = 1;  // finite, > 0
  // The whole entry as written (fitted_on, ece_bins, the validation/test figures, ...), for
  // display; to_json() writes it with method and temperature as above.
  nlohmann::json record = nlohmann::json::object();

  // Strict: an object with method "temperature_scaling" (the default when absent) and a finite
  // temperature > 0; throws Error(InvalidSpec) naming "calibration.<key>".
  static Calibration from_json(const nlohmann::json& json);
  nlohmann::json to_json() const;
};

// The card's "ood": the out-of-distribution check. A graph output (e.g. "ood_distance") gives
// each image a distance from the training data; a distance above `threshold`, or one that is not
// a number at all, flags the image.
struct OodCheck {
  std::string method;     // e.g. "mahalanobis_shared_covariance"
  std::string output;     // the graph output holding the distance
  double threshold = 0;   // finite
  nlohmann::json record = nlohmann::json::object();  // the whole entry (false-alarm rates, ...)

  // Strict about output (a string) and threshold (finite); throws Error(InvalidSpec) naming
  // "ood.<key>". Whether `output` is one of the card's outputs is ModelCard::from_json's check.
  static OodCheck from_json(const nlohmann::json& json);
  nlohmann::json to_json() const;
  bool flags(double distance) const { return !(distance <= threshold); }  // NaN is flagged
};

// The card's "intended_images": the values of three DICOM attributes the training images had,
// Modality (0008,0060), Body Part Examined (0018,0015) and View Position (0018,5101). A DICOM
// file with another value is warned about before any probability (loupe predict, the page, the
// results' intended_use_warning column): a chest X-ray model shown an MR slice still answers with
// a class. Only these three attributes are compared; nothing patient-identifying is read.
struct IntendedImages {
  std::vector<std::string> modality;       // e.g. {"CR", "DX"}; empty: not stated
  std::vector<std::string> body_part;      // e.g. {"CHEST"}
  std::vector<std::string> view_position;  // e.g. {"PA", "AP"}

  // Strict: an object whose keys are among the three above, each a non-empty array of non-empty
  // strings; throws Error(InvalidSpec) naming "intended_images.<key>".
  static IntendedImages from_json(const nlohmann::json& json);
  nlohmann::json to_json() const;
  // What contradicts the card, for people ("Modality MR (the model was trained for CR/DX)"; several
  // joined by "; "), or "" when nothing does. Compared without case and surrounding spaces; an
  // empty value (the file does not have the attribute) or a list the card leaves out contradicts
  // nothing.
  std::string contradiction(const std::string& modality, const std::string& body_part,
                            const std::string& view_position) const;
  // "CR/DX, CHEST, PA/AP": the stated values, for the card's display.
  std::string summary() const;
};

// The card's "quantization": how an int8 model was made from its float model and what the
// held-out gate measured. The figures a consumer shows are typed; the whole entry is kept.
struct Quantization {
  std::string method;               // "static_qdq": QuantizeLinear/DequantizeLinear pairs, calibrated
  std::string calibration_method;   // "min_max" or "percentile" (activation ranges)
  int64_t calibration_images = 0;   // training images the activation ranges were measured on
  int64_t test_images = 0;          // held-out test images the gate compared the two models on
  double float_accuracy = 0;        // on those images, in [0, 1]
  double int8_accuracy = 0;
  double agreement = 0;             // share of test images whose top class is the same in both
  nlohmann::json record = nlohmann::json::object();

  // Strict: method, calibration.method, calibration.images (> 0), test.images (> 0) and the three
  // figures (finite, in [0, 1]); throws Error(InvalidSpec) naming "quantization.<key>".
  static Quantization from_json(const nlohmann::json& json);
  nlohmann::json to_json() const;
};

inline constexpr const char* kPrecisionFp32 = "fp32";
inline constexpr const char* kPrecisionInt8 = "int8";

// One class's operating point (a site calibration's): the class is called when its calibrated
// probability is at least `threshold` (the rule: prediction.h).
struct OperatingPointRule {
  std::string class_name;
  int class_index = -1;    // into the card's class_names
  double threshold = 0.5;  // in [0, 1]
};

// The card's "site_calibration": temperature scaling refitted on a site's labelled images, and
// the operating points chosen there (calibration.h writes it). It replaces the export's
// calibration for every probability Loupe computes; the card keeps both.
struct SiteCalibration {
  std::string method = "temperature_scaling";
  double temperature = 1;                       // finite, > 0
  std::string created_utc;
  int64_t images = 0;                           // labelled images it was fitted on
  std::vector<OperatingPointRule> operating_points;  // at most one per class
  nlohmann::json record = nlohmann::json::object();  // the whole entry, for display

  // Strict: method "temperature_scaling", a finite temperature > 0, operating points naming a class
  // of `class_names` once each, with a threshold in [0, 1]; throws Error(InvalidSpec) naming
  // "site_calibration.<key>".
  static SiteCalibration from_json(const nlohmann::json& json, const std::vector<std::string>& class_names);
  nlohmann::json to_json() const;
};

struct ModelCard {
  std::string name;
  std::string version = "1";
  std::string description;
  std::string created_utc;
  std::string architecture;
  // The model config JSON, as written ({"architecture": ..., "num_classes": ..., ...}). The native
  // side turns it into a models::ModelConfig (strict); the browser only displays it.
  nlohmann::json model;
  std::vector<std::string> class_names;
  int input_channels = 3;
  int input_height = 224;
  int input_width = 224;
  PreprocessSpec preprocess;
  std::vector<CardOutput> outputs;
  nlohmann::json training_data;   // null when unknown
  nlohmann::json test_metrics;    // null when the run has no test report
  // Temperature scaling, fitted at export on the validation split; absent in uncalibrated models.
  std::optional<Calibration> calibration;
  // The out-of-distribution check; absent in models without one.
  std::optional<OodCheck> ood;
  // The self-test that travels with the model (self_test.h); absent in models exported before it.
  std::optional<SelfTest> self_test;
  // "fp32" or "int8"; empty in cards written before Loupe recorded it (they are fp32). Written only
  // when set, so that older cards round-trip unchanged.
  std::string precision;
  // How an int8 model was calibrated and gated; present exactly when precision is "int8".
  std::optional<Quantization> quantization;
  // A site's recalibration and operating points (calibration.h); absent until a site calibrates.
  std::optional<SiteCalibration> site_calibration;
  std::string weights_sha256;
  std::string intended_use = kDefaultIntendedUse;
  std::string disclaimer = kDisclaimer;
  // The DICOM images the model was trained for; absent when the card does not say.
  std::optional<IntendedImages> intended_images;
  std::string producer_version;   // Loupe version that wrote the file
  int opset = 0;

  bool has_output(const std::string& output_name) const;
  bool is_int8() const { return precision == kPrecisionInt8; }
  // For people: "fp32", or "int8 (static QDQ, 759 calibration images): test accuracy 0.814 vs
  // fp32 0.814, same top class on 100.0% of 97 test images".
  std::string precision_note() const;
  // The temperature Loupe divides the logits by: the site calibration's, else the export's, else 1.
  double temperature_in_use() const;
  // Which calibration that is: "site", "export" or "none".
  const char* calibration_in_use() const;

  nlohmann::json to_json() const;
  // Strict about what a consumer relies on (format, class_names, input, preprocess, outputs,
  // preprocess through PreprocessSpec::from_json; model must be an object); throws
  // Error(InvalidSpec) naming the key ("model card: class_names: ..."). Checks that the entries
  // agree: architecture with model.architecture, the class count with model.num_classes (where the
  // model JSON has them), the preprocess spec's channels and size with the input; calibration and
  // ood are null or as Calibration::from_json / OodCheck::from_json require, ood.output one of the
  // outputs; self_test null or as SelfTest::from_json requires, for the input's channels and
  // recording only outputs the card lists; precision "fp32", "int8" or absent, an int8 card with its
  // quantization record (Quantization::from_json) and an fp32 one without; site_calibration null or
  // as SiteCalibration::from_json requires for the card's classes. Unknown keys are kept out of the
  // struct but are not errors (newer writers may add some).
  static ModelCard from_json(const nlohmann::json& json);
};

}  // namespace loupe
