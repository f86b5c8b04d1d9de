// The model card (JSON in metadata_props) and reading ONNX files back without ONNX Runtime.
#include "loupe/export/model_card.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include "loupe/error.h"
#include "weights_hash.h"

namespace loupe::exporter {

namespace {

using nlohmann::json;

[[noreturn]] void bad_card(const std::string& key, const std::string& message) {
  throw Error(ErrorCode::InvalidSpec, "model card: " + key + ": " + message);
}

const json& require(const json& j, const std::string& key) {
  if (!j.contains(key)) bad_card(key, "missing");
  return j.at(key);
}

std::string require_string(const json& j, const std::string& key) {
  const json& v = require(j, key);
  if (!v.is_string()) bad_card(key, "expected a string");
  return v.get<std::string>();
}

std::string optional_string(const json& j, const std::string& key) {
  if (!j.contains(key) || j.at(key).is_null()) return {};
  if (!j.at(key).is_string()) bad_card(key, "expected a string");
  return j.at(key).get<std::string>();
}

int require_positive_int(const json& j, const std::string& key, const std::string& name) {
  const json& v = require(j, key);
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 1000000) {
    bad_card(name, "expected a positive integer");
  }
  return v.get<int>();
}

}  // namespace

bool ModelCard::has_output(const std::string& output_name) const {
  return std::any_of(outputs.begin(), outputs.end(), [&](const CardOutput& o) { return o.name == output_name; });
}

json ModelCard::to_json() const {
  json outs = json::array();
  for (const auto& o : outputs) outs.push_back({{"name", o.name}, {"shape", o.shape}, {"description", o.description}});
  return {{"format", kModelCardFormat},
          {"format_version", kModelCardFormatVersion},
          {"name", name},
          {"version", version},
          {"description", description},
          {"created_utc", created_utc},
          {"architecture", architecture},
          {"model", model.to_json()},
          {"class_names", class_names},
          {"input",
           {{"name", "input"}, {"layout", "NCHW"}, {"dtype", "float32"}, {"batch", "dynamic"},
            {"channels", input_channels}, {"height", input_height}, {"width", input_width}}},
          {"preprocess", preprocess.to_json()},
          {"outputs", outs},
          {"training_data", training_data},
          {"test_metrics", test_metrics},
          {"weights_sha256", weights_sha256},
          {"weights_digest", "SHA-256 of the raw_data bytes of every graph initializer, concatenated in file order"},
          {"intended_use", intended_use},
          {"disclaimer", disclaimer},
          {"producer", {{"name", "loupe"}, {"version", producer_version}, {"opset", opset}}}};
}

ModelCard ModelCard::from_json(const json& j) {
  if (!j.is_object()) bad_card("(document)", "expected a JSON object");
  if (require_string(j, "format") != kModelCardFormat) bad_card("format", "expected '" + std::string(kModelCardFormat) + "'");
  const json& fv = require(j, "format_version");
  if (!fv.is_number_integer()) bad_card("format_version", "expected an integer");
  if (fv.get<int>() > kModelCardFormatVersion) {
    bad_card("format_version", std::to_string(fv.get<int>()) + " is newer than this Loupe reads (" +
                                   std::to_string(kModelCardFormatVersion) + "): update Loupe");
  }
  ModelCard card;
  card.name = optional_string(j, "name");
  card.version = optional_string(j, "version");
  card.description = optional_string(j, "description");
  card.created_utc = optional_string(j, "created_utc");
  card.architecture = require_string(j, "architecture");
  try {
    card.model = models::ModelConfig::from_json(require(j, "model"));
  } catch (const Error& e) {
    bad_card("model", e.what());
  }
  const json& names = require(j, "class_names");
  if (!names.is_array() || names.empty()) bad_card("class_names", "expected a non-empty array of strings");
  for (const auto& n : names) {
    if (!n.is_string()) bad_card("class_names", "expected a non-empty array of strings");
    card.class_names.push_back(n.get<std::string>());
  }
  const json& input = require(j, "input");
  if (!input.is_object()) bad_card("input", "expected an object");
  card.input_channels = require_positive_int(input, "channels", "input.channels");
  card.input_height = require_positive_int(input, "height", "input.height");
  card.input_width = require_positive_int(input, "width", "input.width");
  try {
    card.preprocess = PreprocessSpec::from_json(require(j, "preprocess"));
  } catch (const Error& e) {
    bad_card("preprocess", e.what());
  }
  const json& outs = require(j, "outputs");
  if (!outs.is_array() || outs.empty()) bad_card("outputs", "expected a non-empty array");
  for (const auto& o : outs) {
    if (!o.is_object()) bad_card("outputs", "expected objects with a name");
    CardOutput out;
    out.name = require_string(o, "name");
    out.shape = o.value("shape", json::array());
    out.description = optional_string(o, "description");
    card.outputs.push_back(out);
  }
  if (!card.has_output("logits")) bad_card("outputs", "no 'logits' output listed");
  card.training_data = j.value("training_data", json());
  card.test_metrics = j.value("test_metrics", json());
  card.weights_sha256 = optional_string(j, "weights_sha256");
  card.intended_use = optional_string(j, "intended_use");
  card.disclaimer = optional_string(j, "disclaimer");
  if (j.contains("producer") && j.at("producer").is_object()) {
    card.producer_version = optional_string(j.at("producer"), "version");
    card.opset = j.at("producer").value("opset", 0);
  }

  // Consistency between the entries a consumer combines.
  if (card.architecture != card.model.architecture) {
    bad_card("architecture", "'" + card.architecture + "' differs from model.architecture '" + card.model.architecture + "'");
  }
  if (static_cast<int>(card.class_names.size()) != card.model.num_classes) {
    bad_card("class_names", std::to_string(card.class_names.size()) + " names but model.num_classes is " +
                                std::to_string(card.model.num_classes));
  }
  if (card.preprocess.channels() != card.input_channels) {
    bad_card("preprocess.color", std::string("'") + to_string(card.preprocess.color) + "' gives " +
                                     std::to_string(card.preprocess.channels()) + " channels but input.channels is " +
                                     std::to_string(card.input_channels));
  }
  if (card.preprocess.width != card.input_width || card.preprocess.height != card.input_height) {
    bad_card("preprocess", "size " + std::to_string(card.preprocess.width) + "x" + std::to_string(card.preprocess.height) +
                               " differs from the input size " + std::to_string(card.input_width) + "x" +
                               std::to_string(card.input_height));
  }
  return card;
}

// [SECTION] Reading ONNX files

namespace {

std::string element_type_name(int32_t type) {
  switch (type) {
    case onnx::TensorProto::FLOAT: return "float32";
    case onnx::TensorProto::FLOAT16: return "float16";
    case onnx::TensorProto::DOUBLE: return "float64";
    case onnx::TensorProto::INT64: return "int64";
    case onnx::TensorProto::INT32: return "int32";
    case onnx::TensorProto::UINT8: return "uint8";
    case onnx::TensorProto::INT8: return "int8";
    case onnx::TensorProto::BOOL: return "bool";
    default: return "type " + std::to_string(type);
  }
}

TensorInfo tensor_info(const onnx::ValueInfoProto& v) {
  TensorInfo info;
  info.name = v.name();
  if (v.type().has_tensor_type()) {
    info.element_type = element_type_name(v.type().tensor_type().elem_type());
    for (const auto& d : v.type().tensor_type().shape().dim()) {
      if (d.has_dim_value()) info.dims.push_back(std::to_string(d.dim_value()));
      else info.dims.push_back(d.dim_param().empty() ? "?" : d.dim_param());
    }
  }
  return info;
}

std::string first_bytes_hex(const std::string& bytes) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < std::min<size_t>(bytes.size(), 4); ++i) {
    std::snprintf(buf, sizeof buf, "%s%02X", i ? " " : "", static_cast<unsigned char>(bytes[i]));
    out += buf;
  }
  return out;
}

}  // namespace

OnnxFileInfo read_onnx_bytes(const std::string& bytes, const std::string& what, const ReadOptions& options) {
  if (bytes.empty()) throw Error(ErrorCode::EmptyInput, what + ": empty file (0 bytes); expected an ONNX model");
  // Every ONNX writer puts ModelProto's first field, ir_version (field 1, varint: tag byte 0x08), first.
  if (static_cast<unsigned char>(bytes[0]) != 0x08) {
    throw Error(ErrorCode::UnknownFormat, what + ": not an ONNX model (it starts with bytes " + first_bytes_hex(bytes) +
                                              "; an ONNX file starts with 08, its ir_version field)");
  }
  onnx::ModelProto proto;
  if (!proto.ParseFromString(bytes)) {
    throw Error(ErrorCode::InvalidArgument,
                what + ": truncated or corrupt ONNX file (" + std::to_string(bytes.size()) +
                    " bytes do not parse as an ONNX ModelProto); export the model again");
  }
  if (proto.ir_version() <= 0 || !proto.has_graph()) {
    throw Error(ErrorCode::UnknownFormat, what + ": not an ONNX model (no ir_version or no graph)");
  }
  if (proto.opset_import_size() == 0 || proto.graph().output_size() == 0) {
    throw Error(ErrorCode::InvalidArgument, what + ": truncated or incomplete ONNX file (no opset_import or no outputs)");
  }
  OnnxFileInfo info;
  info.file_bytes = static_cast<int64_t>(bytes.size());
  info.ir_version = proto.ir_version();
  for (const auto& o : proto.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") info.opset = o.version();
  }
  info.producer = proto.producer_name() + (proto.producer_version().empty() ? "" : " " + proto.producer_version());
  for (const auto& in : proto.graph().input()) info.inputs.push_back(tensor_info(in));
  for (const auto& out : proto.graph().output()) info.outputs.push_back(tensor_info(out));
  for (const auto& init : proto.graph().initializer()) {
    int64_t n = 1;
    for (int64_t d : init.dims()) n *= d;
    info.parameters += n;
  }

  const std::string* card_text = nullptr;
  for (const auto& entry : proto.metadata_props()) {
    if (entry.key() == kModelCardKey) card_text = &entry.value();
  }
  if (card_text == nullptr) {
    throw Error(ErrorCode::InvalidSpec, what + ": no Loupe model card (metadata_props has no '" +
                                            std::string(kModelCardKey) +
                                            "'): export the model with `loupe export` (or the file was cut short)");
  }
  json card_json;
  try {
    card_json = json::parse(*card_text);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": the model card is not valid JSON: " + e.what());
  }
  try {
    info.card = ModelCard::from_json(card_json);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": " + e.what());
  }

  // The card must describe this graph.
  const auto logits = std::find_if(info.outputs.begin(), info.outputs.end(), [](const TensorInfo& t) { return t.name == "logits"; });
  if (logits == info.outputs.end()) throw Error(ErrorCode::InvalidSpec, what + ": the graph has no 'logits' output");
  if (logits->dims.size() != 2 || logits->dims[1] != std::to_string(info.card.class_names.size())) {
    std::string shape;
    for (const auto& d : logits->dims) shape += (shape.empty() ? "" : ", ") + d;
    throw Error(ErrorCode::InvalidSpec, what + ": the model card lists " + std::to_string(info.card.class_names.size()) +
                                            " classes but the 'logits' output has shape [" + shape + "]");
  }
  for (const auto& o : info.card.outputs) {
    if (std::none_of(info.outputs.begin(), info.outputs.end(), [&](const TensorInfo& t) { return t.name == o.name; })) {
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
  if (options.verify_weights && !info.card.weights_sha256.empty()) {
    const std::string actual = weights_sha256(proto);
    if (actual != info.card.weights_sha256) {
      throw Error(ErrorCode::InvalidSpec, what + ": the weights do not match the model card's SHA-256 (" +
                                              info.card.weights_sha256.substr(0, 12) + "... vs " + actual.substr(0, 12) +
                                              "...): the file was modified or damaged");
    }
    info.weights_verified = true;
  }
  return info;
}

OnnxFileInfo read_onnx_file(const std::string& path, const ReadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::Io, path + ": cannot open");
  std::string bytes;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error(ErrorCode::Io, path + ": cannot read (not a regular file?)");
  bytes.resize(static_cast<size_t>(size));
  in.seekg(0, std::ios::beg);
  if (size > 0 && !in.read(bytes.data(), size)) throw Error(ErrorCode::Io, path + ": read failed");
  return read_onnx_bytes(bytes, path, options);
}

ModelCard read_model_card(const std::string& path, const ReadOptions& options) {
  return read_onnx_file(path, options).card;
}

std::string describe(const OnnxFileInfo& info) {
  const ModelCard& c = info.card;
  std::ostringstream out;
  out << c.name << " (version " << c.version << "): " << c.architecture << ", created " << c.created_utc << "\n";
  if (!c.description.empty()) out << "  " << c.description << "\n";
  out << "classes (" << c.class_names.size() << "):";
  for (const auto& n : c.class_names) out << " " << n;
  out << "\ninput: " << c.input_channels << "x" << c.input_height << "x" << c.input_width
      << " (NCHW float32, dynamic batch)\npreprocess: " << c.preprocess.to_json().dump() << "\n";
  const auto dims = [](const TensorInfo& t) {
    std::string s;
    for (const auto& d : t.dims) s += (s.empty() ? "" : ", ") + d;
    return "[" + s + "]";
  };
  out << "graph: " << info.producer << ", IR " << info.ir_version << ", opset " << info.opset << ", "
      << info.parameters << " parameters, " << info.file_bytes << " bytes\n";
  for (const auto& t : info.inputs) out << "  input  " << t.name << " " << t.element_type << " " << dims(t) << "\n";
  for (const auto& t : info.outputs) out << "  output " << t.name << " " << t.element_type << " " << dims(t) << "\n";
  if (c.training_data.is_object()) {
    out << "training data: " << c.training_data.value("folder", std::string("?"));
    if (c.training_data.contains("class_counts")) out << ", class counts " << c.training_data["class_counts"].dump();
    if (c.training_data.contains("split") && c.training_data["split"].contains("seed")) {
      out << ", split seed " << c.training_data["split"]["seed"].dump();
    }
    out << "\n";
  }
  if (c.test_metrics.is_object()) {
    out << "test metrics: accuracy " << c.test_metrics.value("accuracy", 0.0);
    if (c.test_metrics.contains("balanced_accuracy")) {
      out << ", balanced accuracy " << c.test_metrics["balanced_accuracy"].dump();
    }
    out << "\n";
    if (c.test_metrics.contains("classes")) {
      for (const auto& k : c.test_metrics["classes"]) {
        char line[256];
        std::snprintf(line, sizeof line, "  %-20s precision %.4f  recall %.4f  f1 %.4f  support %s\n",
                      k.value("name", std::string("?")).c_str(), k.value("precision", 0.0), k.value("recall", 0.0),
                      k.value("f1", 0.0), k.value("support", json()).dump().c_str());
        out << line;
      }
    }
  } else {
    out << "test metrics: none\n";
  }
  out << "weights sha256: " << c.weights_sha256 << (info.weights_verified ? " (verified)" : "") << "\n";
  out << "intended use: " << c.intended_use << "\n" << c.disclaimer << "\n";
  return out.str();
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

}  // namespace loupe::exporter
