// Reading Loupe-exported ONNX files (onnx_model.h): a protobuf wire-format walker that checks the
// whole file's structure and decodes the few ONNX fields the card and `loupe inspect` need, then
// the checks that the card describes the graph.
//
// [SECTION] Protobuf wire format: WireReader, bounds-checked
// [SECTION] The ONNX schema, for checking the whole file's structure
// [SECTION] The ONNX messages we decode (onnx.proto field numbers)
// [SECTION] Writing: the card's metadata_props entry, re-encoded
// [SECTION] read_onnx_model: the checks, and with_model_card
// [SECTION] describe
#include "loupe/onnx_model.h"

#include "loupe/metrics.h"
#include "loupe/prediction.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "loupe/error.h"

namespace loupe {

namespace {

using nlohmann::json;

// [SECTION] Protobuf wire format: WireReader, bounds-checked

// Thrown by the walker on anything libprotobuf would refuse to parse; read_onnx_model turns it into
// the "truncated or corrupt" Error.
struct MalformedWire {};

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kStartGroup = 3, kEndGroup = 4, kFixed32 = 5 };

// Nested messages and groups: libprotobuf's default recursion limit.
constexpr int kMaxDepth = 100;

// Reads [pos, end) of a buffer; every step checks the bytes it needs are there. Tags, lengths and
// varints are read as libprotobuf 3.21 reads them (what the native side parsed with before).
class WireReader {
 public:
  WireReader(const uint8_t* data, size_t begin, size_t end) : data_(data), pos_(begin), end_(end) {}

  bool at_end() const { return pos_ == end_; }
  size_t position() const { return pos_; }

  // Up to 10 bytes.
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const uint8_t byte = next_byte();
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    throw MalformedWire{};
  }

  // The next field's number and wire type; false at the end of the message. A tag is at most 5
  // bytes (bits beyond 32 dropped); field number 0 is invalid.
  bool next_field(uint32_t& field, uint32_t& wire) {
    if (at_end()) return false;
    uint64_t tag = 0;
    for (int i = 0;; ++i) {
      if (i == 5) throw MalformedWire{};
      const uint8_t byte = next_byte();
      tag |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
      if ((byte & 0x80) == 0) break;
    }
    const auto tag32 = static_cast<uint32_t>(tag);
    if ((tag32 >> 3) == 0) throw MalformedWire{};
    field = tag32 >> 3;
    wire = tag32 & 7;
    return true;
  }

  // A length-delimited field's payload. The length is at most 5 bytes and below 2 GB.
  ByteRange bytes() {
    uint64_t length = 0;
    for (int i = 0;; ++i) {
      if (i == 5) throw MalformedWire{};
      const uint8_t byte = next_byte();
      length |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
      if ((byte & 0x80) == 0) break;
    }
    if (length >= (uint64_t{1} << 31) || length > end_ - pos_) throw MalformedWire{};
    const ByteRange range{pos_, static_cast<size_t>(length)};
    pos_ += range.size;
    return range;
  }

  // A field this walker does not decode (or one whose wire type is not the schema's: libprotobuf
  // keeps those as unknown fields too). `depth`: of the message the field is in.
  void skip(uint32_t field, uint32_t wire, int depth) {
    switch (wire) {
      case kVarint: varint(); return;
      case kFixed64: advance(8); return;
      case kLengthDelimited: bytes(); return;
      case kFixed32: advance(4); return;
      case kStartGroup: {
        if (depth >= kMaxDepth) throw MalformedWire{};
        uint32_t f = 0, w = 0;
        while (next_field(f, w)) {
          if (w == kEndGroup) {
            if (f != field) throw MalformedWire{};
            return;
          }
          skip(f, w, depth + 1);
        }
        throw MalformedWire{};  // the group never ends
      }
      default: throw MalformedWire{};  // an end-group outside a group, or wire types 6 and 7
    }
  }

  WireReader sub(ByteRange range) const { return WireReader(data_, range.offset, range.offset + range.size); }
  std::string string(ByteRange range) const {
    return std::string(reinterpret_cast<const char*>(data_ + range.offset), range.size);
  }

 private:
  uint8_t next_byte() {
    if (pos_ == end_) throw MalformedWire{};
    return data_[pos_++];
  }
  void advance(size_t n) {
    if (n > end_ - pos_) throw MalformedWire{};
    pos_ += n;
  }

  const uint8_t* data_;
  size_t pos_, end_;
};

// [SECTION] The ONNX schema, for checking the whole file's structure
// libprotobuf refuses a file when any message in it, at any depth, does not parse: a node's
// attribute as much as the graph's outputs. check_message walks every message of the ONNX schema
// (onnx.proto of ONNX 1.12, the ML variant) to refuse the same files, without decoding them.
// Fields a newer ONNX adds are unknown fields here, skipped by length, as an older libprotobuf
// would.

enum class Msg : uint8_t {
  Model, Graph, Node, Attribute, Tensor, Segment, SparseTensor, ValueInfo, Type, TypeTensor, TypeSequence,
  TypeMap, TypeOptional, TypeSparseTensor, TypeOpaque, Shape, Dimension, StringPair, OpsetId, TensorAnnotation,
  TrainingInfo, Function
};

// The fields that hold messages (every other length-delimited field is a string or bytes).
struct SubMessage {
  Msg in;
  uint32_t field;
  Msg type;
};
constexpr SubMessage kSubMessages[] = {
    {Msg::Model, 7, Msg::Graph},           {Msg::Model, 8, Msg::OpsetId},
    {Msg::Model, 14, Msg::StringPair},     {Msg::Model, 20, Msg::TrainingInfo},
    {Msg::Model, 25, Msg::Function},       {Msg::Graph, 1, Msg::Node},
    {Msg::Graph, 5, Msg::Tensor},          {Msg::Graph, 15, Msg::SparseTensor},
    {Msg::Graph, 11, Msg::ValueInfo},      {Msg::Graph, 12, Msg::ValueInfo},
    {Msg::Graph, 13, Msg::ValueInfo},      {Msg::Graph, 14, Msg::TensorAnnotation},
    {Msg::Node, 5, Msg::Attribute},        {Msg::Attribute, 5, Msg::Tensor},
    {Msg::Attribute, 6, Msg::Graph},       {Msg::Attribute, 22, Msg::SparseTensor},
    {Msg::Attribute, 14, Msg::Type},       {Msg::Attribute, 10, Msg::Tensor},
    {Msg::Attribute, 11, Msg::Graph},      {Msg::Attribute, 23, Msg::SparseTensor},
    {Msg::Attribute, 15, Msg::Type},       {Msg::Tensor, 3, Msg::Segment},
    {Msg::Tensor, 13, Msg::StringPair},    {Msg::SparseTensor, 1, Msg::Tensor},
    {Msg::SparseTensor, 2, Msg::Tensor},   {Msg::ValueInfo, 2, Msg::Type},
    {Msg::Type, 1, Msg::TypeTensor},       {Msg::Type, 4, Msg::TypeSequence},
    {Msg::Type, 5, Msg::TypeMap},          {Msg::Type, 7, Msg::TypeOpaque},
    {Msg::Type, 8, Msg::TypeSparseTensor}, {Msg::Type, 9, Msg::TypeOptional},
    {Msg::TypeTensor, 2, Msg::Shape},      {Msg::TypeSparseTensor, 2, Msg::Shape},
    {Msg::TypeSequence, 1, Msg::Type},     {Msg::TypeOptional, 1, Msg::Type},
    {Msg::TypeMap, 2, Msg::Type},          {Msg::Shape, 1, Msg::Dimension},
    {Msg::TensorAnnotation, 2, Msg::StringPair}, {Msg::TrainingInfo, 1, Msg::Graph},
    {Msg::TrainingInfo, 2, Msg::Graph},    {Msg::TrainingInfo, 3, Msg::StringPair},
    {Msg::TrainingInfo, 4, Msg::StringPair}, {Msg::Function, 7, Msg::Node},
    {Msg::Function, 9, Msg::OpsetId},
};

// Repeated numbers, which may also come packed (one length-delimited run of them).
enum class Packed : uint8_t { Varint, Fixed32, Fixed64 };
struct PackedField {
  Msg in;
  uint32_t field;
  Packed kind;
};
constexpr PackedField kPackedFields[] = {
    {Msg::Tensor, 1, Packed::Varint},    {Msg::Tensor, 4, Packed::Fixed32},    {Msg::Tensor, 5, Packed::Varint},
    {Msg::Tensor, 7, Packed::Varint},    {Msg::Tensor, 10, Packed::Fixed64},   {Msg::Tensor, 11, Packed::Varint},
    {Msg::Attribute, 7, Packed::Fixed32}, {Msg::Attribute, 8, Packed::Varint}, {Msg::SparseTensor, 3, Packed::Varint},
};

// Throws MalformedWire where libprotobuf would fail to parse the message. `depth`: 0 for the
// ModelProto, +1 per nested message.
void check_message(WireReader r, Msg type, int depth) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (wire != kLengthDelimited) {
      r.skip(field, wire, depth);
      continue;
    }
    const ByteRange payload = r.bytes();
    for (const auto& m : kSubMessages) {
      if (m.in == type && m.field == field) {
        if (depth + 1 > kMaxDepth) throw MalformedWire{};
        check_message(r.sub(payload), m.type, depth + 1);
        break;
      }
    }
    for (const auto& p : kPackedFields) {
      if (p.in == type && p.field == field) {
        if (p.kind == Packed::Varint) {
          WireReader run = r.sub(payload);
          while (!run.at_end()) run.varint();
        } else if (payload.size % (p.kind == Packed::Fixed32 ? 4 : 8) != 0) {
          throw MalformedWire{};
        }
        break;
      }
    }
  }
}

// int32 fields are varints truncated to 32 bits; int64 ones reinterpret the 64 bits.
int32_t to_int32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }
int64_t to_int64(uint64_t v) { return static_cast<int64_t>(v); }

// [SECTION] The ONNX messages we decode (onnx.proto field numbers)
// Protobuf semantics kept: the last value of a singular field wins, a repeated message appends, and
// a singular message that appears twice is merged (so each is parsed into the same struct).

struct Dimension {        // TensorShapeProto.Dimension: oneof value { 1 dim_value, 2 dim_param }
  enum Kind { kNone, kValue, kParam } kind = kNone;
  int64_t value = 0;
  std::string param;
};

struct ValueInfo {        // ValueInfoProto: 1 name, 2 type
  std::string name;
  bool has_tensor_type = false;   // TypeProto: oneof value { 1 tensor_type, 4, 5, 7, 8, 9 others }
  int32_t elem_type = 0;          // TypeProto.Tensor: 1 elem_type, 2 shape
  std::vector<Dimension> dims;    // TensorShapeProto: 1 dim
};

struct Initializer {      // TensorProto: 1 dims, 2 data_type, 8 name, 9 raw_data
  std::vector<int64_t> dims;
  int32_t data_type = 0;
  ByteRange raw_data;
};

struct Graph {            // GraphProto: 5 initializer, 11 input, 12 output
  std::vector<Initializer> initializers;
  std::vector<ValueInfo> inputs, outputs;
};

struct OpsetId {          // OperatorSetIdProto: 1 domain, 2 version
  std::string domain;
  int64_t version = 0;
};

struct Model {            // ModelProto: 1 ir_version, 2 producer_name, 3 producer_version, 7 graph,
  int64_t ir_version = 0;  //             8 opset_import, 14 metadata_props
  std::string producer_name, producer_version;
  bool has_graph = false;
  Graph graph;
  std::vector<OpsetId> opset_import;
  std::vector<std::pair<std::string, ByteRange>> metadata_props;  // StringStringEntryProto: 1 key, 2 value
};

void parse_dimension(WireReader r, Dimension& d) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kVarint) {
      d.kind = Dimension::kValue;
      d.value = to_int64(r.varint());
      d.param.clear();
    } else if (field == 2 && wire == kLengthDelimited) {
      d.kind = Dimension::kParam;
      d.param = r.string(r.bytes());
      d.value = 0;
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_shape(WireReader r, ValueInfo& v) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kLengthDelimited) {
      v.dims.emplace_back();
      parse_dimension(r.sub(r.bytes()), v.dims.back());
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_tensor_type(WireReader r, ValueInfo& v) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kVarint) {
      v.elem_type = to_int32(r.varint());
    } else if (field == 2 && wire == kLengthDelimited) {
      parse_shape(r.sub(r.bytes()), v);
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_type(WireReader r, ValueInfo& v) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kLengthDelimited) {
      if (!v.has_tensor_type) {  // switching the oneof to tensor_type starts it empty
        v.has_tensor_type = true;
        v.elem_type = 0;
        v.dims.clear();
      }
      parse_tensor_type(r.sub(r.bytes()), v);
    } else if ((field == 4 || field == 5 || field == 7 || field == 8 || field == 9) && wire == kLengthDelimited) {
      v.has_tensor_type = false;  // another member of the oneof: not a tensor
      v.elem_type = 0;
      v.dims.clear();
      r.bytes();
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_value_info(WireReader r, ValueInfo& v) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kLengthDelimited) {
      v.name = r.string(r.bytes());
    } else if (field == 2 && wire == kLengthDelimited) {
      parse_type(r.sub(r.bytes()), v);
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_initializer(WireReader r, Initializer& t) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kVarint) {
      t.dims.push_back(to_int64(r.varint()));
    } else if (field == 1 && wire == kLengthDelimited) {  // packed dims
      WireReader packed = r.sub(r.bytes());
      while (!packed.at_end()) t.dims.push_back(to_int64(packed.varint()));
    } else if (field == 2 && wire == kVarint) {
      t.data_type = to_int32(r.varint());
    } else if (field == 9 && wire == kLengthDelimited) {
      t.raw_data = r.bytes();
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_graph(WireReader r, Graph& g) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 5 && wire == kLengthDelimited) {
      g.initializers.emplace_back();
      parse_initializer(r.sub(r.bytes()), g.initializers.back());
    } else if ((field == 11 || field == 12) && wire == kLengthDelimited) {
      auto& list = field == 11 ? g.inputs : g.outputs;
      list.emplace_back();
      parse_value_info(r.sub(r.bytes()), list.back());
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_opset(WireReader r, OpsetId& o) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kLengthDelimited) {
      o.domain = r.string(r.bytes());
    } else if (field == 2 && wire == kVarint) {
      o.version = to_int64(r.varint());
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_metadata_entry(WireReader r, std::pair<std::string, ByteRange>& entry) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kLengthDelimited) {
      entry.first = r.string(r.bytes());
    } else if (field == 2 && wire == kLengthDelimited) {
      entry.second = r.bytes();
    } else {
      r.skip(field, wire, 0);
    }
  }
}

void parse_model(WireReader r, Model& m) {
  uint32_t field = 0, wire = 0;
  while (r.next_field(field, wire)) {
    if (field == 1 && wire == kVarint) {
      m.ir_version = to_int64(r.varint());
    } else if (field == 2 && wire == kLengthDelimited) {
      m.producer_name = r.string(r.bytes());
    } else if (field == 3 && wire == kLengthDelimited) {
      m.producer_version = r.string(r.bytes());
    } else if (field == 7 && wire == kLengthDelimited) {
      m.has_graph = true;
      parse_graph(r.sub(r.bytes()), m.graph);
    } else if (field == 8 && wire == kLengthDelimited) {
      m.opset_import.emplace_back();
      parse_opset(r.sub(r.bytes()), m.opset_import.back());
    } else if (field == 14 && wire == kLengthDelimited) {
      m.metadata_props.emplace_back();
      parse_metadata_entry(r.sub(r.bytes()), m.metadata_props.back());
    } else {
      r.skip(field, wire, 0);
    }
  }
}

// [SECTION] Writing: the card's metadata_props entry, re-encoded

void append_varint(std::vector<uint8_t>& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<uint8_t>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<uint8_t>(value));
}

void append_bytes_field(std::vector<uint8_t>& out, uint32_t field, const uint8_t* bytes, size_t size) {
  append_varint(out, (uint64_t{field} << 3) | kLengthDelimited);
  append_varint(out, size);
  out.insert(out.end(), bytes, bytes + size);
}

// ModelProto field 14: StringStringEntryProto {1 key, 2 value}.
std::vector<uint8_t> metadata_entry(const std::string& key, const std::string& value) {
  std::vector<uint8_t> entry;
  append_bytes_field(entry, 1, reinterpret_cast<const uint8_t*>(key.data()), key.size());
  append_bytes_field(entry, 2, reinterpret_cast<const uint8_t*>(value.data()), value.size());
  std::vector<uint8_t> field;
  append_bytes_field(field, 14, entry.data(), entry.size());
  return field;
}

// [SECTION] read_onnx_model: the checks, and with_model_card

// TensorProto.DataType names.
std::string element_type_name(int32_t type) {
  switch (type) {
    case 1: return "float32";
    case 10: return "float16";
    case 11: return "float64";
    case 7: return "int64";
    case 6: return "int32";
    case 2: return "uint8";
    case 3: return "int8";
    case 9: return "bool";
    default: return "type " + std::to_string(type);
  }
}

OnnxTensorInfo tensor_info(const ValueInfo& v) {
  OnnxTensorInfo info;
  info.name = v.name;
  if (v.has_tensor_type) {
    info.element_type = element_type_name(v.elem_type);
    for (const auto& d : v.dims) {
      if (d.kind == Dimension::kValue) info.dims.push_back(std::to_string(d.value));
      else info.dims.push_back(d.param.empty() ? "?" : d.param);
    }
  }
  return info;
}

// The card's JSON nesting limit (a real card nests about 5 levels).
constexpr int kMaxCardDepth = 64;

std::string first_bytes_hex(const uint8_t* data, size_t size) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < std::min<size_t>(size, 4); ++i) {
    std::snprintf(buf, sizeof buf, "%s%02X", i ? " " : "", static_cast<unsigned>(data[i]));
    out += buf;
  }
  return out;
}

}  // namespace

OnnxModelInfo read_onnx_model(const uint8_t* data, size_t size, const std::string& what) {
  if (data == nullptr || size == 0) {
    throw Error(ErrorCode::EmptyInput, what + ": empty file (0 bytes); expected an ONNX model");
  }
  // Every ONNX writer puts ModelProto's first field, ir_version (field 1, varint: tag byte 0x08), first.
  if (data[0] != 0x08) {
    throw Error(ErrorCode::UnknownFormat, what + ": not an ONNX model (it starts with bytes " +
                                              first_bytes_hex(data, size) +
                                              "; an ONNX file starts with 08, its ir_version field)");
  }
  Model model;
  try {
    check_message(WireReader(data, 0, size), Msg::Model, 0);
    parse_model(WireReader(data, 0, size), model);
  } catch (const MalformedWire&) {
    throw Error(ErrorCode::InvalidArgument,
                what + ": truncated or corrupt ONNX file (" + std::to_string(size) +
                    " bytes do not parse as an ONNX ModelProto); export the model again");
  }
  if (model.ir_version <= 0 || !model.has_graph) {
    throw Error(ErrorCode::UnknownFormat, what + ": not an ONNX model (no ir_version or no graph)");
  }
  if (model.opset_import.empty() || model.graph.outputs.empty()) {
    throw Error(ErrorCode::InvalidArgument, what + ": truncated or incomplete ONNX file (no opset_import or no outputs)");
  }
  OnnxModelInfo info;
  info.file_bytes = static_cast<int64_t>(size);
  info.ir_version = model.ir_version;
  for (const auto& o : model.opset_import) {
    if (o.domain.empty() || o.domain == "ai.onnx") info.opset = o.version;
  }
  info.producer = model.producer_name + (model.producer_version.empty() ? "" : " " + model.producer_version);
  for (const auto& in : model.graph.inputs) info.inputs.push_back(tensor_info(in));
  for (const auto& out : model.graph.outputs) info.outputs.push_back(tensor_info(out));
  uint64_t parameters = 0;  // unsigned: a corrupt file's dims may overflow, which must not be UB
  for (const auto& init : model.graph.initializers) {
    uint64_t n = 1;
    for (int64_t d : init.dims) n *= static_cast<uint64_t>(d);
    parameters += n;
    info.weight_ranges.push_back(init.raw_data);
  }
  info.parameters = static_cast<int64_t>(parameters);

  const ByteRange* card_text = nullptr;
  for (const auto& entry : model.metadata_props) {
    if (entry.first == kModelCardKey) card_text = &entry.second;
  }
  if (card_text == nullptr) {
    throw Error(ErrorCode::InvalidSpec, what + ": no Loupe model card (metadata_props has no '" +
                                            std::string(kModelCardKey) +
                                            "'): export the model with `loupe export` (or the file was cut short)");
  }
  json card_json;
  try {
    // Depth-limited: copying a json value recurses, and a hostile card could nest arrays 100,000 deep.
    const json::parser_callback_t depth_limit = [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxCardDepth) throw Error(ErrorCode::InvalidSpec, "nested deeper than " + std::to_string(kMaxCardDepth) + " levels");
      return true;
    };
    card_json = json::parse(data + card_text->offset, data + card_text->offset + card_text->size, depth_limit);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": the model card is not valid JSON: " + e.what());
  } catch (const json::exception& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": the model card is not valid JSON: " + e.what());
  }
  info.card_json = card_json;
  try {
    info.card = ModelCard::from_json(card_json);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": " + e.what());
  } catch (const json::exception& e) {  // a value of an unexpected type that from_json did not foresee
    throw Error(ErrorCode::InvalidSpec, what + ": model card: " + e.what());
  }

  // The card must describe this graph.
  const auto logits = std::find_if(info.outputs.begin(), info.outputs.end(),
                                   [](const OnnxTensorInfo& t) { return t.name == "logits"; });
  if (logits == info.outputs.end()) throw Error(ErrorCode::InvalidSpec, what + ": the graph has no 'logits' output");
  if (logits->dims.size() != 2 || logits->dims[1] != std::to_string(info.card.class_names.size())) {
    std::string shape;
    for (const auto& d : logits->dims) shape += (shape.empty() ? "" : ", ") + d;
    throw Error(ErrorCode::InvalidSpec, what + ": the model card lists " + std::to_string(info.card.class_names.size()) +
                                            " classes but the 'logits' output has shape [" + shape + "]");
  }
  for (const auto& o : info.card.outputs) {
    if (std::none_of(info.outputs.begin(), info.outputs.end(), [&](const OnnxTensorInfo& t) { return t.name == o.name; })) {
      throw Error(ErrorCode::InvalidSpec, what + ": the model card lists an output '" + o.name + "' the graph does not have");
    }
  }
  if (info.inputs.size() != 1 || info.inputs[0].dims.size() != 4 ||
      info.inputs[0].dims[1] != std::to_string(info.card.input_channels) ||
      info.inputs[0].dims[2] != std::to_string(info.card.input_height) ||
      info.inputs[0].dims[3] != std::to_string(info.card.input_width)) {
    throw Error(ErrorCode::InvalidSpec, what + ": the graph's input does not match the card's input " +
                                            std::to_string(info.card.input_channels) + "x" +
                                            std::to_string(info.card.input_height) + "x" +
                                            std::to_string(info.card.input_width));
  }
  return info;
}

std::vector<uint8_t> with_model_card(const uint8_t* data, size_t size, const json& card, const std::string& what) {
  const OnnxModelInfo before = read_onnx_model(data, size, what);
  try {
    ModelCard::from_json(card);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": the new card: " + e.what());
  } catch (const json::exception& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": the new card: " + e.what());
  }
  // Every top-level field is copied as it is, in its place; the card's entry is re-encoded there
  // (a second card entry, which the reader would have let win, is dropped).
  const std::vector<uint8_t> entry = metadata_entry(kModelCardKey, card.dump());
  std::vector<uint8_t> out;
  out.reserve(size + entry.size());
  bool written = false;
  try {
    WireReader r(data, 0, size);
    uint32_t field = 0, wire = 0;
    for (size_t begin = r.position(); r.next_field(field, wire); begin = r.position()) {
      if (field == 14 && wire == kLengthDelimited) {
        std::pair<std::string, ByteRange> props;
        parse_metadata_entry(r.sub(r.bytes()), props);
        if (props.first == kModelCardKey) {
          if (!written) out.insert(out.end(), entry.begin(), entry.end());
          written = true;
          continue;
        }
      } else {
        r.skip(field, wire, 0);
      }
      out.insert(out.end(), data + begin, data + r.position());
    }
  } catch (const MalformedWire&) {  // read_onnx_model parsed it: not expected
    throw Error(ErrorCode::InvalidArgument, what + ": truncated or corrupt ONNX file");
  }
  if (!written) out.insert(out.end(), entry.begin(), entry.end());

  // The result must read back, with the same weights byte for byte.
  const OnnxModelInfo after = read_onnx_model(out.data(), out.size(), what);
  bool same_weights = before.weight_ranges.size() == after.weight_ranges.size();
  for (size_t i = 0; same_weights && i < before.weight_ranges.size(); ++i) {
    const ByteRange a = before.weight_ranges[i], b = after.weight_ranges[i];
    same_weights = a.size == b.size && std::equal(data + a.offset, data + a.offset + a.size, out.data() + b.offset);
  }
  if (!same_weights) throw Error(ErrorCode::InvalidSpec, what + ": rewriting the card changed the weights (please report this)");
  return out;
}

// [SECTION] describe

std::string describe(const OnnxModelInfo& info) {
  const ModelCard& c = info.card;
  std::ostringstream out;
  out << c.name << " (version " << c.version << "): " << c.architecture << ", created " << c.created_utc << "\n";
  if (!c.description.empty()) out << "  " << c.description << "\n";
  out << "classes (" << c.class_names.size() << "):";
  for (const auto& n : c.class_names) out << " " << n;
  out << "\ninput: " << c.input_channels << "x" << c.input_height << "x" << c.input_width
      << " (NCHW float32, dynamic batch)\npreprocess: " << c.preprocess.to_json().dump() << "\n";
  const auto dims = [](const OnnxTensorInfo& t) {
    std::string s;
    for (const auto& d : t.dims) s += (s.empty() ? "" : ", ") + d;
    return "[" + s + "]";
  };
  out << "graph: " << info.producer << ", IR " << info.ir_version << ", opset " << info.opset << ", "
      << info.parameters << " parameters, " << info.file_bytes << " bytes\nprecision: " << c.precision_note() << "\n";
  for (const auto& t : info.inputs) out << "  input  " << t.name << " " << t.element_type << " " << dims(t) << "\n";
  for (const auto& t : info.outputs) out << "  output " << t.name << " " << t.element_type << " " << dims(t) << "\n";
  // The card's free-form entries (training_data, test_metrics) may hold anything: read defensively.
  const auto text = [](const json& j, const char* key) {
    if (!j.is_object() || !j.contains(key)) return std::string("?");
    return j.at(key).is_string() ? j.at(key).get<std::string>() : j.at(key).dump();
  };
  const auto number = [](const json& j, const char* key) {
    return j.is_object() && j.contains(key) && j.at(key).is_number() ? j.at(key).get<double>() : 0.0;
  };
  if (c.training_data.is_object()) {
    out << "training data: " << text(c.training_data, "folder");
    if (c.training_data.contains("class_counts")) out << ", class counts " << c.training_data.at("class_counts").dump();
    const json& split = c.training_data.contains("split") ? c.training_data.at("split") : json();
    if (split.is_object() && split.contains("seed")) out << ", split seed " << split.at("seed").dump();
    out << "\n";
  }
  if (c.test_metrics.is_object()) {
    const std::optional<Interval> ci = accuracy_interval_of(c.test_metrics);
    out << "test metrics: accuracy ";
    if (ci) out << with_interval(number(c.test_metrics, "accuracy"), *ci, 4) << " (95% interval)";
    else out << number(c.test_metrics, "accuracy");
    if (c.test_metrics.contains("total")) out << " on " << c.test_metrics.at("total").dump() << " held-out images";
    if (c.test_metrics.contains("balanced_accuracy")) {
      out << ", balanced accuracy " << c.test_metrics.at("balanced_accuracy").dump();
    }
    out << "\n";
    const json& classes = c.test_metrics.contains("classes") ? c.test_metrics.at("classes") : json();
    if (classes.is_array()) {
      for (const auto& k : classes) {
        char line[256];
        std::snprintf(line, sizeof line, "  %-20s precision %.4f  recall %.4f  f1 %.4f  support %s\n",
                      text(k, "name").c_str(), number(k, "precision"), number(k, "recall"), number(k, "f1"),
                      k.is_object() && k.contains("support") ? k.at("support").dump().c_str() : "null");
        out << line;
      }
    }
  } else {
    out << "test metrics: none\n";
  }
  if (c.calibration) {
    const json calibration = c.calibration->to_json();
    char line[256];
    std::snprintf(line, sizeof line, "calibration: %s, T = %.4f (fitted on %s)\n", c.calibration->method.c_str(),
                  c.calibration->temperature, text(calibration, "fitted_on").c_str());
    out << line;
    for (const char* part : {"val", "test"}) {
      const json& p = calibration.contains(part) ? calibration.at(part) : json();
      if (!p.is_object()) continue;
      std::snprintf(line, sizeof line, "  %-10s ECE %.4f -> %.4f, NLL %.4f -> %.4f (%s bins)\n",
                    std::string(part) == "val" ? "validation" : "test", number(p, "ece_before"), number(p, "ece_after"),
                    number(p, "nll_before"), number(p, "nll_after"), text(calibration, "ece_bins").c_str());
      out << line;
    }
  } else {
    out << "calibration: none (no temperature scaling)\n";
  }
  const auto interval = [](const json& j, const char* key, double scale, int digits, const char* unit = "") -> std::string {
    if (!j.is_object() || !j.contains(key) || !j.at(key).is_array() || j.at(key).size() != 2 ||
        !j.at(key)[0].is_number() || !j.at(key)[1].is_number()) {
      return "";
    }
    char buf[80];
    std::snprintf(buf, sizeof buf, " [%.*f%s, %.*f%s]", digits, scale * j.at(key)[0].get<double>(), unit, digits,
                  scale * j.at(key)[1].get<double>(), unit);
    return buf;
  };
  if (c.site_calibration) {
    const json site = c.site_calibration->to_json();
    char line[400];
    std::snprintf(line, sizeof line, "site calibration (in use): temperature scaling, T = %.4f, fitted on %lld labelled images %s%s\n",
                  c.site_calibration->temperature, static_cast<long long>(c.site_calibration->images),
                  site.contains("class_counts") ? site.at("class_counts").dump().c_str() : "",
                  c.site_calibration->created_utc.empty() ? "" : (" on " + c.site_calibration->created_utc).c_str());
    out << line;
    const json& before = site.contains("before") ? site.at("before") : json();
    const json& after = site.contains("after") ? site.at("after") : json();
    if (before.is_object() && after.is_object()) {
      std::snprintf(line, sizeof line, "  on those images: ECE %.4f%s -> %.4f%s, NLL %.4f%s -> %.4f%s (before: %s calibration, T = %.4f)\n",
                    number(before, "ece"), interval(before, "ece_interval", 1, 4).c_str(), number(after, "ece"),
                    interval(after, "ece_interval", 1, 4).c_str(), number(before, "nll"),
                    interval(before, "nll_interval", 1, 4).c_str(), number(after, "nll"),
                    interval(after, "nll_interval", 1, 4).c_str(), text(before, "calibration").c_str(),
                    number(before, "temperature"));
      out << line;
    }
    const json& points = site.contains("operating_points") ? site.at("operating_points") : json();
    for (const json& p : points.is_array() ? points : json::array()) {
      std::snprintf(line, sizeof line, "  operating point: %s when p >= %.4g (sensitivity %.3f%s, specificity %.3f%s on %s+%s images)\n",
                    text(p, "class").c_str(), number(p, "threshold"), number(p, "sensitivity"),
                    interval(p, "sensitivity_interval", 1, 3).c_str(), number(p, "specificity"),
                    interval(p, "specificity_interval", 1, 3).c_str(), text(p, "positives").c_str(),
                    text(p, "negatives").c_str());
      out << line;
    }
    if (c.calibration) {
      std::snprintf(line, sizeof line, "  the export's calibration (T = %.4f) is kept in the card, not used\n", c.calibration->temperature);
      out << line;
    }
  }
  out << "probabilities: " << probability_note(c) << "\npredicted class: " << decision_note(c) << "\n";
  if (c.ood) {
    const json ood = c.ood->to_json();
    char line[400];
    if (ood.contains("false_alarm_rate")) {  // a split-conformal threshold (native/export/ood_fit.h)
      std::snprintf(line, sizeof line, "out-of-distribution check: %s, output '%s' > %.4f flags an image (%s dims, fitted on %s)\n",
                    text(ood, "method").c_str(), text(ood, "output").c_str(), number(ood, "threshold"),
                    text(ood, "dims").c_str(), text(ood, "fitted_on").c_str());
      out << line;
      std::snprintf(line, sizeof line, "  threshold: %s, on %s\n", text(ood, "threshold_method").c_str(),
                    text(ood, "threshold_fitted_on").c_str());
      out << line;
      std::snprintf(line, sizeof line, "  false alarms on new in-distribution images: %.1f%%%s (%s); measured: validation %.1f%%, test %.1f%%%s\n",
                    100 * number(ood, "false_alarm_rate"), interval(ood, "false_alarm_interval", 100, 1, "%").c_str(),
                    text(ood, "false_alarm_interval_method").c_str(), 100 * number(ood, "val_false_alarm_rate"),
                    100 * number(ood, "test_false_alarm_rate"), interval(ood, "test_false_alarm_interval", 100, 1, "%").c_str());
      out << line;
      const json& cross = ood.contains("cross_fit_exchangeability") ? ood.at("cross_fit_exchangeability") : json();
      if (cross.is_object() && cross.value("training_distances", 0) > 0) {
        std::snprintf(line, sizeof line, "  cross-fitted training distances: %s (%s; p = %.3g)\n",
                      cross.value("used", false) ? "used" : "not used", text(cross, "why").c_str(), number(cross, "p_value"));
        out << line;
      }
    } else {
      std::snprintf(line, sizeof line,
                    "out-of-distribution check: %s, output '%s' > %.4f flags an image (%s dims, threshold at quantile "
                    "%s of validation, fitted on %s)\n",
                    text(ood, "method").c_str(), text(ood, "output").c_str(), number(ood, "threshold"),
                    text(ood, "dims").c_str(), text(ood, "threshold_quantile").c_str(), text(ood, "fitted_on").c_str());
      out << line;
      std::snprintf(line, sizeof line, "  false alarms: validation %.1f%%, test %.1f%%\n",
                    100 * number(ood, "val_false_alarm_rate"), 100 * number(ood, "test_false_alarm_rate"));
      out << line;
    }
  } else {
    out << "out-of-distribution check: none\n";
  }
  if (c.self_test) {
    std::string names;
    for (const std::string& name : c.self_test->output_names()) names += (names.empty() ? "" : ", ") + name;
    char line[320];
    std::snprintf(line, sizeof line,
                  "self-test: %zu synthetic images (%s, seed %llu), expected %s within %.3g (absolute) / %.3g "
                  "(relative)\n",
                  c.self_test->images.size(), c.self_test->generator.c_str(),
                  static_cast<unsigned long long>(c.self_test->seed), names.c_str(), c.self_test->absolute_tolerance,
                  c.self_test->relative_tolerance);
    out << line;
  } else {
    out << "self-test: none (exported before Loupe wrote one)\n";
  }
  out << "weights sha256: " << c.weights_sha256 << (info.weights_verified ? " (verified)" : "") << "\n";
  out << "intended use: " << c.intended_use << "\n" << c.disclaimer << "\n";
  return out.str();
}

}  // namespace loupe
