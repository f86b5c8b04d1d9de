// A stand-in for the browser in the web app's native tests: records every request the app makes
// (host.h) so a test can check it and answer it the way the JavaScript side would.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "app.h"
#include "host.h"

namespace loupe_web::test {

class FakeHost final : public Host {
 public:
  struct Read { int request, file_index, frame; };
  struct Run {
    int request, session;
    std::vector<float> input;
    std::string dims, outputs;
  };
  struct Session { int request; std::vector<uint8_t> bytes; std::string weight_ranges; };
  struct Download { std::string file_name, mime_type, text; };
  struct Hash { int request; std::string text; };

  std::vector<Read> reads;         // requests not answered yet
  std::vector<Run> runs;
  std::vector<Session> sessions;
  std::vector<int> released;
  std::vector<Hash> hashes;
  std::vector<Download> downloads;
  int image_pickers = 0, model_pickers = 0;
  std::vector<std::string> shipped_requests;

  void read_image_file(int request, int file_index, int frame) override { reads.push_back({request, file_index, frame}); }
  void open_image_picker(bool) override { ++image_pickers; }
  void open_model_picker() override { ++model_pickers; }
  void open_shipped_model(const std::string& file) override { shipped_requests.push_back(file); }
  void create_session(int request, const uint8_t* bytes, size_t size, const std::string& weight_ranges_json) override {
    sessions.push_back({request, std::vector<uint8_t>(bytes, bytes + size), weight_ranges_json});
  }
  void run_model(int request, int session, const float* input, size_t count, const std::string& dims_json,
                 const std::string& outputs_json) override {
    runs.push_back({request, session, std::vector<float>(input, input + count), dims_json, outputs_json});
  }
  void release_session(int session) override { released.push_back(session); }
  void sha256(int request, const std::string& text) override { hashes.push_back({request, text}); }
  void download(const std::string& file_name, const std::string& mime_type, const std::string& text) override {
    downloads.push_back({file_name, mime_type, text});
  }
  void download_bytes(const std::string& file_name, const std::string& mime_type, const std::vector<uint8_t>& bytes) override {
    downloads.push_back({file_name, mime_type, std::string(bytes.begin(), bytes.end())});
  }
  std::string now_iso8601() override { return "2026-12-03T12:00:00.000Z"; }
};

// The web app with a FakeHost, and the JavaScript side's part: files by index, and a model that
// answers runs.
struct TestApp {
  FakeHost host;
  AppState app;
  std::vector<std::vector<uint8_t>> files;  // by file index, what image_files.js would read
  int next_session = 1;

  TestApp() { app.host = &host; }

  // How the stand-in browser answers a model's self-test: with the recorded outputs (a runtime
  // that computes what LibTorch did), with one logit off by 0.01, or with another hash of the
  // record; or not at all (the test answers itself).
  enum class SelfTestAnswer { recorded, one_logit_off, wrong_hash, none };
  // Opens a model file's bytes and lets ORT "open" it; `sha` as the browser hashed the weights
  // (the card's own hash unless given); then answers the self-test.
  void open_model(const std::vector<uint8_t>& bytes, const std::string& name, const std::string* sha = nullptr,
                  SelfTestAnswer self_test = SelfTestAnswer::recorded);
  void answer_self_test(SelfTestAnswer answer);
  // Adds a file the user opened (path as webkitRelativePath gives it).
  int add_file(const std::string& path, std::vector<uint8_t> bytes);
  // Answers every pending read (bytes of the file; a file with no bytes fails to read).
  void answer_reads();
  // Answers every pending run, batched ([N, C, H, W] inputs) or not: each image's logits from
  // `logits_for` of its part of the input, a distance, a CAM.
  using LogitsFor = std::vector<float> (*)(const std::vector<float>& input);
  void answer_runs(LogitsFor logits_for, float ood_distance = 1.0f);
  // Reads and runs until nothing is pending (or `rounds` pass).
  void settle(LogitsFor logits_for, int rounds = 1000);
};

// The shipped chest X-ray model's bytes (models/shipped), read once.
const std::vector<uint8_t>& shipped_chest_model();

}  // namespace loupe_web::test
