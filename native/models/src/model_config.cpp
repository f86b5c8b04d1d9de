#include "loupe/models/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "loupe/error.h"

namespace loupe::models {

namespace {

[[noreturn]] void bad_config(const std::string& key, const std::string& problem) {
  throw Error(ErrorCode::InvalidSpec, "model." + key + ": " + problem);
}

int parse_int(const nlohmann::json& value, const std::string& key, int64_t min, int64_t max) {
  if (!value.is_number_integer()) bad_config(key, "expected an integer, got " + value.dump());
  const auto v = value.get<int64_t>();
  if (v < min || v > max) {
    bad_config(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                        std::to_string(v));
  }
  return static_cast<int>(v);
}

void check_range(const std::string& key, int value, int min, int max) {
  if (value < min || value > max) {
    bad_config(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                        std::to_string(value));
  }
}

constexpr int kMaxClasses = 100000;
constexpr int kMaxChannels = 16;
constexpr int kMaxInputSize = 4096;
constexpr int kMaxConvLayers = 8;
constexpr int kMaxWidth = 4096;
constexpr int kMaxHiddenUnits = 65536;

bool is_simple_cnn_key(const std::string& key) {
  return key == "conv_channels" || key == "hidden_units" || key == "pooling";
}

}  // namespace

const std::vector<std::string>& architectures() {
  static const std::vector<std::string> names{"simple_cnn",         "vgg16",           "resnet18",
                                              "resnet50",           "mobilenet_v2",    "mobilenet_v3_large",
                                              "efficientnet_b0",    "resnet50_lstm"};
  return names;
}

bool is_architecture(const std::string& name) {
  const auto& names = architectures();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string architecture_list() {
  std::string out;
  for (const auto& name : architectures()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

const char* to_string(Pooling pooling) { return pooling == Pooling::Flatten ? "flatten" : "global_avg"; }

int min_input_size(const ModelConfig& config) {
  if (config.architecture == "simple_cnn") {
    // Each stage halves the side (floor); at least one pixel must survive the last pool.
    const auto stages = std::min<size_t>(config.conv_channels.size(), 30);
    return std::max(2, 1 << stages);
  }
  if (config.architecture == "vgg16") return 32;  // five 2x2 pools
  return 28;
}

void ModelConfig::validate() const {
  if (architecture.empty()) bad_config("architecture", "missing; expected one of " + architecture_list());
  if (!is_architecture(architecture)) {
    bad_config("architecture", "unknown value '" + architecture + "'; expected one of " + architecture_list());
  }
  check_range("num_classes", num_classes, 1, kMaxClasses);
  check_range("in_channels", in_channels, 1, kMaxChannels);
  if (!(dropout >= 0.0 && dropout < 1.0)) bad_config("dropout", "must be in [0, 1), got " + std::to_string(dropout));
  if (architecture == "simple_cnn") {
    if (conv_channels.empty() || conv_channels.size() > static_cast<size_t>(kMaxConvLayers)) {
      bad_config("conv_channels", "must list 1 to " + std::to_string(kMaxConvLayers) + " widths, got " +
                                      std::to_string(conv_channels.size()));
    }
    for (size_t i = 0; i < conv_channels.size(); ++i) {
      check_range("conv_channels[" + std::to_string(i) + "]", conv_channels[i], 1, kMaxWidth);
    }
    check_range("hidden_units", hidden_units, 0, kMaxHiddenUnits);
  }
  check_range("input_size", input_size, min_input_size(*this), kMaxInputSize);
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json json{{"architecture", architecture}, {"num_classes", num_classes}, {"in_channels", in_channels},
                      {"input_size", input_size},     {"dropout", dropout}};
  if (architecture == "simple_cnn") {
    json["conv_channels"] = conv_channels;
    json["hidden_units"] = hidden_units;
    json["pooling"] = to_string(pooling);
  }
  return json;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error(ErrorCode::InvalidSpec, "model: expected a JSON object, got " + json.dump());
  ModelConfig config;
  config.architecture.clear();
  for (const auto& [key, value] : json.items()) {
    if (key == "architecture") {
      if (!value.is_string()) bad_config(key, "expected a string, one of " + architecture_list());
      config.architecture = value.get<std::string>();
    } else if (key == "num_classes") {
      config.num_classes = parse_int(value, key, 1, kMaxClasses);
    } else if (key == "in_channels") {
      config.in_channels = parse_int(value, key, 1, kMaxChannels);
    } else if (key == "input_size") {
      config.input_size = parse_int(value, key, 1, kMaxInputSize);
    } else if (key == "dropout") {
      if (!value.is_number()) bad_config(key, "expected a number in [0, 1), got " + value.dump());
      config.dropout = value.get<double>();
    } else if (key == "conv_channels") {
      if (!value.is_array()) bad_config(key, "expected an array of integers, got " + value.dump());
      config.conv_channels.clear();
      for (size_t i = 0; i < value.size(); ++i) {
        config.conv_channels.push_back(parse_int(value[i], key + "[" + std::to_string(i) + "]", 1, kMaxWidth));
      }
    } else if (key == "hidden_units") {
      config.hidden_units = parse_int(value, key, 0, kMaxHiddenUnits);
    } else if (key == "pooling") {
      const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      if (text == "flatten") config.pooling = Pooling::Flatten;
      else if (text == "global_avg") config.pooling = Pooling::GlobalAvg;
      else bad_config(key, "unknown value '" + text + "'; expected one of flatten, global_avg");
    } else {
      bad_config(key, "unknown key; expected architecture, num_classes, in_channels, input_size, dropout, "
                      "conv_channels, hidden_units, pooling");
    }
  }
  if (config.architecture.empty()) bad_config("architecture", "missing; expected one of " + architecture_list());
  if (config.architecture != "simple_cnn") {
    for (const auto& item : json.items()) {
      if (is_simple_cnn_key(item.key())) {
        bad_config(item.key(), "only applies to architecture simple_cnn, not " + config.architecture);
      }
    }
  }
  config.validate();
  return config;
}

bool ModelConfig::operator==(const ModelConfig& o) const {
  return architecture == o.architecture && num_classes == o.num_classes && in_channels == o.in_channels &&
         input_size == o.input_size && dropout == o.dropout && conv_channels == o.conv_channels &&
         hidden_units == o.hidden_units && pooling == o.pooling;
}

}  // namespace loupe::models
