#include "loupe/train/train_config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "loupe/error.h"
#include "loupe/train/precision.h"

namespace fs = std::filesystem;

namespace loupe::train {

namespace {

[[noreturn]] void bad(const std::string& key, const std::string& problem) {
  throw Error(ErrorCode::InvalidArgument, key + ": " + problem);
}

int integer(const nlohmann::json& v, const std::string& key, int lo, int hi) {
  if (!v.is_number_integer()) bad(key, "expected an integer, got " + v.dump());
  const auto x = v.get<int64_t>();
  if (x < lo || x > hi) bad(key, std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(x);
}

std::string text(const nlohmann::json& v, const std::string& key) {
  if (!v.is_string()) bad(key, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

// Re-throws a section parser's error with the section name in front when it lacks it.
template <typename Fn>
auto section(const std::string& name, Fn&& parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.rfind(name, 0) == 0) throw;
    throw Error(e.code(), name + "." + message);
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::Io, path + ": cannot open config file");
  try {
    return nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorCode::InvalidArgument, path + ": not valid JSON: " + e.what());
  }
}

}  // namespace

std::string expand_variables(const std::string& input) {
  std::string out;
  for (size_t i = 0; i < input.size(); ++i) {
    if (input[i] == '$' && i + 1 < input.size() && input[i + 1] == '{') {
      const size_t close = input.find('}', i);
      if (close == std::string::npos) bad("data.path", "unterminated ${ in '" + input + "'");
      const std::string name = input.substr(i + 2, close - i - 2);
      const char* value = std::getenv(name.c_str());
      if (value) out += value;
      else if (name == "LOUPE_DATA_DIR") out += "../shared/data";
      else bad("data.path", "environment variable " + name + " is not set");
      i = close;
    } else {
      out += input[i];
    }
  }
  return out;
}

void set_dotted(nlohmann::json& document, const std::string& dotted_key, const nlohmann::json& value) {
  nlohmann::json* node = &document;
  size_t start = 0;
  while (true) {
    const size_t dot = dotted_key.find('.', start);
    const std::string part = dotted_key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) bad(dotted_key, "empty key component");
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    if (!node->contains(part)) (*node)[part] = nlohmann::json::object();
    node = &(*node)[part];
    if (!node->is_object()) bad(dotted_key, "'" + part + "' is not an object");
    start = dot + 1;
  }
}

namespace {

// `chain`: the configs that extend this one, outermost first; a config that reaches itself again
// is an error naming the loop (it would recurse until the stack ran out).
nlohmann::json load_config_chain(const std::string& path, std::vector<std::string>& chain) {
  std::error_code ignored;
  const std::string canonical = fs::weakly_canonical(path, ignored).string();
  if (std::find(chain.begin(), chain.end(), canonical) != chain.end()) {
    std::string loop;
    for (const auto& p : chain) loop += p + " -> ";
    throw Error(ErrorCode::InvalidArgument, path + ": \"extends\" makes a loop: " + loop + canonical);
  }
  nlohmann::json doc = read_json_file(path);
  if (!doc.is_object()) throw Error(ErrorCode::InvalidArgument, path + ": a config must be a JSON object");
  if (!doc.contains("extends")) return doc;
  chain.push_back(canonical);
  const std::string parent = (fs::path(path).parent_path() / text(doc["extends"], "extends")).string();
  nlohmann::json base = load_config_chain(parent, chain);
  chain.pop_back();
  doc.erase("extends");
  base.merge_patch(doc);
  return base;
}

}  // namespace

nlohmann::json load_config_json(const std::string& path) {
  std::vector<std::string> chain;
  return load_config_chain(path, chain);
}

TrainConfig load_config(const std::string& path) {
  const nlohmann::json doc = load_config_json(path);
  try {
    return TrainConfig::from_json(doc);
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
}

nlohmann::json DistributedConfig::to_json() const {
  return {{"backend", backend}, {"timeout_s", timeout_s}, {"bucket_mb", bucket_mb}};
}

DistributedConfig DistributedConfig::from_json(const nlohmann::json& json) {
  if (!json.is_object()) bad("distributed", "expected an object with backend, timeout_s, bucket_mb");
  DistributedConfig c;
  for (const auto& [key, v] : json.items()) {
    if (key == "backend") {
      c.backend = text(v, "distributed.backend");
      if (c.backend != "auto" && c.backend != "gloo" && c.backend != "nccl") {
        bad("distributed.backend", "'" + c.backend + "': expected auto, gloo or nccl");
      }
    } else if (key == "timeout_s") {
      c.timeout_s = integer(v, "distributed.timeout_s", 1, 24 * 3600);
    } else if (key == "bucket_mb") {
      if (!v.is_number() || !(v.get<double>() > 0) || v.get<double>() > 4096) {
        bad("distributed.bucket_mb", "expected a number of megabytes in (0, 4096], got " + v.dump());
      }
      c.bucket_mb = v.get<double>();
    } else {
      bad("distributed." + key, "unknown key; expected backend, timeout_s, bucket_mb");
    }
  }
  return c;
}

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j = {
      {"name", name},
      {"description", description},
      {"data", {{"path", data_path}, {"class_names", class_names}, {"include_classes", include_classes},
                {"max_per_class", max_per_class}}},
      {"split", split.to_json()},
      {"balancing", data::to_string(balancing)},
      {"preprocess", preprocess.to_json()},
      {"augment", augment.to_json()},
      {"model", model.to_json()},
      {"pretrained", {{"path", pretrained_path}, {"freeze_backbone_epochs", freeze_backbone_epochs}}},
      {"optimizer", optimizer.to_json()},
      {"schedule", schedule.to_json()},
      {"early_stopping", early_stopping.to_json()},
      {"epochs", epochs},
      {"batch_size", batch_size},
      {"seed", seed},
      {"threads", threads},
      {"workers", workers},
      {"device", device},
      {"precision", precision},
      {"channels_last", channels_last},
      {"selection_metric", selection_metric},
      {"distributed", distributed.to_json()},
  };
  if (!grid.is_null() && !grid.empty()) j["grid"] = grid;
  if (intended_images) j["intended_images"] = intended_images->to_json();
  return j;
}

TrainConfig TrainConfig::from_json(const nlohmann::json& json) {
  if (!json.is_object()) bad("config", "expected a JSON object");
  TrainConfig c;
  bool has_model = false, has_data = false;
  for (const auto& item : json.items()) {
    // Named copies, not a structured binding: lambdas below capture them (C++17 forbids capturing bindings).
    const std::string key = item.key();
    const nlohmann::json& v = item.value();
    if (key == "name") c.name = text(v, key);
    else if (key == "description") c.description = text(v, key);
    else if (key == "data") {
      if (!v.is_object()) bad(key, "expected an object with 'path'");
      for (const auto& [k, dv] : v.items()) {
        if (k == "path") c.data_path = expand_variables(text(dv, "data.path"));
        else if (k == "class_names") {
          if (!dv.is_array()) bad("data.class_names", "expected an array of strings");
          for (const auto& n : dv) c.class_names.push_back(text(n, "data.class_names[]"));
        } else if (k == "include_classes") {
          if (!dv.is_array()) bad("data.include_classes", "expected an array of class names");
          for (const auto& n : dv) c.include_classes.push_back(text(n, "data.include_classes[]"));
        } else if (k == "max_per_class") c.max_per_class = integer(dv, "data.max_per_class", 0, 1 << 30);
        else bad("data." + k, "unknown key; expected path, class_names, include_classes, max_per_class");
      }
      has_data = !c.data_path.empty();
    } else if (key == "split") c.split = section("split", [&] { return data::SplitSpec::from_json(v); });
    else if (key == "balancing") c.balancing = section("balancing", [&] { return data::parse_balancing(text(v, key)); });
    else if (key == "preprocess") c.preprocess = PreprocessSpec::from_json(v);
    else if (key == "augment") c.augment = data::AugmentSpec::from_json(v);
    else if (key == "model") {
      c.model = models::ModelConfig::from_json(v);
      has_model = true;
    } else if (key == "pretrained") {
      if (!v.is_object()) bad(key, "expected an object");
      for (const auto& [k, pv] : v.items()) {
        if (k == "path") c.pretrained_path = expand_variables(text(pv, "pretrained.path"));
        else if (k == "freeze_backbone_epochs") c.freeze_backbone_epochs = integer(pv, "pretrained.freeze_backbone_epochs", 0, 100000);
        else bad("pretrained." + k, "unknown key; expected path, freeze_backbone_epochs");
      }
    } else if (key == "optimizer") c.optimizer = OptimizerConfig::from_json(v);
    else if (key == "schedule") c.schedule = ScheduleConfig::from_json(v);
    else if (key == "early_stopping") c.early_stopping = EarlyStoppingConfig::from_json(v);
    else if (key == "epochs") c.epochs = integer(v, key, 1, 100000);
    else if (key == "batch_size") c.batch_size = integer(v, key, 1, 65536);
    else if (key == "seed") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) bad(key, "expected a non-negative integer");
      c.seed = v.get<uint64_t>();
    } else if (key == "threads") c.threads = integer(v, key, 0, 1024);
    else if (key == "workers") c.workers = integer(v, key, 1, 256);
    else if (key == "device") {
      c.device = text(v, key);
      if (c.device != "auto" && c.device != "cpu" && c.device.rfind("cuda", 0) != 0) {
        bad(key, "expected auto, cpu, cuda or cuda:N");
      }
    } else if (key == "precision") {
      c.precision = text(v, key);
      parse_precision(c.precision);  // throws "precision: ..." for an unknown value
    } else if (key == "channels_last") {
      if (!v.is_boolean() && !(v.is_string() && v.get<std::string>() == "auto")) bad(key, "expected true, false or \"auto\"");
      c.channels_last = v;
    } else if (key == "selection_metric") {
      c.selection_metric = text(v, key);
      if (c.selection_metric != "val_loss" && c.selection_metric != "val_accuracy" &&
          c.selection_metric != "val_balanced_accuracy") {
        bad(key, "expected val_loss, val_accuracy or val_balanced_accuracy");
      }
    } else if (key == "distributed") {
      c.distributed = DistributedConfig::from_json(v);
    } else if (key == "grid") {
      if (!v.is_object()) bad(key, "expected an object of dotted keys to value lists");
      for (const auto& [k, values] : v.items()) {
        if (!values.is_array() || values.empty()) bad("grid." + k, "expected a non-empty array of values");
      }
      c.grid = v;
    } else if (key == "intended_images") {
      if (!v.is_null()) {
        try {
          c.intended_images = IntendedImages::from_json(v);
        } catch (const Error& e) {  // "model card: intended_images.x: ..." -> "intended_images.x: ..."
          const std::string message = e.what();
          throw Error(ErrorCode::InvalidSpec, message.substr(message.find("intended_images")));
        }
      }
    } else {
      bad(key, "unknown key; expected name, description, data, split, balancing, preprocess, augment, model, "
               "pretrained, optimizer, schedule, early_stopping, epochs, batch_size, seed, threads, workers, "
               "device, precision, channels_last, selection_metric, distributed, grid, intended_images");
    }
  }
  if (!has_data) bad("data.path", "missing: the data set folder, .csv manifest or .npz file");
  if (!has_model) bad("model", "missing: e.g. {\"architecture\": \"resnet18\"}");
  if (c.model.in_channels != c.preprocess.channels()) {
    bad("model.in_channels", std::to_string(c.model.in_channels) + " does not match preprocess.color '" +
                                 to_string(c.preprocess.color) + "' (" + std::to_string(c.preprocess.channels()) + " channels)");
  }
  // The model is built for the preprocessed size; only simple_cnn (flatten) depends on it.
  if (!json["model"].contains("input_size")) c.model.input_size = c.preprocess.width;
  if (c.model.input_size != c.preprocess.width || c.preprocess.width != c.preprocess.height) {
    bad("model.input_size", std::to_string(c.model.input_size) + " does not match preprocess " +
                                std::to_string(c.preprocess.width) + "x" + std::to_string(c.preprocess.height) +
                                " (models take square inputs of input_size)");
  }
  if (c.preprocess.width < models::min_input_size(c.model)) {
    bad("preprocess.width", std::to_string(c.preprocess.width) + " is below " + c.model.architecture +
                                "'s minimum input size " + std::to_string(models::min_input_size(c.model)));
  }
  return c;
}

}  // namespace loupe::train
