// The model card and the ONNX reader of the shared core: small ONNX models encoded by hand (the
// protobuf wire format, below) so that the suite needs no libprotobuf and runs as wasm too; the
// card's JSON contract; every error class, truncation at every byte and random damage.
#include <dirent.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <cstring>
#include <random>

#include "loupe/image.h"
#include "loupe/model_card.h"
#include "loupe/onnx_model.h"

using namespace loupe;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

// [SECTION] A protobuf writer: just enough wire format to build ONNX models by hand

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

struct Message {
  std::string bytes;

  Message& varint(uint32_t field, uint64_t v) {
    put_varint(bytes, uint64_t{field} << 3 | 0);
    put_varint(bytes, v);
    return *this;
  }
  Message& string(uint32_t field, const std::string& s) {
    put_varint(bytes, uint64_t{field} << 3 | 2);
    put_varint(bytes, s.size());
    bytes += s;
    return *this;
  }
  Message& message(uint32_t field, const Message& m) { return string(field, m.bytes); }
  Message& fixed32(uint32_t field, uint32_t v) {
    put_varint(bytes, uint64_t{field} << 3 | 5);
    bytes.append(reinterpret_cast<const char*>(&v), 4);
    return *this;
  }
  Message& fixed64(uint32_t field, uint64_t v) {
    put_varint(bytes, uint64_t{field} << 3 | 1);
    bytes.append(reinterpret_cast<const char*>(&v), 8);
    return *this;
  }
  Message& group(uint32_t field, const Message& inside) {
    put_varint(bytes, uint64_t{field} << 3 | 3);
    bytes += inside.bytes;
    put_varint(bytes, uint64_t{field} << 3 | 4);
    return *this;
  }
};

// ONNX's field numbers (onnx.proto). Dims: a number, or a symbolic name.
constexpr int32_t kFloat = 1, kInt64 = 7;

Message value_info(const std::string& name, int32_t elem_type, const std::vector<std::string>& dims) {
  Message shape;
  for (const auto& d : dims) {
    Message dim;
    if (!d.empty() && (std::isdigit(static_cast<unsigned char>(d[0])) != 0)) dim.varint(1, std::stoull(d));
    else dim.string(2, d);
    shape.message(1, dim);
  }
  Message tensor;
  tensor.varint(1, static_cast<uint64_t>(elem_type)).message(2, shape);
  Message type;
  type.message(1, tensor).string(6, "a denotation the reader skips");
  Message v;
  v.string(1, name).message(2, type).string(3, "doc");
  return v;
}

Message initializer(const std::string& name, const std::vector<int64_t>& dims, const std::string& raw, bool packed = false) {
  Message t;
  if (packed) {
    std::string p;
    for (int64_t d : dims) put_varint(p, static_cast<uint64_t>(d));
    t.string(1, p);
  } else {
    for (int64_t d : dims) t.varint(1, static_cast<uint64_t>(d));
  }
  t.varint(2, static_cast<uint64_t>(kFloat)).string(8, name).string(9, raw);
  return t;
}

std::string raw_floats(size_t n, float start) {
  std::string out(n * sizeof(float), '\0');
  for (size_t i = 0; i < n; ++i) {
    const float v = start + static_cast<float>(i) * 0.25f;
    std::memcpy(&out[i * sizeof(float)], &v, sizeof v);
  }
  return out;
}

// A card as `loupe export` writes it for a 3-class gray 32x32 simple_cnn.
ModelCard make_card() {
  ModelCard card;
  card.name = "shapes";
  card.version = "2";
  card.description = "three shapes, for the test";
  card.created_utc = "2025-05-20T14:03:07Z";
  card.architecture = "simple_cnn";
  card.model = {{"architecture", "simple_cnn"}, {"num_classes", 3}, {"in_channels", 1}, {"input_size", 32},
                {"conv_channels", {4, 8}}, {"hidden_units", 8}, {"dropout", 0.5}, {"pooling", "flatten"}};
  card.class_names = {"disc", "square", "stripes"};
  card.input_channels = 1;
  card.input_height = card.input_width = 32;
  card.preprocess = PreprocessSpec::unit_scale(32, ColorMode::Gray);
  card.outputs = {{"logits", {"batch", 3}, "class scores before softmax, in class_names order"},
                  {"probabilities", {"batch", 3}, "softmax of the logits over the classes"}};
  card.training_data = {{"folder", "data/shapes"}, {"class_counts", {10, 10, 10}}, {"split", {{"seed", 11}}}};
  card.test_metrics = {{"accuracy", 0.75},
                       {"balanced_accuracy", 0.7},
                       {"classes", {{{"name", "disc"}, {"precision", 1.0}, {"recall", 0.5}, {"f1", 0.6667}, {"support", 2}}}}};
  card.weights_sha256 = std::string(64, 'a');
  card.producer_version = "0.1.0";
  card.opset = 13;
  return card;
}

// The quantization record `loupe quantize` writes into an int8 model's card (quantize.h).
json quantization_record() {
  return {{"method", "static_qdq"},
          {"weights", {{"type", "int8"}, {"bits", 8}, {"granularity", "per output channel"}}},
          {"activations", {{"type", "uint8"}, {"granularity", "per tensor"}}},
          {"calibration", {{"method", "percentile"}, {"percentile", 99.999}, {"images", 759}, {"split", "train"}}},
          {"gate", {{"max_accuracy_drop", 0.01}, {"min_agreement", 0.98}, {"passed", true}}},
          {"test", {{"images", 97}, {"float_accuracy", 0.8144}, {"int8_accuracy", 0.8144}, {"agreement", 0.9897},
                    {"float_accuracy_interval", {0.726, 0.879}}}}};
}

ModelCard make_int8_card() {
  ModelCard card = make_card();
  card.precision = kPrecisionInt8;
  card.quantization = Quantization::from_json(quantization_record());
  return card;
}

struct ModelParts {
  std::string card_text = make_card().to_json().dump();
  bool with_card = true;
  int64_t logits_width = 3;
  std::vector<std::string> input_dims{"batch", "1", "32", "32"};
  std::vector<std::string> raw{raw_floats(6, 1.0f), raw_floats(3, -2.0f)};
  std::string graph_extra;  // more GraphProto fields, e.g. a node to damage
};

// The bytes of an ONNX model in the field order libprotobuf writes (field number order), with
// some fields the reader must skip: nodes, doc strings, fixed32/fixed64 and group fields.
std::string onnx_bytes(const ModelParts& parts = {}) {
  Message graph;
  Message node;
  node.string(1, "input").string(1, "w0").string(2, "logits").string(3, "node0").string(4, "Conv");
  graph.message(1, node).string(2, "simple_cnn");
  graph.message(5, initializer("w0", {2, 3}, parts.raw[0]));
  graph.message(5, initializer("b0", {3}, parts.raw[1], /*packed=*/true));
  graph.string(10, "graph doc");
  graph.bytes += parts.graph_extra;
  graph.message(11, value_info("input", kFloat, parts.input_dims));
  const std::string k = std::to_string(parts.logits_width);
  graph.message(12, value_info("logits", kFloat, {"batch", k}));
  graph.message(12, value_info("probabilities", kFloat, {"batch", k}));
  Message opset;
  opset.string(1, "").varint(2, 13);
  Message ml_opset;
  ml_opset.string(1, "ai.onnx.ml").varint(2, 3);
  Message model;
  model.varint(1, 8).string(2, "loupe").string(3, "0.1.0").string(4, "org.loupe").varint(5, 2).string(6, "doc");
  model.fixed32(99, 7).fixed64(98, 9);
  Message group_inside;
  group_inside.varint(1, 5).string(2, "in a group");
  model.group(97, group_inside);
  model.message(7, graph).message(8, opset).message(8, ml_opset);
  Message other;
  other.string(1, "other.key").string(2, "other value");
  model.message(14, other);
  if (parts.with_card) {
    Message entry;
    entry.string(1, kModelCardKey).string(2, parts.card_text);
    model.message(14, entry);
  }
  return model.bytes;
}

OnnxModelInfo read(const std::string& bytes, const std::string& what = "model.onnx") {
  return read_onnx_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), what);
}

std::string read_error(const std::string& bytes, ErrorCode* code = nullptr) {
  try {
    read(bytes);
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "no error";
}

std::string with_card(json card) {
  ModelParts parts;
  parts.card_text = card.dump();
  return onnx_bytes(parts);
}

}  // namespace

TEST_CASE("a hand-encoded ONNX model reads back with its card", "[model_card][onnx]") {
  const ModelParts parts;
  const std::string bytes = onnx_bytes(parts);
  const OnnxModelInfo info = read(bytes);
  CHECK(info.card.to_json() == make_card().to_json());
  CHECK(info.ir_version == 8);
  CHECK(info.opset == 13);  // the default domain's, not ai.onnx.ml's
  CHECK(info.producer == "loupe 0.1.0");
  CHECK(info.file_bytes == static_cast<int64_t>(bytes.size()));
  CHECK(info.parameters == 9);
  CHECK_FALSE(info.weights_verified);
  REQUIRE(info.inputs.size() == 1);
  CHECK(info.inputs[0].name == "input");
  CHECK(info.inputs[0].element_type == "float32");
  CHECK(info.inputs[0].dims == std::vector<std::string>{"batch", "1", "32", "32"});
  REQUIRE(info.outputs.size() == 2);
  CHECK(info.outputs[1].name == "probabilities");
  CHECK(info.outputs[1].dims == std::vector<std::string>{"batch", "3"});
  // The weight ranges are the raw_data bytes, in file order (what weights_sha256 hashes).
  REQUIRE(info.weight_ranges.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(bytes.substr(info.weight_ranges[i].offset, info.weight_ranges[i].size) == parts.raw[i]);
  }
  CHECK(info.weight_ranges[0].offset < info.weight_ranges[1].offset);

  const std::string text = describe(info);
  CHECK_THAT(text, Contains("shapes (version 2): simple_cnn, created 2025-05-20T14:03:07Z"));
  CHECK_THAT(text, Contains("classes (3): disc square stripes"));
  CHECK_THAT(text, Contains("input: 1x32x32"));
  CHECK_THAT(text, Contains("graph: loupe 0.1.0, IR 8, opset 13, 9 parameters"));
  CHECK_THAT(text, Contains("  output logits float32 [batch, 3]"));
  CHECK_THAT(text, Contains("training data: data/shapes, class counts [10,10,10], split seed 11"));
  CHECK_THAT(text, Contains("test metrics: accuracy 0.75, balanced accuracy 0.7"));
  CHECK_THAT(text, Contains("  disc                 precision 1.0000  recall 0.5000  f1 0.6667  support 2"));
  CHECK_THAT(text, Contains("not a diagnostic device"));
}

TEST_CASE("the card's JSON round-trips and keeps its format", "[model_card][json]") {
  const ModelCard card = make_card();
  const json j = card.to_json();
  const ModelCard back = ModelCard::from_json(j);
  CHECK(back.to_json() == j);
  CHECK(back.to_json().dump() == j.dump());
  CHECK(back.model == card.model);  // kept verbatim, keys the shared core does not know included
  CHECK(back.class_names == card.class_names);
  CHECK(back.preprocess == card.preprocess);
  CHECK(back.has_output("probabilities"));
  CHECK_FALSE(back.has_output("cam"));
  CHECK(back.opset == 13);

  // The format, key by key (what `loupe export` has always written; existing files must read).
  CHECK(j["format"] == kModelCardFormat);
  CHECK(j["format_version"] == 1);
  CHECK(j["input"] == json({{"name", "input"}, {"layout", "NCHW"}, {"dtype", "float32"}, {"batch", "dynamic"},
                            {"channels", 1}, {"height", 32}, {"width", 32}}));
  CHECK(j["producer"] == json({{"name", "loupe"}, {"version", "0.1.0"}, {"opset", 13}}));
  CHECK(j["weights_digest"] == "SHA-256 of the raw_data bytes of every graph initializer, concatenated in file order");
  CHECK(j["outputs"][0] == json({{"name", "logits"}, {"shape", {"batch", 3}},
                                 {"description", "class scores before softmax, in class_names order"}}));
  std::vector<std::string> keys;
  for (const auto& item : j.items()) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{"architecture", "class_names", "created_utc", "description", "disclaimer",
                                         "format", "format_version", "input", "intended_use", "model", "name",
                                         "outputs", "preprocess", "producer", "test_metrics", "training_data",
                                         "version", "weights_digest", "weights_sha256"});

  // Optional entries may be missing or null; unknown keys are ignored.
  json minimal = j;
  for (const char* key : {"name", "version", "description", "created_utc", "training_data", "test_metrics",
                          "weights_sha256", "intended_use", "disclaimer", "producer"}) {
    minimal.erase(key);
  }
  minimal["from_a_newer_writer"] = 1;
  const ModelCard m = ModelCard::from_json(minimal);
  CHECK(m.name.empty());
  CHECK(m.training_data.is_null());
  CHECK(m.weights_sha256.empty());
}

TEST_CASE("precision and the int8 record: round trip, note, older cards", "[model_card][json][int8]") {
  // An int8 card keeps its record whole and its figures typed.
  const json j = make_int8_card().to_json();
  CHECK(j["precision"] == "int8");
  CHECK(j["quantization"] == quantization_record());
  const ModelCard back = ModelCard::from_json(j);
  CHECK(back.to_json() == j);
  CHECK(back.is_int8());
  REQUIRE(back.quantization);
  CHECK(back.quantization->method == "static_qdq");
  CHECK(back.quantization->calibration_method == "percentile");
  CHECK(back.quantization->calibration_images == 759);
  CHECK(back.quantization->test_images == 97);
  CHECK(back.quantization->float_accuracy == 0.8144);
  CHECK(back.quantization->int8_accuracy == 0.8144);
  CHECK(back.quantization->agreement == 0.9897);
  CHECK(back.precision_note() ==
        "int8 (static QDQ, percentile ranges on 759 training images): test accuracy 0.814 vs fp32 0.814, same top "
        "class on 99.0% of 97 test images");
  // Cards written before precision existed are fp32 and round-trip without the key; new float
  // exports say "fp32".
  const ModelCard old = ModelCard::from_json(make_card().to_json());
  CHECK(old.precision.empty());
  CHECK_FALSE(old.is_int8());
  CHECK(old.precision_note() == "fp32");
  CHECK_FALSE(old.to_json().contains("precision"));
  ModelCard fp32 = make_card();
  fp32.precision = kPrecisionFp32;
  CHECK(ModelCard::from_json(fp32.to_json()).to_json()["precision"] == "fp32");
  CHECK(ModelCard::from_json(fp32.to_json()).precision_note() == "fp32");
  // The reader of the browser and `loupe inspect` reads it out of the file and says it.
  ModelParts parts;
  parts.card_text = j.dump();
  const OnnxModelInfo info = read(onnx_bytes(parts));
  CHECK(info.card.is_int8());
  CHECK_THAT(describe(info), Contains("precision: int8 (static QDQ, percentile ranges on 759 training images)"));
  CHECK_THAT(describe(read(onnx_bytes())), Contains("precision: fp32"));
}

TEST_CASE("an int8 card without its calibration record, or with a broken one, is refused", "[model_card][int8][bad-input]") {
  const json good = make_int8_card().to_json();
  const auto error = [](const json& j) {
    try {
      ModelCard::from_json(j);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::InvalidSpec);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto with = [&](const json::json_pointer& key, const json& value) {
    json j = good;
    j[key] = value;
    return j;
  };
  const auto without = [&](const json::json_pointer& key) {
    json j = good;
    j[key.parent_pointer()].erase(key.back());
    return j;
  };
  CHECK(error(good) == "no error");
  CHECK_THAT(error(without(json::json_pointer("/quantization"))),
             Contains("model card: quantization: missing: an int8 model's card must carry its calibration record"));
  CHECK_THAT(error(with(json::json_pointer("/quantization"), nullptr)), Contains("model card: quantization: missing"));
  CHECK_THAT(error(with(json::json_pointer("/precision"), "fp32")),
             Contains("model card: quantization: present, but the card's precision is 'fp32', not int8"));
  CHECK_THAT(error(without(json::json_pointer("/precision"))),
             Contains("model card: quantization: present, but the card's precision is 'fp32'"));
  CHECK_THAT(error(with(json::json_pointer("/precision"), "int4")),
             Contains("model card: precision: 'int4' is not one this Loupe runs (fp32, int8)"));
  CHECK_THAT(error(with(json::json_pointer("/precision"), 8)), Contains("model card: precision: expected a string"));
  CHECK_THAT(error(with(json::json_pointer("/quantization"), "yes")), Contains("model card: quantization: expected an object"));
  CHECK_THAT(error(without(json::json_pointer("/quantization/method"))), Contains("model card: quantization.method: expected a string"));
  CHECK_THAT(error(without(json::json_pointer("/quantization/calibration"))),
             Contains("model card: quantization.calibration: expected an object"));
  CHECK_THAT(error(without(json::json_pointer("/quantization/calibration/method"))),
             Contains("model card: quantization.calibration.method: expected a string"));
  CHECK_THAT(error(with(json::json_pointer("/quantization/calibration/images"), 0)),
             Contains("model card: quantization.calibration.images: expected a positive integer"));
  CHECK_THAT(error(without(json::json_pointer("/quantization/test"))), Contains("model card: quantization.test: expected an object"));
  CHECK_THAT(error(with(json::json_pointer("/quantization/test/images"), 9.5)),
             Contains("model card: quantization.test.images: expected a positive integer"));
  CHECK_THAT(error(with(json::json_pointer("/quantization/test/agreement"), 1.5)),
             Contains("model card: quantization.test.agreement: expected a number in [0, 1]"));
  CHECK_THAT(error(without(json::json_pointer("/quantization/test/int8_accuracy"))),
             Contains("model card: quantization.test.int8_accuracy: expected a number in [0, 1]"));
  CHECK_THAT(error(with(json::json_pointer("/quantization/test/float_accuracy"), "0.8")),
             Contains("model card: quantization.test.float_accuracy: expected a number in [0, 1]"));

  // In a file: the message the page and `loupe inspect` give, naming the file.
  ModelParts parts;
  parts.card_text = without(json::json_pointer("/quantization")).dump();
  ErrorCode code{};
  CHECK_THAT(read_error(onnx_bytes(parts), &code),
             Contains("model.onnx: model card: quantization: missing: an int8 model's card must carry its calibration record"));
  CHECK(code == ErrorCode::InvalidSpec);
}

TEST_CASE("card JSON errors name the key", "[model_card][json][bad-input]") {
  const json good = make_card().to_json();
  const auto error = [](const json& j) {
    try {
      ModelCard::from_json(j);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::InvalidSpec);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto without = [&](const char* key) {
    json j = good;
    j.erase(key);
    return j;
  };
  const auto with = [&](const json::json_pointer& key, const json& value) {
    json j = good;
    j[key] = value;
    return j;
  };
  CHECK_THAT(error(json::array()), Contains("model card: (document): expected a JSON object"));
  CHECK_THAT(error(with(json::json_pointer("/format"), "other")), Contains("model card: format: expected 'loupe.model_card'"));
  CHECK_THAT(error(with(json::json_pointer("/format_version"), 2)), Contains("newer than this Loupe reads"));
  CHECK_THAT(error(without("class_names")), Contains("model card: class_names: missing"));
  CHECK_THAT(error(with(json::json_pointer("/class_names"), json::array())), Contains("model card: class_names: expected a non-empty"));
  CHECK_THAT(error(with(json::json_pointer("/class_names"), {"a", 2, "c"})), Contains("model card: class_names"));
  CHECK_THAT(error(without("architecture")), Contains("model card: architecture: missing"));
  CHECK_THAT(error(without("model")), Contains("model card: model: missing"));
  CHECK_THAT(error(with(json::json_pointer("/model"), "simple_cnn")), Contains("model card: model: expected a JSON object"));
  CHECK_THAT(error(without("input")), Contains("model card: input: missing"));
  CHECK_THAT(error(with(json::json_pointer("/input/height"), 0)), Contains("model card: input.height: expected a positive integer"));
  CHECK_THAT(error(without("preprocess")), Contains("model card: preprocess: missing"));
  CHECK_THAT(error(with(json::json_pointer("/preprocess/resize"), "crop")), Contains("model card: preprocess: ") && Contains("crop"));
  CHECK_THAT(error(without("outputs")), Contains("model card: outputs: missing"));
  CHECK_THAT(error(with(json::json_pointer("/outputs"), {{{"name", "probabilities"}}})), Contains("no 'logits' output listed"));
  CHECK_THAT(error(with(json::json_pointer("/name"), 5)), Contains("model card: name: expected a string"));
  CHECK_THAT(error(with(json::json_pointer("/producer/opset"), "13")), Contains("model card: producer.opset"));
  // The consistency checks.
  CHECK_THAT(error(with(json::json_pointer("/model/architecture"), "resnet18")),
             Contains("model card: architecture: 'simple_cnn' differs from model.architecture 'resnet18'"));
  CHECK_THAT(error(with(json::json_pointer("/model/num_classes"), 2)),
             Contains("model card: class_names: 3 names but model.num_classes is 2"));
  CHECK_THAT(error(with(json::json_pointer("/input/channels"), 3)),
             Contains("model card: preprocess.color: 'gray' gives 1 channels but input.channels is 3"));
  CHECK_THAT(error(with(json::json_pointer("/input/width"), 48)),
             Contains("model card: preprocess: size 32x32 differs from the input size 48x32"));
  // The shared core does not judge the rest of "model" (the native ModelConfig does).
  CHECK(error(with(json::json_pointer("/model/pooling"), "something new")) == "no error");
}

TEST_CASE("ONNX reader errors say which kind of problem", "[model_card][onnx][bad-input]") {
  ErrorCode code{};
  SECTION("empty, a text file, an image") {
    CHECK_THAT(read_error("", &code), Contains("model.onnx: empty file (0 bytes)"));
    CHECK(code == ErrorCode::EmptyInput);
    CHECK_THROWS_AS(read_onnx_model(nullptr, 0, "x"), Error);
    CHECK_THAT(read_error("{\"hello\": 1}", &code), Contains("not an ONNX model") && Contains("7B 22 68 65"));
    CHECK(code == ErrorCode::UnknownFormat);
    const std::string png("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    CHECK_THAT(read_error(png, &code), Contains("not an ONNX model") && Contains("89 50 4E 47"));
    CHECK(code == ErrorCode::UnknownFormat);
    CHECK_THAT(read_error(std::string("\x08\x08", 2), &code), Contains("model.onnx: not an ONNX model (no ir_version or no graph)"));
    CHECK(code == ErrorCode::UnknownFormat);
  }
  SECTION("truncated at every byte") {
    const std::string bytes = onnx_bytes();
    REQUIRE_NOTHROW(read(bytes));
    int corrupt = 0, incomplete = 0, no_card = 0;
    for (size_t cut = 1; cut < bytes.size(); ++cut) {
      CAPTURE(cut);
      const std::string message = read_error(bytes.substr(0, cut), &code);
      REQUIRE(message != "no error");
      if (message.find("truncated or corrupt ONNX file (" + std::to_string(cut) + " bytes do not parse") != std::string::npos) {
        CHECK(code == ErrorCode::InvalidArgument);
        ++corrupt;
      } else if (message.find("truncated or incomplete ONNX file (no opset_import or no outputs)") != std::string::npos) {
        CHECK(code == ErrorCode::InvalidArgument);
        ++incomplete;
      } else if (message.find("no Loupe model card") != std::string::npos) {
        CHECK(code == ErrorCode::InvalidSpec);
        ++no_card;
      } else {
        CHECK_THAT(message, Contains("not an ONNX model (no ir_version or no graph)"));
        CHECK(code == ErrorCode::UnknownFormat);
      }
    }
    CHECK(corrupt > incomplete);
    CHECK(incomplete > 0);
    CHECK(no_card > 0);
  }
  SECTION("no card, a card that is not JSON, a card that misses a key") {
    ModelParts parts;
    parts.with_card = false;
    CHECK_THAT(read_error(onnx_bytes(parts), &code), Contains("model.onnx: no Loupe model card (metadata_props has no 'loupe.model_card')"));
    CHECK(code == ErrorCode::InvalidSpec);
    parts = {};
    parts.card_text = "{not json";
    CHECK_THAT(read_error(onnx_bytes(parts), &code), Contains("model.onnx: the model card is not valid JSON"));
    CHECK(code == ErrorCode::InvalidSpec);
    parts.card_text = std::string(200000, '[') + std::string(200000, ']');  // must not exhaust the stack
    CHECK_THAT(read_error(onnx_bytes(parts), &code), Contains("not valid JSON") && Contains("nested deeper"));
    json card = make_card().to_json();
    card.erase("class_names");
    CHECK_THAT(read_error(with_card(card), &code), Contains("model.onnx: model card: class_names: missing"));
    CHECK(code == ErrorCode::InvalidSpec);
    card = make_card().to_json();
    card["test_metrics"] = {{"accuracy", "high"}, {"classes", {1, "x", {{"name", 3}}}}};
    card["training_data"] = {{"folder", 7}, {"split", "none"}};
    const OnnxModelInfo odd = read(with_card(card));  // free-form entries: describe copes
    CHECK_THAT(describe(odd), Contains("test metrics: accuracy 0") && Contains("training data: 7"));
  }
  SECTION("a card that disagrees with the graph") {
    ModelParts parts;
    parts.logits_width = 2;
    CHECK_THAT(read_error(onnx_bytes(parts), &code),
               Contains("the model card lists 3 classes but the 'logits' output has shape [batch, 2]"));
    CHECK(code == ErrorCode::InvalidSpec);
    parts = {};
    parts.input_dims = {"batch", "3", "32", "32"};
    CHECK_THAT(read_error(onnx_bytes(parts), &code), Contains("the graph's input does not match the card's input 1x32x32"));
    CHECK(code == ErrorCode::InvalidSpec);
    parts.input_dims = {"batch", "1", "32"};
    CHECK_THAT(read_error(onnx_bytes(parts)), Contains("the graph's input does not match"));
    json card = make_card().to_json();
    card["outputs"].push_back({{"name", "cam"}, {"shape", {"batch", 3, 1, 1}}});
    CHECK_THAT(read_error(with_card(card), &code), Contains("the model card lists an output 'cam' the graph does not have"));
    card = make_card().to_json();
    card["model"]["num_classes"] = 4;
    CHECK_THAT(read_error(with_card(card), &code), Contains("model card: class_names: 3 names but model.num_classes is 4"));
    CHECK(code == ErrorCode::InvalidSpec);
  }
}

TEST_CASE("damage anywhere in the file's structure is refused, as libprotobuf refuses it", "[model_card][onnx][bad-input]") {
  const auto with_graph_field = [](const Message& extra) {
    ModelParts parts;
    parts.graph_extra = extra.bytes;
    return onnx_bytes(parts);
  };
  const auto node_with_attribute = [](const Message& attribute) {
    Message node;
    node.string(1, "logits").string(2, "scaled").string(4, "Mul").message(5, attribute);
    return Message().message(1, node);
  };
  const auto corrupt = [](const std::string& bytes) {
    ErrorCode code{};
    const std::string message = read_error(bytes, &code);
    return code == ErrorCode::InvalidArgument && message.find("truncated or corrupt ONNX file") != std::string::npos;
  };

  // A node the reader does not decode: its attribute must still parse.
  Message attribute;
  attribute.string(1, "alpha").fixed32(2, 0x3F800000u).varint(20, 1);
  CHECK_NOTHROW(read(with_graph_field(node_with_attribute(attribute))));
  Message damaged_attribute;
  damaged_attribute.bytes = std::string("\x0f", 1);  // field 1, wire type 7: no such wire type
  CHECK(corrupt(with_graph_field(node_with_attribute(damaged_attribute))));
  damaged_attribute.bytes = std::string("\x00\x01", 2);  // field number 0
  CHECK(corrupt(with_graph_field(node_with_attribute(damaged_attribute))));
  damaged_attribute.bytes = std::string("\x22\x05" "ab", 4);  // a string longer than its message
  CHECK(corrupt(with_graph_field(node_with_attribute(damaged_attribute))));

  // Packed numbers: float_data in whole floats, int64_data in whole varints.
  const auto tensor_attribute = [](uint32_t field, const std::string& packed) {
    Message tensor;
    tensor.varint(2, static_cast<uint64_t>(kFloat)).string(field, packed);
    return Message().string(1, "value").message(5, tensor);
  };
  CHECK_NOTHROW(read(with_graph_field(node_with_attribute(tensor_attribute(4, raw_floats(2, 0.0f))))));
  CHECK(corrupt(with_graph_field(node_with_attribute(tensor_attribute(4, raw_floats(2, 0.0f) + "x")))));
  CHECK_NOTHROW(read(with_graph_field(node_with_attribute(tensor_attribute(7, std::string("\x01\x96\x01", 3))))));
  CHECK(corrupt(with_graph_field(node_with_attribute(tensor_attribute(7, std::string("\x01\x96", 2))))));

  // A known field with another wire type is an unknown field, as in libprotobuf: skipped.
  CHECK_NOTHROW(read(with_graph_field(Message().varint(1, 5).fixed64(13, 1))));
  // Groups in unknown fields must close with their own number.
  Message group_inside;
  group_inside.varint(1, 1);
  CHECK_NOTHROW(read(with_graph_field(Message().group(40, group_inside))));
  Message unclosed;
  unclosed.bytes = std::string("\xc3\x02\x08\x01", 4);  // field 40 start-group, then no end
  CHECK(corrupt(with_graph_field(unclosed)));

  // Nesting: value_info types nested 50 deep read; 150 deep exceed libprotobuf's limit of 100
  // (and must not exhaust the stack).
  const auto nested_value_info = [](int depth) {
    Message type;
    type.message(1, Message().varint(1, static_cast<uint64_t>(kFloat)));
    for (int i = 0; i < depth; ++i) type = Message().message(4, Message().message(1, type));  // Sequence of ...
    return Message().message(13, Message().string(1, "deep").message(2, type));
  };
  CHECK_NOTHROW(read(with_graph_field(nested_value_info(20))));
  CHECK(corrupt(with_graph_field(nested_value_info(150))));
  CHECK(corrupt(with_graph_field(nested_value_info(3000))));
}

TEST_CASE("randomly damaged ONNX files either read or throw loupe::Error", "[model_card][onnx][bad-input][fuzz]") {
  const std::string original = onnx_bytes();
  std::mt19937 rng(4321);
  int errors = 0, read_ok = 0;
  for (int seed = 0; seed < 400; ++seed) {
    std::string damaged = original;
    if (seed % 4 == 3) {  // random bytes after a plausible first byte
      for (auto& c : damaged) c = static_cast<char>(rng());
      damaged[0] = '\x08';
    } else {
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int i = 0; i < flips; ++i) damaged[rng() % damaged.size()] = static_cast<char>(rng());
      if (rng() % 3 == 0) damaged.resize(rng() % damaged.size());
    }
    CAPTURE(seed);
    try {
      const OnnxModelInfo info = read(damaged);
      for (const auto& r : info.weight_ranges) CHECK(r.offset + r.size <= damaged.size());
      CHECK_FALSE(describe(info).empty());
      ++read_ok;
    } catch (const Error&) {
      ++errors;
    }
  }
  CHECK(errors > 0);
  CHECK(errors + read_ok == 400);
}

// The models the repository ships (models/shipped/, written by `loupe export` before the reader
// moved into the shared core): the reader the browser runs reads them, and the card in each is,
// byte for byte, the sidecar MODEL.card.json export wrote next to it.
TEST_CASE("the shipped models read, with the card export wrote", "[model_card][onnx][shipped]") {
  const std::string here = __FILE__;
  const std::string folder = here.substr(0, here.rfind("/tests/core/")) + "/models/shipped";
  std::vector<std::string> models;
  if (DIR* dir = opendir(folder.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      const std::string name = entry->d_name;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".onnx") == 0) models.push_back(folder + "/" + name);
    }
    closedir(dir);
  }
  REQUIRE(models.size() >= 2);  // the repository ships them: never a skip
  std::sort(models.begin(), models.end());
  for (const auto& path : models) {
    CAPTURE(path);
    const std::vector<uint8_t> bytes = read_file(path);
    const OnnxModelInfo info = read_onnx_model(bytes.data(), bytes.size(), path);
    CHECK(info.card.disclaimer == kDisclaimer);
    CHECK(info.card.weights_sha256.size() == 64);
    REQUIRE(info.card.self_test);  // every shipped model carries its self-test
    CHECK(info.card.self_test->images.size() == 4);
    CHECK(info.outputs.at(0).name == "logits");
    CHECK(info.outputs.at(0).dims == std::vector<std::string>{"batch", std::to_string(info.card.class_names.size())});
    size_t weight_bytes = 0;
    for (const auto& r : info.weight_ranges) {
      CHECK(r.offset + r.size <= bytes.size());
      weight_bytes += r.size;
    }
    if (info.card.is_int8()) {
      // int8 weights, float32 scales and the float head, int32 biases: between 1 and 4 bytes each.
      REQUIRE(info.card.quantization);
      CHECK(weight_bytes >= static_cast<size_t>(info.parameters));
      CHECK(weight_bytes < 2 * static_cast<size_t>(info.parameters));
    } else {
      CHECK(info.card.precision_note() == "fp32");
      CHECK(weight_bytes >= 4 * static_cast<size_t>(info.parameters));  // float32, and a few int64 shapes
    }
    const std::vector<uint8_t> sidecar = read_file(path.substr(0, path.size() - 5) + ".card.json");
    CHECK(info.card.to_json().dump(2) + "\n" == std::string(sidecar.begin(), sidecar.end()));
  }
}
