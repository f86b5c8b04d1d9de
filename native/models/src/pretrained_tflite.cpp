// ImageNet weights from TensorFlow Lite's quantised MobileNetV2 (see pretrained.h for the mapping).
// Index:
//   [SECTION] Schema      the few tables and field ids of tensorflow/lite/schema/schema.fbs we read
//   [SECTION] Reader      bounds-checked access over flatbuffers' generic Table
//   [SECTION] Parsing     Model -> TfliteModel (subgraph 0)
//   [SECTION] Dequantise  scale * (q - zero_point), per tensor or per channel
//   [SECTION] Loading     the file's convolutions -> mobilenet_v2's Conv2d + BatchNorm2d pairs
//   [SECTION] BatchNorm calibration   statistics for train-mode fine-tuning, eval function unchanged
//
// Why no generated code: TFLite's schema.fbs is not packaged in Debian, and the loader needs ~30 fields
// of it. Reading them through flatbuffers::Table with the field ids written out below keeps the
// dependency to flatbuffers' headers; every access goes through flatbuffers::Verifier first, so a
// truncated or hostile file gives an Error, never an out-of-bounds read.
#include "loupe/models/pretrained.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "loupe/error.h"
#include "loupe/image.h"

namespace loupe::models {

namespace fb = flatbuffers;
namespace nn = torch::nn;

static_assert(FLATBUFFERS_LITTLEENDIAN, "TFLite buffers are little-endian; this reader copies them as is");

namespace {

// [SECTION] Schema
// Field ids in declaration order of schema.fbs (a union takes two ids: its _type byte, then the
// value). New fields are only ever appended there, so these stay valid for older and newer files.
namespace model_field { constexpr int version = 0, operator_codes = 1, subgraphs = 2, description = 3, buffers = 4; }
namespace subgraph_field { constexpr int tensors = 0, inputs = 1, outputs = 2, operators = 3; }
namespace tensor_field { constexpr int shape = 0, type = 1, buffer = 2, name = 3, quantization = 4; }
namespace quant_field { constexpr int scale = 2, zero_point = 3, details_type = 4, quantized_dimension = 6; }
namespace buffer_field { constexpr int data = 0, offset = 1; }
// builtin_code was a byte (now "deprecated_builtin_code", id 0) until codes passed 127; newer files
// also write the int32 builtin_code (id 3). The real code is the larger of the two (TFLite does this).
namespace opcode_field { constexpr int deprecated_builtin_code = 0, builtin_code = 3; }
namespace operator_field { constexpr int opcode_index = 0, inputs = 1, outputs = 2, options_type = 3, options = 4; }
// BuiltinOptions union member numbers (1-based position in the union) and their fields.
namespace options_type { constexpr uint8_t conv2d = 1, depthwise_conv2d = 2, pool2d = 5, fully_connected = 8; }
namespace conv_field { constexpr int padding = 0, stride_w = 1, stride_h = 2, activation = 3, dilation_w = 4, dilation_h = 5; }
namespace dwconv_field {
constexpr int padding = 0, stride_w = 1, stride_h = 2, depth_multiplier = 3, activation = 4, dilation_w = 5, dilation_h = 6;
}
namespace pool_field { constexpr int padding = 0, stride_w = 1, stride_h = 2, filter_w = 3, filter_h = 4, activation = 5; }
namespace fc_field { constexpr int activation = 0; }
constexpr int8_t kPaddingSame = 0;
constexpr int kMaxRank = 8;

// A field's slot in its table's vtable.
fb::voffset_t slot(int id) { return static_cast<fb::voffset_t>(4 + 2 * id); }

// [SECTION] Reader

using TableVector = fb::Vector<fb::Offset<fb::Table>>;

// Every accessor verifies before it dereferences and throws Error(CorruptImage) naming `what`
// ("subgraphs[0].tensors[12].shape") when the bytes do not hold what the schema says.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : base_(data), verifier_(data, size, options()) {}

  const fb::Table* root() {
    // 4-byte root offset, then the file identifier.
    check(verifier_.VerifyOffset(0) != 0, "the root table offset");
    return open(fb::GetRoot<fb::Table>(base_), "the root table (Model)");
  }

  // A child table, or nullptr when the field is absent.
  const fb::Table* table(const fb::Table* t, int id, const std::string& what) {
    check(t->VerifyOffset(verifier_, slot(id)), what);
    const auto* child = t->GetPointer<const fb::Table*>(slot(id));
    return child ? open(child, what) : nullptr;
  }

  template <typename T>
  T scalar(const fb::Table* t, int id, T default_value, const std::string& what) {
    check(t->VerifyField<T>(verifier_, slot(id), sizeof(T)), what);
    return t->GetField<T>(slot(id), default_value);
  }

  // A vector of scalars, or nullptr when absent.
  template <typename T>
  const fb::Vector<T>* vector(const fb::Table* t, int id, const std::string& what) {
    check(t->VerifyOffset(verifier_, slot(id)), what);
    const auto* vec = t->GetPointer<const fb::Vector<T>*>(slot(id));
    check(verifier_.VerifyVector(vec), what);
    return vec;
  }

  template <typename T>
  std::vector<T> copy_vector(const fb::Table* t, int id, const std::string& what) {
    const auto* vec = vector<T>(t, id, what);
    std::vector<T> out(vec ? vec->size() : 0);
    // memcpy, not Get(i): the verifier checks the bounds but not the elements' alignment (a crafted
    // file can misalign an 8-byte zero_point vector). Little-endian, as asserted above.
    if (!out.empty()) std::memcpy(out.data(), vec->Data(), out.size() * sizeof(T));
    return out;
  }

  std::string string(const fb::Table* t, int id, const std::string& what) {
    check(t->VerifyOffset(verifier_, slot(id)), what);
    const auto* str = t->GetPointer<const fb::String*>(slot(id));
    check(verifier_.VerifyString(str), what);
    return str ? str->str() : std::string();
  }

  // A vector of tables (nullptr when absent); read its elements with element().
  const TableVector* tables(const fb::Table* t, int id, const std::string& what) {
    return vector<fb::Offset<fb::Table>>(t, id, what);
  }

  const fb::Table* element(const TableVector* vec, fb::uoffset_t i, const std::string& what) {
    const uint8_t* entry = vec->Data() + i * sizeof(fb::uoffset_t);
    check(verifier_.VerifyOffset(static_cast<size_t>(entry - base_)) != 0, what);
    return open(vec->Get(i), what);
  }

 private:
  static fb::Verifier::Options options() {
    fb::Verifier::Options o;
    o.max_depth = 64;
    o.max_tables = 1000000;
    return o;
  }

  const fb::Table* open(const fb::Table* t, const std::string& what) {
    check(t->VerifyTableStart(verifier_), what);
    verifier_.EndTable();  // we verify lazily, table by table: keep the depth counter balanced
    return t;
  }

  static void check(bool ok, const std::string& what) {
    if (!ok) {
      throw Error(ErrorCode::CorruptImage,
                  "TFLite file is truncated or corrupt: " + what + " points outside the file or is malformed");
    }
  }

  const uint8_t* base_;
  fb::Verifier verifier_;
};

// [SECTION] Parsing

[[noreturn]] void corrupt(const std::string& message) {
  throw Error(ErrorCode::CorruptImage, "TFLite file is inconsistent: " + message);
}

std::string at(const std::string& parent, const char* field) { return parent + "." + field; }
std::string at(const std::string& parent, const char* field, size_t i) {
  return parent + "." + field + "[" + std::to_string(i) + "]";
}

void read_options(Reader& r, const fb::Table* op_table, const std::string& where, TfliteOperator& op) {
  const auto type = r.scalar<uint8_t>(op_table, operator_field::options_type, 0, at(where, "builtin_options_type"));
  const fb::Table* o = r.table(op_table, operator_field::options, at(where, "builtin_options"));
  if (!o) return;
  const std::string ow = at(where, "builtin_options");
  if (type == options_type::conv2d) {
    op.padding_same = r.scalar<int8_t>(o, conv_field::padding, 0, ow) == kPaddingSame;
    op.stride_w = r.scalar<int32_t>(o, conv_field::stride_w, 0, ow);
    op.stride_h = r.scalar<int32_t>(o, conv_field::stride_h, 0, ow);
    op.fused_activation = r.scalar<int8_t>(o, conv_field::activation, 0, ow);
    op.dilation_w = r.scalar<int32_t>(o, conv_field::dilation_w, 1, ow);
    op.dilation_h = r.scalar<int32_t>(o, conv_field::dilation_h, 1, ow);
  } else if (type == options_type::depthwise_conv2d) {
    op.padding_same = r.scalar<int8_t>(o, dwconv_field::padding, 0, ow) == kPaddingSame;
    op.stride_w = r.scalar<int32_t>(o, dwconv_field::stride_w, 0, ow);
    op.stride_h = r.scalar<int32_t>(o, dwconv_field::stride_h, 0, ow);
    op.depth_multiplier = r.scalar<int32_t>(o, dwconv_field::depth_multiplier, 0, ow);
    op.fused_activation = r.scalar<int8_t>(o, dwconv_field::activation, 0, ow);
    op.dilation_w = r.scalar<int32_t>(o, dwconv_field::dilation_w, 1, ow);
    op.dilation_h = r.scalar<int32_t>(o, dwconv_field::dilation_h, 1, ow);
  } else if (type == options_type::pool2d) {
    op.padding_same = r.scalar<int8_t>(o, pool_field::padding, 0, ow) == kPaddingSame;
    op.stride_w = r.scalar<int32_t>(o, pool_field::stride_w, 0, ow);
    op.stride_h = r.scalar<int32_t>(o, pool_field::stride_h, 0, ow);
    op.filter_w = r.scalar<int32_t>(o, pool_field::filter_w, 0, ow);
    op.filter_h = r.scalar<int32_t>(o, pool_field::filter_h, 0, ow);
    op.fused_activation = r.scalar<int8_t>(o, pool_field::activation, 0, ow);
  } else if (type == options_type::fully_connected) {
    op.fused_activation = r.scalar<int8_t>(o, fc_field::activation, 0, ow);
  }
  // The options of other ops are not needed here.
}

void check_indices(const std::vector<int32_t>& indices, size_t tensor_count, bool allow_absent,
                   const std::string& what) {
  for (size_t i = 0; i < indices.size(); ++i) {
    const int32_t index = indices[i];
    if ((index == -1 && allow_absent) || (index >= 0 && static_cast<size_t>(index) < tensor_count)) continue;
    corrupt(what + "[" + std::to_string(i) + "] = " + std::to_string(index) + " is not a tensor index (the subgraph has " +
            std::to_string(tensor_count) + " tensors)");
  }
}

}  // namespace

TfliteModel read_tflite(const uint8_t* data, size_t size) {
  if (size == 0 || data == nullptr) throw Error(ErrorCode::EmptyInput, "TFLite file is empty");
  // "TFL3" at bytes 4..7 (after the root offset) is TFLite's file_identifier.
  if (size < 8 || !fb::BufferHasIdentifier(data, "TFL3")) {
    throw Error(ErrorCode::UnknownFormat, "not a TensorFlow Lite model: the file identifier \"TFL3\" is missing" +
                                              std::string(size < 8 ? " (the file has only " + std::to_string(size) +
                                                                         " bytes)"
                                                                   : ""));
  }
  if (size >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    throw Error(ErrorCode::UnsupportedImage, "TFLite files of 2 GiB or more (external buffers) are not supported");
  }

  Reader r(data, size);
  const fb::Table* model = r.root();
  TfliteModel out;
  out.version = r.scalar<uint32_t>(model, model_field::version, 0, "Model.version");
  out.description = r.string(model, model_field::description, "Model.description");

  // Operator codes: builtin code per entry.
  std::vector<int32_t> opcodes;
  if (const auto* codes = r.tables(model, model_field::operator_codes, "Model.operator_codes")) {
    for (fb::uoffset_t i = 0; i < codes->size(); ++i) {
      const std::string w = at("Model", "operator_codes", i);
      const fb::Table* code = r.element(codes, i, w);
      const auto old_code = r.scalar<int8_t>(code, opcode_field::deprecated_builtin_code, 0, w);
      const auto new_code = r.scalar<int32_t>(code, opcode_field::builtin_code, 0, w);
      opcodes.push_back(std::max<int32_t>(old_code, new_code));
    }
  }

  const TableVector* buffers = r.tables(model, model_field::buffers, "Model.buffers");
  const TableVector* subgraphs = r.tables(model, model_field::subgraphs, "Model.subgraphs");
  if (!subgraphs || subgraphs->size() == 0) corrupt("the model has no subgraph");
  const fb::Table* graph = r.element(subgraphs, 0, "Model.subgraphs[0]");
  const std::string gw = "subgraphs[0]";

  // Tensors, with their constant data copied out of the buffers.
  const TableVector* tensors = r.tables(graph, subgraph_field::tensors, at(gw, "tensors"));
  const fb::uoffset_t tensor_count = tensors ? tensors->size() : 0;
  out.tensors.reserve(tensor_count);
  for (fb::uoffset_t i = 0; i < tensor_count; ++i) {
    const std::string w = at(gw, "tensors", i);
    const fb::Table* t = r.element(tensors, i, w);
    TfliteTensor tensor;
    tensor.name = r.string(t, tensor_field::name, at(w, "name"));
    tensor.shape = r.copy_vector<int32_t>(t, tensor_field::shape, at(w, "shape"));
    tensor.type = r.scalar<int8_t>(t, tensor_field::type, 0, at(w, "type"));
    if (tensor.shape.size() > static_cast<size_t>(kMaxRank)) corrupt(w + " (" + tensor.name + ") has rank above 8");
    for (int32_t d : tensor.shape) {
      if (d < 0) corrupt(w + " (" + tensor.name + ") has a negative dimension");
    }
    const auto buffer_index = r.scalar<uint32_t>(t, tensor_field::buffer, 0, at(w, "buffer"));
    if (buffer_index != 0) {
      if (!buffers || buffer_index >= buffers->size()) {
        corrupt(w + " (" + tensor.name + ") refers to buffer " + std::to_string(buffer_index) + " of " +
                std::to_string(buffers ? buffers->size() : 0));
      }
      const std::string bw = at("Model", "buffers", buffer_index);
      const fb::Table* buffer = r.element(buffers, buffer_index, bw);
      tensor.data = r.copy_vector<uint8_t>(buffer, buffer_field::data, at(bw, "data"));
      if (tensor.data.empty() && r.scalar<uint64_t>(buffer, buffer_field::offset, 0, at(bw, "offset")) > 1) {
        throw Error(ErrorCode::UnsupportedImage,
                    "TFLite tensor " + tensor.name + " keeps its data outside the flatbuffer (files over 2 GiB): not supported");
      }
    }
    if (const fb::Table* q = r.table(t, tensor_field::quantization, at(w, "quantization"))) {
      const std::string qw = at(w, "quantization");
      if (r.scalar<uint8_t>(q, quant_field::details_type, 0, qw) != 0) {
        throw Error(ErrorCode::UnsupportedImage, "TFLite tensor " + tensor.name + " uses custom quantization details");
      }
      tensor.quantization.scale = r.copy_vector<float>(q, quant_field::scale, at(qw, "scale"));
      tensor.quantization.zero_point = r.copy_vector<int64_t>(q, quant_field::zero_point, at(qw, "zero_point"));
      tensor.quantization.quantized_dimension = r.scalar<int32_t>(q, quant_field::quantized_dimension, 0, qw);
    }
    out.tensors.push_back(std::move(tensor));
  }

  out.inputs = r.copy_vector<int32_t>(graph, subgraph_field::inputs, at(gw, "inputs"));
  out.outputs = r.copy_vector<int32_t>(graph, subgraph_field::outputs, at(gw, "outputs"));
  check_indices(out.inputs, tensor_count, false, at(gw, "inputs"));
  check_indices(out.outputs, tensor_count, false, at(gw, "outputs"));

  if (const auto* ops = r.tables(graph, subgraph_field::operators, at(gw, "operators"))) {
    for (fb::uoffset_t i = 0; i < ops->size(); ++i) {
      const std::string w = at(gw, "operators", i);
      const fb::Table* o = r.element(ops, i, w);
      TfliteOperator op;
      const auto index = r.scalar<uint32_t>(o, operator_field::opcode_index, 0, at(w, "opcode_index"));
      if (index >= opcodes.size()) {
        corrupt(w + ".opcode_index " + std::to_string(index) + " is not below the " + std::to_string(opcodes.size()) +
                " operator codes");
      }
      op.opcode = opcodes[index];
      op.inputs = r.copy_vector<int32_t>(o, operator_field::inputs, at(w, "inputs"));
      op.outputs = r.copy_vector<int32_t>(o, operator_field::outputs, at(w, "outputs"));
      check_indices(op.inputs, tensor_count, true, at(w, "inputs"));
      check_indices(op.outputs, tensor_count, false, at(w, "outputs"));
      read_options(r, o, w, op);
      out.operators.push_back(std::move(op));
    }
  }
  return out;
}

TfliteModel read_tflite_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  try {
    return read_tflite(bytes.data(), bytes.size());
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
}

// [SECTION] Dequantise

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

std::vector<int64_t> shape_of(const TfliteTensor& tensor) { return {tensor.shape.begin(), tensor.shape.end()}; }

}  // namespace

torch::Tensor dequantize(const TfliteTensor& tensor) {
  const std::vector<int64_t> shape = shape_of(tensor);
  const auto fail = [&](const std::string& why) -> void {
    throw Error(ErrorCode::InvalidArgument, "dequantize: tensor " + tensor.name + " " + shape_string(shape) + ": " + why);
  };
  torch::ScalarType dtype = torch::kFloat;
  switch (static_cast<TfliteType>(tensor.type)) {
    case TfliteType::Float32: dtype = torch::kFloat; break;
    case TfliteType::UInt8: dtype = torch::kByte; break;
    case TfliteType::Int8: dtype = torch::kChar; break;
    case TfliteType::Int32: dtype = torch::kInt; break;
    default: fail("type code " + std::to_string(tensor.type) + " is not float32, uint8, int8 or int32");
  }
  // Element count, guarded against overflow by the data size (ranks are at most 8, dims < 2^31).
  uint64_t count = 1;
  for (int64_t d : shape) {
    count *= static_cast<uint64_t>(d);
    if (count > tensor.data.size()) break;
  }
  const uint64_t element_size = static_cast<uint64_t>(torch::elementSize(dtype));
  if (tensor.data.empty()) fail("has no constant data");
  if (count > tensor.data.size() || count * element_size != tensor.data.size()) {
    fail("holds " + std::to_string(tensor.data.size()) + " bytes, the shape needs " +
         std::to_string(count * element_size));
  }
  // from_blob does not own or modify the bytes; clone() copies them before the tensor outlives `tensor`.
  torch::Tensor raw = torch::from_blob(const_cast<uint8_t*>(tensor.data.data()), shape, torch::TensorOptions(dtype));
  if (dtype == torch::kFloat) return raw.clone();

  const auto& q = tensor.quantization;
  if (q.scale.empty()) fail("is an integer tensor without quantization scales");
  if (!q.zero_point.empty() && q.zero_point.size() != q.scale.size()) {
    fail(std::to_string(q.scale.size()) + " scales but " + std::to_string(q.zero_point.size()) + " zero points");
  }
  for (float s : q.scale) {
    if (!std::isfinite(s) || s <= 0.0f) fail("has a scale that is not a positive finite number");
  }
  torch::Tensor scale = torch::tensor(std::vector<double>(q.scale.begin(), q.scale.end()), torch::kDouble);
  torch::Tensor zero = q.zero_point.empty() ? torch::zeros_like(scale)
                                            : torch::tensor(std::vector<double>(q.zero_point.begin(), q.zero_point.end()),
                                                            torch::kDouble);
  if (q.scale.size() > 1) {  // per channel along quantized_dimension
    const int32_t axis = q.quantized_dimension;
    if (axis < 0 || static_cast<size_t>(axis) >= shape.size() || shape[static_cast<size_t>(axis)] !=
                                                                      static_cast<int64_t>(q.scale.size())) {
      fail(std::to_string(q.scale.size()) + " per-channel scales do not fit quantized_dimension " +
           std::to_string(axis));
    }
    std::vector<int64_t> view(shape.size(), 1);
    view[static_cast<size_t>(axis)] = -1;
    scale = scale.view(view);
    zero = zero.view(view);
  }
  // In double: int32 biases reach 2^31, beyond float32's exact integers.
  return ((raw.to(torch::kDouble) - zero) * scale).to(torch::kFloat);
}

// [SECTION] Loading

namespace {

// One CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED op of the file, dequantised, in PyTorch layout.
struct FileConv {
  std::string name;        // the weight tensor's name (e.g. "MobilenetV2/expanded_conv_1/depthwise/...")
  bool depthwise = false;
  int64_t stride = 1;
  torch::Tensor weight;    // OIHW (depthwise O1HW; fully connected [O, I])
  torch::Tensor bias;      // [O]
};

// One Conv2d of the model and the BatchNorm2d that follows it.
struct ModelConv {
  std::string name;
  nn::Conv2dImpl* conv = nullptr;
  nn::BatchNorm2dImpl* bn = nullptr;
};

std::vector<FileConv> file_convolutions(const TfliteModel& m, const std::string& file) {
  std::vector<FileConv> out;
  for (size_t i = 0; i < m.operators.size(); ++i) {
    const TfliteOperator& op = m.operators[i];
    const auto code = static_cast<TfliteOp>(op.opcode);
    if (code != TfliteOp::Conv2D && code != TfliteOp::DepthwiseConv2D && code != TfliteOp::FullyConnected) continue;
    if (op.inputs.size() < 2 || op.inputs[1] < 0) {
      throw Error(ErrorCode::InvalidArgument, "pretrained: " + file + ": operator " + std::to_string(i) + " has no weights");
    }
    const TfliteTensor& w = m.tensors[static_cast<size_t>(op.inputs[1])];
    FileConv fc;
    fc.name = w.name.substr(0, w.name.find(';'));  // converters join the fused ops' names with ';'
    torch::Tensor weight = dequantize(w);
    const auto bad_shape = [&](const char* expected) {
      throw Error(ErrorCode::InvalidArgument, "pretrained: " + file + ": " + fc.name + " has shape " +
                                                  shape_string(shape_of(w)) + ", expected " + expected);
    };
    if (code == TfliteOp::FullyConnected) {
      if (weight.dim() != 2) bad_shape("[out, in]");
    } else {
      if (weight.dim() != 4) bad_shape(code == TfliteOp::Conv2D ? "OHWI" : "1HWO");
      if (op.stride_h != op.stride_w || op.dilation_h != 1 || op.dilation_w != 1) {
        throw Error(ErrorCode::InvalidArgument, "pretrained: " + file + ": " + fc.name +
                                                    " has unequal strides or a dilation, which mobilenet_v2 does not use");
      }
      const int64_t kernel = weight.size(1);  // H in both OHWI and 1HWO
      if (kernel > 1 && !op.padding_same) {
        throw Error(ErrorCode::InvalidArgument, "pretrained: " + file + ": " + fc.name +
                                                    " uses VALID padding; mobilenet_v2 pads (k - 1) / 2 like SAME");
      }
      fc.stride = op.stride_h;
      if (code == TfliteOp::Conv2D) {
        weight = weight.permute({0, 3, 1, 2});  // OHWI -> OIHW
      } else {
        if (weight.size(0) != 1 || (op.depth_multiplier != 1 && op.depth_multiplier != 0)) {
          bad_shape("1HWO with depth multiplier 1");
        }
        fc.depthwise = true;
        weight = weight.permute({3, 0, 1, 2});  // 1HWO -> O1HW
      }
    }
    fc.weight = weight.contiguous();
    const int64_t out_channels = fc.weight.size(0);
    if (op.inputs.size() >= 3 && op.inputs[2] >= 0) {
      const TfliteTensor& b = m.tensors[static_cast<size_t>(op.inputs[2])];
      fc.bias = dequantize(b).reshape({-1});
      if (fc.bias.size(0) != out_channels) {
        throw Error(ErrorCode::InvalidArgument, "pretrained: " + file + ": bias " + b.name + " has " +
                                                    std::to_string(fc.bias.size(0)) + " values for " +
                                                    std::to_string(out_channels) + " output channels");
      }
    } else {
      fc.bias = torch::zeros({out_channels});
    }
    out.push_back(std::move(fc));
  }
  return out;
}

// Conv2d modules in registration order, each with the first BatchNorm2d after it (before the next conv).
std::vector<ModelConv> model_convolutions(Classifier& model) {
  std::vector<ModelConv> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (auto* conv = item.value()->as<nn::Conv2dImpl>()) {
      out.push_back({item.key(), conv, nullptr});
    } else if (auto* bn = item.value()->as<nn::BatchNorm2dImpl>()) {
      if (!out.empty() && out.back().bn == nullptr) out.back().bn = bn;
    }
  }
  return out;
}

std::string describe(const FileConv& c, size_t index) {
  return "convolution " + std::to_string(index + 1) + " (" + c.name + ", " + shape_string(c.weight.sizes().vec()) +
         (c.depthwise ? " depthwise" : "") + ", stride " + std::to_string(c.stride) + ")";
}

}  // namespace

std::string PretrainedReport::summary() const {
  std::ostringstream s;
  s << convolutions << " convolutions" << (head_loaded ? " + head" : " (head left fresh)") << " from " << source << ": "
    << tensors_loaded << " tensors, max |w| " << max_abs_weight << ", max |b| " << max_abs_bias
    << (gray_input ? ", first conv summed over RGB for gray input" : "") << "; expects x / 255 with mean "
    << preprocess_mean << ", std " << preprocess_std << " (input scale " << input_scale << ", zero point "
    << input_zero_point << ")";
  return s.str();
}

PretrainedReport load_pretrained(Classifier& model, const std::string& path) {
  const std::string file = std::filesystem::path(path).filename().string();
  const TfliteModel tflite = read_tflite_file(path);
  std::vector<FileConv> convs;
  try {
    convs = file_convolutions(tflite, file);
  } catch (const Error& e) {
    throw Error(e.code(), std::string(e.what()).rfind("pretrained:", 0) == 0 ? e.what()
                                                                             : "pretrained: " + file + ": " + e.what());
  }
  if (convs.size() < 2) {
    throw Error(ErrorCode::InvalidArgument, "pretrained: " + file + " has " + std::to_string(convs.size()) +
                                                " convolution or fully connected layers: not a classifier backbone");
  }
  const FileConv& file_head = convs.back();
  const size_t backbone_count = convs.size() - 1;

  const ModelConfig& config = model.config();
  std::vector<ModelConv> targets = model_convolutions(model);
  const std::string fits = "pretrained: " + file + " has " + std::to_string(backbone_count) +
                           " convolutions and a " + std::to_string(file_head.weight.size(0)) + "-class head";
  if (config.architecture != "mobilenet_v2") {
    throw Error(ErrorCode::InvalidArgument, fits + " (mobilenet_v2 weights); " + config.architecture + " has " +
                                                std::to_string(targets.size()) +
                                                " convolutions of other shapes and cannot take them: use mobilenet_v2");
  }
  if (targets.size() != backbone_count) {
    throw Error(ErrorCode::InvalidArgument, fits + "; this " + config.architecture + " has " +
                                                std::to_string(targets.size()) + " convolutions");
  }
  if (config.in_channels != 1 && config.in_channels != 3) {
    throw Error(ErrorCode::InvalidArgument, "pretrained: the first convolution of " + file +
                                                " takes 3 channels (RGB), or 1 with its weights summed; in_channels is " +
                                                std::to_string(config.in_channels));
  }

  // Check every layer before writing anything, and build the tensors to write.
  std::vector<torch::Tensor> weights(backbone_count);
  for (size_t i = 0; i < backbone_count; ++i) {
    const FileConv& src = convs[i];
    const ModelConv& dst = targets[i];
    torch::Tensor w = src.weight;
    if (i == 0 && config.in_channels == 1 && !src.depthwise && w.dim() == 4 && w.size(1) == 3) {
      w = w.sum(1, /*keepdim=*/true);  // gray input: conv(g, w_r + w_g + w_b) == conv([g, g, g], w)
    }
    const auto& options = dst.conv->options;
    const bool depthwise_target = options.groups() > 1;
    const auto stride = options.stride();
    const bool shape_ok = w.dim() == 4 && w.sizes() == dst.conv->weight.sizes();
    if (!shape_ok || src.depthwise != depthwise_target || stride->at(0) != src.stride || stride->at(1) != src.stride ||
        dst.bn == nullptr || dst.bn->options.num_features() != w.size(0)) {
      throw Error(ErrorCode::InvalidArgument,
                  "pretrained: " + file + ": " + describe(src, i) + " does not fit " + dst.name + ".weight " +
                      shape_string(dst.conv->weight.sizes().vec()) + (depthwise_target ? " depthwise" : "") +
                      ", stride " + std::to_string(stride->at(0)) + (dst.bn ? "" : " (no BatchNorm2d after it)"));
    }
    weights[i] = w;
  }
  nn::Linear head = model.head();
  const int64_t head_in = head->options.in_features();
  const int64_t head_out = head->options.out_features();
  torch::Tensor head_w = file_head.weight.reshape({file_head.weight.size(0), -1});
  if (head_w.size(1) != head_in) {
    throw Error(ErrorCode::InvalidArgument, "pretrained: " + file + ": the head " + file_head.name + " takes " +
                                                std::to_string(head_w.size(1)) + " features, the model's head " +
                                                std::to_string(head_in));
  }
  torch::Tensor head_b = file_head.bias;
  const int64_t file_classes = head_w.size(0);
  const bool load_head = head_out == file_classes || (head_out == 1000 && file_classes == 1001);
  if (load_head && head_out != file_classes) {  // drop class 0, "background"
    head_w = head_w.slice(0, 1);
    head_b = head_b.slice(0, 1);
  }

  // Write.
  PretrainedReport report;
  report.source = file;
  report.convolutions = static_cast<int64_t>(backbone_count);
  report.gray_input = config.in_channels == 1;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < backbone_count; ++i) {
    ModelConv& dst = targets[i];
    const torch::Tensor& bias = convs[i].bias;
    dst.conv->weight.copy_(weights[i]);
    if (dst.conv->bias.defined()) dst.conv->bias.zero_();
    // BatchNorm2d in eval: (x - mean) / sqrt(var + eps) * weight + bias == x + folded bias.
    dst.bn->weight.fill_(1.0);
    dst.bn->bias.copy_(bias);
    dst.bn->running_mean.zero_();
    dst.bn->running_var.fill_(1.0 - dst.bn->options.eps());
    report.tensors_loaded += 2;  // the file's weight and bias
    report.max_abs_weight = std::max(report.max_abs_weight, weights[i].abs().max().item<double>());
    report.max_abs_bias = std::max(report.max_abs_bias, bias.abs().max().item<double>());
  }
  if (load_head) {
    head->weight.copy_(head_w);
    head->bias.copy_(head_b);
    report.head_loaded = true;
    report.tensors_loaded += 2;
    report.max_abs_weight = std::max(report.max_abs_weight, head_w.abs().max().item<double>());
    report.max_abs_bias = std::max(report.max_abs_bias, head_b.abs().max().item<double>());
  }

  // The input's quantisation gives the preprocessing: real = s * (pixel - z) = (x - z / 255) / (1 / (255 s))
  // with x = pixel / 255. A float model has no such record: MobileNet's convention, [-1, 1], is assumed.
  report.preprocess_mean = 0.5;
  report.preprocess_std = 0.5;
  if (!tflite.inputs.empty()) {
    const TfliteTensor& input = tflite.tensors[static_cast<size_t>(tflite.inputs[0])];
    if (input.quantization.scale.size() == 1 && input.quantization.scale[0] > 0.0f) {
      report.input_scale = input.quantization.scale[0];
      report.input_zero_point = input.quantization.zero_point.empty() ? 0 : input.quantization.zero_point[0];
      report.preprocess_mean = static_cast<double>(report.input_zero_point) / 255.0;
      report.preprocess_std = 1.0 / (255.0 * report.input_scale);
    }
  }
  return report;
}

// [SECTION] BatchNorm calibration

namespace {

struct Moments {
  torch::Tensor sum, sum_sq;  // per channel, double
  int64_t count = 0;          // values per channel seen
};

// mobilenet_v2's features forward, module by module (the tree blocks.h documents), recording each
// BatchNorm2d's input moments on the way. LibTorch has no forward hooks, hence the walk.
torch::Tensor forward_recording(nn::Module& m, torch::Tensor x, std::unordered_map<nn::BatchNorm2dImpl*, Moments>& moments) {
  if (auto* seq = m.as<nn::SequentialImpl>()) {
    for (const auto& child : seq->children()) x = forward_recording(*child, x, moments);
    return x;
  }
  if (auto* block = m.as<InvertedResidualImpl>()) {
    torch::Tensor y = forward_recording(*block->body, x, moments);
    return block->use_residual ? y + x : y;
  }
  if (auto* bn = m.as<nn::BatchNorm2dImpl>()) {
    Moments& mo = moments[bn];
    const torch::Tensor xd = x.to(torch::kDouble);
    const torch::Tensor s = xd.sum({0, 2, 3}), sq = xd.pow(2).sum({0, 2, 3});
    mo.sum = mo.sum.defined() ? mo.sum + s : s;
    mo.sum_sq = mo.sum_sq.defined() ? mo.sum_sq + sq : sq;
    mo.count += x.size(0) * x.size(2) * x.size(3);
    return bn->forward(x);
  }
  if (auto* conv = m.as<nn::Conv2dImpl>()) return conv->forward(x);
  if (auto* relu6 = m.as<nn::ReLU6Impl>()) return relu6->forward(x);
  throw Error(ErrorCode::InvalidArgument, "calibrate_batchnorm: unexpected module " + m.name() + " in mobilenet_v2");
}

}  // namespace

int64_t calibrate_batchnorm(Classifier& model, const torch::Tensor& images) {
  const ModelConfig& config = model.config();
  if (config.architecture != "mobilenet_v2") {
    throw Error(ErrorCode::InvalidArgument, "calibrate_batchnorm: supports mobilenet_v2 (the pretrained architecture), not " +
                                                config.architecture);
  }
  if (!images.defined() || images.dim() != 4 || images.size(0) < 2 || images.size(1) != config.in_channels ||
      !images.is_floating_point()) {
    throw Error(ErrorCode::InvalidArgument, "calibrate_batchnorm: expected float images [N >= 2, " +
                                                std::to_string(config.in_channels) + ", H, W]");
  }
  std::shared_ptr<nn::Module> features;
  for (const auto& child : model.named_children()) {
    if (child.key() == "features") features = child.value();
  }
  if (!features) throw Error(ErrorCode::InvalidArgument, "calibrate_batchnorm: the model has no features child");

  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::unordered_map<nn::BatchNorm2dImpl*, Moments> moments;
  const auto device = model.parameters().front().device();
  try {
    // Small chunks bound the activation memory (and keep big tensors off mmap/munmap churn).
    constexpr int64_t kChunk = 4;
    for (int64_t i = 0; i < images.size(0); i += kChunk) {
      forward_recording(*features, images.slice(0, i, std::min(i + kChunk, images.size(0))).to(device), moments);
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  for (auto& [bn, mo] : moments) {
    const double n = static_cast<double>(mo.count);
    const torch::Tensor mean = mo.sum / n;
    const torch::Tensor var = (mo.sum_sq / n - mean * mean).clamp_min(0.0);
    const double eps = bn->options.eps();
    const torch::Tensor old_mean = bn->running_mean.to(torch::kDouble), old_var = bn->running_var.to(torch::kDouble);
    const torch::Tensor weight = bn->weight.to(torch::kDouble), bias = bn->bias.to(torch::kDouble);
    const torch::Tensor old_inv_std = (old_var + eps).rsqrt();
    // Same eval function: (x - mean) / sqrt(var + eps) * w' + b' == (x - old_mean) * old_inv_std * w + b.
    bn->weight.copy_(weight * old_inv_std * (var + eps).sqrt());
    bn->bias.copy_(bias + (mean - old_mean) * old_inv_std * weight);
    bn->running_mean.copy_(mean);
    bn->running_var.copy_(var);
  }
  model.train(was_training);
  return static_cast<int64_t>(moments.size());
}

}  // namespace loupe::models
