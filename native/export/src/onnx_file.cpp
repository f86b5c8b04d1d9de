// Reading exported ONNX files natively: the shared reader (loupe/onnx_model.h) plus the weights'
// SHA-256 and the strict model config.
#include "loupe/export/onnx_file.h"

#include <ctime>
#include <fstream>

#include "loupe/error.h"

namespace loupe::exporter {

models::ModelConfig card_model_config(const ModelCard& card) {
  const auto bad_card = [](const std::string& key, const std::string& message) {
    return Error(ErrorCode::InvalidSpec, "model card: " + key + ": " + message);
  };
  models::ModelConfig config;
  try {
    config = models::ModelConfig::from_json(card.model);
  } catch (const Error& e) {
    throw bad_card("model", e.what());
  }
  // ModelCard::from_json checks these where the JSON has the keys; a missing num_classes means
  // ModelConfig's default.
  if (card.architecture != config.architecture) {
    throw bad_card("architecture", "'" + card.architecture + "' differs from model.architecture '" + config.architecture + "'");
  }
  if (static_cast<int>(card.class_names.size()) != config.num_classes) {
    throw bad_card("class_names", std::to_string(card.class_names.size()) + " names but model.num_classes is " +
                                      std::to_string(config.num_classes));
  }
  return config;
}

OnnxFileInfo read_onnx_bytes(const std::string& bytes, const std::string& what, const ReadOptions& options) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  OnnxFileInfo info = read_onnx_model(data, bytes.size(), what);
  try {
    card_model_config(info.card);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidSpec, what + ": " + e.what());
  }
  if (options.verify_weights && !info.card.weights_sha256.empty()) {
    const std::string actual = sha256_of_ranges(data, info.weight_ranges);
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

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

}  // namespace loupe::exporter
