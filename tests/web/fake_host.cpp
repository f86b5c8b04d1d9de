#include "fake_host.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <nlohmann/json.hpp>

#include "app_logic.h"

namespace loupe_web::test {

namespace {

// What crypto.subtle.digest("SHA-256", ...) gives the page, as hex.
std::string sha256_hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  char byte[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

}  // namespace

void TestApp::open_model(const std::vector<uint8_t>& bytes, const std::string& name, const std::string* sha,
                         SelfTestAnswer self_test) {
  on_model_file(app, bytes.data(), bytes.size(), name, "file", nullptr);
  if (host.sessions.empty() || !app.model_load) return;  // refused before ORT
  const FakeHost::Session session = host.sessions.back();
  host.sessions.pop_back();
  const std::string hash = sha ? *sha : app.model_load->info->card.weights_sha256;
  on_ort_session(app, session.request, next_session++, hash, nullptr);
  answer_self_test(self_test);
}

void TestApp::answer_self_test(SelfTestAnswer answer) {
  if (answer == SelfTestAnswer::none || !app.model_load || !app.model_load->info->card.self_test) return;
  const loupe::SelfTest test = *app.model_load->info->card.self_test;
  const int run_request = app.model_load->self_test_run;
  const auto run = std::find_if(host.runs.begin(), host.runs.end(), [&](const FakeHost::Run& r) { return r.request == run_request; });
  if (run != host.runs.end()) {
    host.runs.erase(run);
    std::vector<float> data;
    nlohmann::json layout = nlohmann::json::array();
    for (const auto& [name, expected] : test.outputs) {
      layout.push_back({{"name", name}, {"dims", expected.shape}, {"offset", data.size()}});
      for (double v : expected.values) data.push_back(static_cast<float>(v));
      if (answer == SelfTestAnswer::one_logit_off && name == "logits") data[data.size() - 1] += 0.01f;
    }
    on_ort_run(app, run_request, data.data(), data.size(), layout.dump().c_str(), nullptr);
  }
  std::vector<FakeHost::Hash> hashes;
  hashes.swap(host.hashes);
  for (const auto& h : hashes) {
    on_sha256(app, h.request, answer == SelfTestAnswer::wrong_hash ? std::string(64, '0') : sha256_hex(h.text));
  }
}

int TestApp::add_file(const std::string& path, std::vector<uint8_t> bytes) {
  files.push_back(std::move(bytes));
  const int index = static_cast<int>(files.size()) - 1;
  on_image_file_added(app, index, path.substr(path.find_last_of('/') + 1), path, static_cast<double>(files.back().size()));
  return index;
}

void TestApp::answer_reads() {
  std::vector<FakeHost::Read> pending;
  pending.swap(host.reads);
  for (const auto& read : pending) {
    const std::vector<uint8_t>& bytes = files.at(static_cast<size_t>(read.file_index));
    if (bytes.empty()) {
      on_image_file_read(app, read.request, nullptr, 0, "", "NotReadableError: the file is gone");
    } else {
      on_image_file_read(app, read.request, bytes.data(), bytes.size(), "", nullptr);
    }
  }
}

void TestApp::answer_runs(LogitsFor logits_for, float ood_distance) {
  std::vector<FakeHost::Run> pending;
  pending.swap(host.runs);
  for (const auto& run : pending) {
    // A run of dims[0] images: each image's logits from its own slice of the input, as ORT would.
    const nlohmann::json outputs = nlohmann::json::parse(run.outputs);
    const size_t images = nlohmann::json::parse(run.dims).at(0).get<size_t>();
    const size_t plane = run.input.size() / images;
    std::vector<float> data;
    nlohmann::json layout = nlohmann::json::array();
    for (const auto& name : outputs) {
      const size_t offset = data.size();
      if (name == "logits") {
        size_t classes = 0;
        for (size_t i = 0; i < images; ++i) {
          const std::vector<float> logits = logits_for(std::vector<float>(run.input.begin() + static_cast<std::ptrdiff_t>(i * plane),
                                                                          run.input.begin() + static_cast<std::ptrdiff_t>((i + 1) * plane)));
          data.insert(data.end(), logits.begin(), logits.end());
          classes = logits.size();
        }
        layout.push_back({{"name", name}, {"dims", {images, classes}}, {"offset", offset}});
      } else if (name == "cam") {
        const size_t classes = app.model.info.card.class_names.size();
        for (size_t i = 0; i < images * classes * 49; ++i) data.push_back(static_cast<float>(i % 49));
        layout.push_back({{"name", name}, {"dims", {images, classes, 7, 7}}, {"offset", offset}});
      } else {
        data.insert(data.end(), images, ood_distance);
        layout.push_back({{"name", name}, {"dims", {images}}, {"offset", offset}});
      }
    }
    on_ort_run(app, run.request, data.data(), data.size(), layout.dump().c_str(), nullptr);
  }
}

void TestApp::settle(LogitsFor logits_for, int rounds) {
  for (int i = 0; i < rounds && (!host.reads.empty() || !host.runs.empty()); ++i) {
    answer_reads();
    answer_runs(logits_for);
  }
}

const std::vector<uint8_t>& shipped_chest_model() {
  static const std::vector<uint8_t> bytes = [] {
    const std::string path = std::string(LOUPE_SHIPPED_MODELS_DIR) + "/chest-xray-mobilenet_v2.onnx";
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }();
  return bytes;
}

}  // namespace loupe_web::test
