// The model card's JSON form (model_card.h).
#include "loupe/model_card.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "loupe/error.h"

namespace loupe {

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

bool finite_number(const json& parent, const char* key) {
  return parent.contains(key) && parent.at(key).is_number() && std::isfinite(parent.at(key).get<double>());
}

}  // namespace

Calibration Calibration::from_json(const json& j) {
  if (!j.is_object()) bad_card("calibration", "expected an object or null");
  Calibration c;
  c.record = j;
  c.method = j.contains("method") ? optional_string(j, "method") : c.method;
  if (c.method != "temperature_scaling") {
    bad_card("calibration.method", "'" + c.method + "' is not a method this Loupe applies (temperature_scaling)");
  }
  if (!finite_number(j, "temperature") || j.at("temperature").get<double>() <= 0) {
    bad_card("calibration.temperature", "expected a finite number > 0");
  }
  c.temperature = j.at("temperature").get<double>();
  return c;
}

json Calibration::to_json() const {
  json j = record.is_object() ? record : json::object();
  j["method"] = method;
  j["temperature"] = temperature;
  return j;
}

OodCheck OodCheck::from_json(const json& j) {
  if (!j.is_object()) bad_card("ood", "expected an object or null");
  OodCheck o;
  o.record = j;
  if (!j.contains("output") || !j.at("output").is_string()) bad_card("ood.output", "expected a string");
  o.output = j.at("output").get<std::string>();
  if (!finite_number(j, "threshold")) bad_card("ood.threshold", "expected a finite number");
  o.threshold = j.at("threshold").get<double>();
  o.method = optional_string(j, "method");
  return o;
}

json OodCheck::to_json() const {
  json j = record.is_object() ? record : json::object();
  if (!method.empty()) j["method"] = method;
  j["output"] = output;
  j["threshold"] = threshold;
  return j;
}

namespace {

// Upper case without surrounding spaces: DICOM code strings are upper case, but hand-written
// cards and files are not always.
std::string folded_code(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  const size_t last = text.find_last_not_of(" \t");
  std::string out = text.substr(first, last - first + 1);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string joined(const std::vector<std::string>& values, const char* separator) {
  std::string out;
  for (const auto& v : values) out += (out.empty() ? "" : separator) + v;
  return out;
}

constexpr const char* kIntendedKeys[] = {"modality", "body_part", "view_position"};

}  // namespace

IntendedImages IntendedImages::from_json(const json& j) {
  if (!j.is_object()) bad_card("intended_images", "expected an object with modality, body_part and/or view_position");
  IntendedImages intended;
  for (const auto& [key, value] : j.items()) {
    std::vector<std::string>* list = key == "modality" ? &intended.modality
                                     : key == "body_part" ? &intended.body_part
                                     : key == "view_position" ? &intended.view_position
                                                              : nullptr;
    if (list == nullptr) bad_card("intended_images." + key, "unknown key; expected modality, body_part or view_position");
    if (!value.is_array() || value.empty()) bad_card("intended_images." + key, "expected a non-empty array of strings");
    for (const auto& v : value) {
      if (!v.is_string() || folded_code(v.get<std::string>()).empty()) {
        bad_card("intended_images." + key, "expected a non-empty array of non-empty strings");
      }
      list->push_back(v.get<std::string>());
    }
  }
  return intended;
}

json IntendedImages::to_json() const {
  json j = json::object();
  for (const char* key : kIntendedKeys) {
    const auto& list = std::string(key) == "modality" ? modality : std::string(key) == "body_part" ? body_part : view_position;
    if (!list.empty()) j[key] = list;
  }
  return j;
}

std::string IntendedImages::contradiction(const std::string& file_modality, const std::string& file_body_part,
                                          const std::string& file_view_position) const {
  std::string out;
  const auto check = [&](const char* attribute, const std::string& value, const std::vector<std::string>& allowed) {
    const std::string v = folded_code(value);
    if (v.empty() || allowed.empty()) return;
    for (const auto& a : allowed) {
      if (folded_code(a) == v) return;
    }
    out += (out.empty() ? "" : "; ") + std::string(attribute) + " " + v + " (the model was trained for " +
           joined(allowed, "/") + ")";
  };
  check("Modality", file_modality, modality);
  check("Body Part Examined", file_body_part, body_part);
  check("View Position", file_view_position, view_position);
  return out;
}

std::string IntendedImages::summary() const {
  std::vector<std::string> parts;
  for (const auto* list : {&modality, &body_part, &view_position}) {
    if (!list->empty()) parts.push_back(joined(*list, "/"));
  }
  return joined(parts, ", ");
}

Quantization Quantization::from_json(const json& j) {
  if (!j.is_object()) bad_card("quantization", "expected an object");
  Quantization q;
  q.record = j;
  if (!j.contains("method") || !j.at("method").is_string() || j.at("method").get<std::string>().empty()) {
    bad_card("quantization.method", "expected a string (how the int8 model was made, e.g. 'static_qdq')");
  }
  q.method = j.at("method").get<std::string>();
  const auto object = [&](const char* key) -> const json& {
    if (!j.contains(key) || !j.at(key).is_object()) {
      bad_card(std::string("quantization.") + key, "expected an object");
    }
    return j.at(key);
  };
  // `path` names the key in messages: "calibration.images" -> "quantization.calibration.images".
  const auto count = [&](const json& parent, const char* key, const std::string& path) {
    if (!parent.contains(key) || !parent.at(key).is_number_integer() || parent.at(key).get<int64_t>() < 1) {
      bad_card("quantization." + path, "expected a positive integer");
    }
    return parent.at(key).get<int64_t>();
  };
  const auto share = [&](const json& parent, const char* key, const std::string& path) {
    if (!parent.contains(key) || !parent.at(key).is_number() || !std::isfinite(parent.at(key).get<double>()) ||
        parent.at(key).get<double>() < 0 || parent.at(key).get<double>() > 1) {
      bad_card("quantization." + path, "expected a number in [0, 1]");
    }
    return parent.at(key).get<double>();
  };
  const json& calibration = object("calibration");
  if (!calibration.contains("method") || !calibration.at("method").is_string()) {
    bad_card("quantization.calibration.method", "expected a string (how the activation ranges were set)");
  }
  q.calibration_method = calibration.at("method").get<std::string>();
  q.calibration_images = count(calibration, "images", "calibration.images");
  const json& test = object("test");
  q.test_images = count(test, "images", "test.images");
  q.float_accuracy = share(test, "float_accuracy", "test.float_accuracy");
  q.int8_accuracy = share(test, "int8_accuracy", "test.int8_accuracy");
  q.agreement = share(test, "agreement", "test.agreement");
  return q;
}

json Quantization::to_json() const { return record.is_object() ? record : json::object(); }

std::string ModelCard::precision_note() const {
  if (!is_int8() || !quantization) return precision.empty() ? kPrecisionFp32 : precision;
  const Quantization& q = *quantization;
  char text[256];
  std::snprintf(text, sizeof text,
                "int8 (%s, %s ranges on %lld training images): test accuracy %.3f vs fp32 %.3f, same top class on "
                "%.1f%% of %lld test images",
                q.method == "static_qdq" ? "static QDQ" : q.method.c_str(), q.calibration_method.c_str(),
                static_cast<long long>(q.calibration_images), q.int8_accuracy, q.float_accuracy, 100 * q.agreement,
                static_cast<long long>(q.test_images));
  return text;
}

SiteCalibration SiteCalibration::from_json(const json& j, const std::vector<std::string>& class_names) {
  if (!j.is_object()) bad_card("site_calibration", "expected an object or null");
  SiteCalibration s;
  s.record = j;
  s.method = j.contains("method") ? optional_string(j, "method") : s.method;
  if (s.method != "temperature_scaling") {
    bad_card("site_calibration.method", "'" + s.method + "' is not a method this Loupe applies (temperature_scaling)");
  }
  if (!finite_number(j, "temperature") || j.at("temperature").get<double>() <= 0) {
    bad_card("site_calibration.temperature", "expected a finite number > 0");
  }
  s.temperature = j.at("temperature").get<double>();
  s.created_utc = optional_string(j, "created_utc");
  if (j.contains("images") && j.at("images").is_number_integer()) s.images = j.at("images").get<int64_t>();
  if (j.contains("operating_points") && !j.at("operating_points").is_null()) {
    const json& points = j.at("operating_points");
    if (!points.is_array()) bad_card("site_calibration.operating_points", "expected an array");
    for (const json& point : points) {
      if (!point.is_object() || !point.contains("class") || !point.at("class").is_string()) {
        bad_card("site_calibration.operating_points", "expected objects with a \"class\" name");
      }
      OperatingPointRule rule;
      rule.class_name = point.at("class").get<std::string>();
      const auto found = std::find(class_names.begin(), class_names.end(), rule.class_name);
      if (found == class_names.end()) {
        bad_card("site_calibration.operating_points", "'" + rule.class_name + "' is not one of the card's classes");
      }
      rule.class_index = static_cast<int>(found - class_names.begin());
      if (!finite_number(point, "threshold") || point.at("threshold").get<double>() < 0 ||
          point.at("threshold").get<double>() > 1) {
        bad_card("site_calibration.operating_points", "'" + rule.class_name + "': expected a threshold in [0, 1]");
      }
      rule.threshold = point.at("threshold").get<double>();
      for (const OperatingPointRule& other : s.operating_points) {
        if (other.class_index == rule.class_index) {
          bad_card("site_calibration.operating_points", "'" + rule.class_name + "' has two operating points");
        }
      }
      s.operating_points.push_back(rule);
    }
  }
  return s;
}

json SiteCalibration::to_json() const {
  json j = record.is_object() ? record : json::object();
  j["method"] = method;
  j["temperature"] = temperature;
  return j;
}

double ModelCard::temperature_in_use() const {
  if (site_calibration) return site_calibration->temperature;
  return calibration ? calibration->temperature : 1.0;
}

const char* ModelCard::calibration_in_use() const {
  return site_calibration ? "site" : calibration ? "export" : "none";
}

bool ModelCard::has_output(const std::string& output_name) const {
  return std::any_of(outputs.begin(), outputs.end(), [&](const CardOutput& o) { return o.name == output_name; });
}

json ModelCard::to_json() const {
  json outs = json::array();
  for (const auto& o : outputs) outs.push_back({{"name", o.name}, {"shape", o.shape}, {"description", o.description}});
  json card = {{"format", kModelCardFormat},
          {"format_version", kModelCardFormatVersion},
          {"name", name},
          {"version", version},
          {"description", description},
          {"created_utc", created_utc},
          {"architecture", architecture},
          {"model", model},
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
  // Written only when present, so cards of models without them stay as they were.
  if (calibration) card["calibration"] = calibration->to_json();
  if (ood) card["ood"] = ood->to_json();
  if (self_test) card["self_test"] = self_test->to_json();
  if (intended_images) card["intended_images"] = intended_images->to_json();
  if (!precision.empty()) card["precision"] = precision;
  if (quantization) card["quantization"] = quantization->to_json();
  if (site_calibration) card["site_calibration"] = site_calibration->to_json();
  return card;
}

ModelCard ModelCard::from_json(const json& j) {
  if (!j.is_object()) bad_card("(document)", "expected a JSON object");
  if (require_string(j, "format") != kModelCardFormat) bad_card("format", "expected '" + std::string(kModelCardFormat) + "'");
  const json& fv = require(j, "format_version");
  if (!fv.is_number_integer()) bad_card("format_version", "expected an integer");
  if (fv.get<int64_t>() > kModelCardFormatVersion) {
    bad_card("format_version", std::to_string(fv.get<int64_t>()) + " is newer than this Loupe reads (" +
                                   std::to_string(kModelCardFormatVersion) + "): update Loupe");
  }
  ModelCard card;
  card.name = optional_string(j, "name");
  card.version = optional_string(j, "version");
  card.description = optional_string(j, "description");
  card.created_utc = optional_string(j, "created_utc");
  card.architecture = require_string(j, "architecture");
  card.model = require(j, "model");
  if (!card.model.is_object()) bad_card("model", "expected a JSON object");
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
  const json& preprocess_json = require(j, "preprocess");
  try {
    card.preprocess = PreprocessSpec::from_json(preprocess_json);
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
  if (j.contains("calibration") && !j.at("calibration").is_null()) card.calibration = Calibration::from_json(j.at("calibration"));
  if (j.contains("ood") && !j.at("ood").is_null()) card.ood = OodCheck::from_json(j.at("ood"));
  if (j.contains("self_test") && !j.at("self_test").is_null()) card.self_test = SelfTest::from_json(j.at("self_test"));
  card.precision = optional_string(j, "precision");
  if (!card.precision.empty() && card.precision != kPrecisionFp32 && card.precision != kPrecisionInt8) {
    bad_card("precision", "'" + card.precision + "' is not one this Loupe runs (fp32, int8)");
  }
  const bool has_quantization = j.contains("quantization") && !j.at("quantization").is_null();
  if (card.is_int8() && !has_quantization) {
    bad_card("quantization", "missing: an int8 model's card must carry its calibration record (how its activations "
                             "were calibrated and what its held-out test gate measured); quantize the model again");
  }
  if (!card.is_int8() && has_quantization) {
    bad_card("quantization", "present, but the card's precision is '" +
                                 (card.precision.empty() ? std::string(kPrecisionFp32) : card.precision) + "', not int8");
  }
  if (has_quantization) card.quantization = Quantization::from_json(j.at("quantization"));
  if (j.contains("site_calibration") && !j.at("site_calibration").is_null()) {
    card.site_calibration = SiteCalibration::from_json(j.at("site_calibration"), card.class_names);
  }
  card.weights_sha256 = optional_string(j, "weights_sha256");
  card.intended_use = optional_string(j, "intended_use");
  card.disclaimer = optional_string(j, "disclaimer");
  if (j.contains("intended_images") && !j.at("intended_images").is_null()) {
    card.intended_images = IntendedImages::from_json(j.at("intended_images"));
  }
  if (j.contains("producer") && j.at("producer").is_object()) {
    const json& producer = j.at("producer");
    card.producer_version = optional_string(producer, "version");
    if (producer.contains("opset")) {
      const json& opset_json = producer.at("opset");
      if (!opset_json.is_number_integer() || opset_json.get<int64_t>() < 0 || opset_json.get<int64_t>() > 1000000) {
        bad_card("producer.opset", "expected a non-negative integer");
      }
      card.opset = opset_json.get<int>();
    }
  }

  // Consistency between the entries a consumer combines. The rest of "model" is the native
  // ModelConfig's business (models::ModelConfig::from_json).
  if (card.model.contains("architecture") && card.model.at("architecture").is_string() &&
      card.architecture != card.model.at("architecture").get<std::string>()) {
    bad_card("architecture", "'" + card.architecture + "' differs from model.architecture '" +
                                 card.model.at("architecture").get<std::string>() + "'");
  }
  if (card.model.contains("num_classes") && card.model.at("num_classes").is_number_integer() &&
      static_cast<int64_t>(card.class_names.size()) != card.model.at("num_classes").get<int64_t>()) {
    bad_card("class_names", std::to_string(card.class_names.size()) + " names but model.num_classes is " +
                                std::to_string(card.model.at("num_classes").get<int64_t>()));
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
  if (card.ood && !card.has_output(card.ood->output)) {
    bad_card("ood.output", "'" + card.ood->output + "' is not one of the card's outputs");
  }
  if (card.self_test) {
    if (card.self_test->channels != card.input_channels) {
      bad_card("self_test.channels", std::to_string(card.self_test->channels) + " but input.channels is " +
                                         std::to_string(card.input_channels));
    }
    for (const std::string& name : card.self_test->output_names()) {
      if (!card.has_output(name)) bad_card("self_test.outputs", "'" + name + "' is not one of the card's outputs");
    }
  }
  return card;
}

}  // namespace loupe
