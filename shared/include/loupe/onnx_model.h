// Reading an ONNX file exported by `loupe export` (its model card, inputs and outputs) without
// libprotobuf or ONNX Runtime, so that the browser and `loupe inspect` share one reader.
//
//   const std::vector<uint8_t> bytes = loupe::read_file("model.onnx");
//   loupe::OnnxModelInfo info = loupe::read_onnx_model(bytes.data(), bytes.size(), "model.onnx");
//   // info.card: model_card.h. Check the weights: SHA-256 over info.weight_ranges (concatenated)
//   // must equal info.card.weights_sha256; set info.weights_verified when it does.
//   std::cout << loupe::describe(info);
//
// The reader walks the protobuf wire format. It checks the structure of every message in the file
// against the ONNX schema, refusing what libprotobuf refuses (a damaged node as much as a damaged
// card), and decodes only the fields it needs: ir_version, producer_name/version, opset_import,
// graph.input/output (name, element type, dims), graph.initializer (dims, data_type, raw_data) and
// metadata_props. Every read is bounds-checked: corrupt input gives a loupe::Error, never a read
// outside [data, data + size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "loupe/model_card.h"

namespace loupe {

// A graph input or output as declared in the file.
struct OnnxTensorInfo {
  std::string name;
  std::string element_type;            // "float32", "int64", ...
  std::vector<std::string> dims;       // "batch" for a symbolic dimension, else the number
};

// Bytes [offset, offset + size) of the buffer given to read_onnx_model.
struct ByteRange {
  size_t offset = 0, size = 0;
};

struct OnnxModelInfo {
  ModelCard card;
  nlohmann::json card_json;            // the card as the file holds it (unknown keys included)
  std::vector<OnnxTensorInfo> inputs, outputs;
  int64_t ir_version = 0;
  int64_t opset = 0;                   // of the default ("ai.onnx") domain
  std::string producer;                // "loupe 0.1.0"
  int64_t file_bytes = 0;
  int64_t parameters = 0;              // elements of every initializer
  // raw_data of every graph initializer, in file order: what card.weights_sha256 hashes (SHA-256
  // of these ranges concatenated). An initializer without raw_data has an empty range.
  std::vector<ByteRange> weight_ranges;
  bool weights_verified = false;       // set by callers that hashed weight_ranges (native: OpenSSL;
                                       // browser: SubtleCrypto) and found card.weights_sha256
};

// Reads and checks a Loupe-exported ONNX file held in memory; `what` names it in messages. Errors
// (loupe::Error) say which:
//   EmptyInput       zero bytes
//   UnknownFormat    not an ONNX model (e.g. an image or a text file)
//   InvalidArgument  an ONNX file that is truncated or corrupt (the wire format does not parse, or
//                    parts a complete model always has are missing)
//   InvalidSpec      no Loupe model card, a card that is not valid JSON or misses keys
//                    (ModelCard::from_json), a card whose class count differs from the width of
//                    the 'logits' output, that lists outputs the graph lacks, or whose input size
//                    differs from the graph's input
// The weights are not hashed here (see weight_ranges).
OnnxModelInfo read_onnx_model(const uint8_t* data, size_t size, const std::string& what);

// The same model with another card: every byte of the file is kept except the card's
// metadata_props entry, which holds card.dump() (compact, as `loupe export` writes it). The graph,
// its weights (and so the weights hash) and the self-test are untouched; only what the card says
// changes (a site calibration, calibration.h; a re-estimated OOD threshold). Checks the input
// (read_onnx_model) and the new card (ModelCard::from_json), and reads the result back: throws
// Error(InvalidSpec) naming the problem, never returns a file the reader refuses.
std::vector<uint8_t> with_model_card(const uint8_t* data, size_t size, const nlohmann::json& card, const std::string& what);

// A readable summary (what `loupe inspect` prints): the card's main entries and the graph's
// inputs and outputs.
std::string describe(const OnnxModelInfo& info);

}  // namespace loupe
