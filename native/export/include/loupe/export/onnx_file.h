// Reading the model card of an exported ONNX file natively: the shared reader (loupe/onnx_model.h,
// the same code the browser runs) plus what only the native side can check, the weights' SHA-256
// (OpenSSL) and the card's model config (models::ModelConfig, strict).
//
//   loupe::exporter::OnnxFileInfo info = loupe::exporter::read_onnx_file("model.onnx");
//   const loupe::exporter::ModelCard& card = info.card;
//   loupe::Tensor x = loupe::preprocess(image, card.preprocess);     // the exact training recipe
//   auto config = loupe::exporter::card_model_config(card);         // to rebuild the model
//   ... run it (ort_session.h), then card.class_names[argmax(logits)] ...
//
// The card's format, the reader's errors and describe(): loupe/model_card.h, loupe/onnx_model.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loupe/model_card.h"
#include "loupe/models/model_config.h"
#include "loupe/onnx_model.h"

namespace loupe::exporter {

// The shared core's types, under the names the export code has always used.
using loupe::CardOutput;
using loupe::kDefaultIntendedUse;
using loupe::kDisclaimer;
using loupe::kModelCardFormat;
using loupe::kModelCardFormatVersion;
using loupe::kModelCardKey;
using ModelCard = loupe::ModelCard;
using TensorInfo = loupe::OnnxTensorInfo;
using OnnxFileInfo = loupe::OnnxModelInfo;
using loupe::describe;  // the `loupe inspect` text

struct ReadOptions {
  // Recompute the weights' SHA-256 and compare it with the card (about 1 s per 500 MB).
  bool verify_weights = true;
};

// Reads and checks an ONNX file written by `loupe export`: loupe::read_onnx_model (its errors:
// EmptyInput, UnknownFormat, InvalidArgument for truncated or corrupt files, InvalidSpec for a
// missing, broken or mismatched card), then
//   InvalidSpec      a card whose "model" is not a valid ModelConfig (card_model_config), or
//                    weights that do not match the card's SHA-256 (options.verify_weights; sets
//                    info.weights_verified)
//   Io               (read_onnx_file) the file cannot be read
OnnxFileInfo read_onnx_file(const std::string& path, const ReadOptions& options = {});
// The same from bytes in memory; `what` names them in messages.
OnnxFileInfo read_onnx_bytes(const std::string& bytes, const std::string& what, const ReadOptions& options = {});

// read_onnx_file(path).card.
ModelCard read_model_card(const std::string& path, const ReadOptions& options = {});

// The card's model config, strictly (models::ModelConfig::from_json) and consistent with the card
// (architecture, class count). Throws Error(InvalidSpec) naming the key ("model card: model: ...").
models::ModelConfig card_model_config(const ModelCard& card);

// SHA-256 (lower-case hex) of bytes[r.offset, r.offset + r.size) for every r in `ranges`,
// concatenated: over OnnxFileInfo::weight_ranges of the file's bytes, the card's weights_sha256.
std::string sha256_of_ranges(const uint8_t* bytes, const std::vector<ByteRange>& ranges);

// The current time as ISO 8601 UTC ("2025-05-20T14:03:07Z").
std::string utc_now_iso8601();

}  // namespace loupe::exporter
