// The native-only fuzz targets (tests/fuzz/targets_native.cpp) outside libFuzzer: the committed
// regression inputs and the native fixtures' files, through the same functions as the fuzzers.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/targets.h"
#include "fixtures.h"
#include "format_fixtures.h"

namespace fs = std::filesystem;

TEST_CASE("native fuzz targets: regression inputs, fixtures and their damaged copies read without crashing",
          "[data][fuzz]") {
  const fs::path regressions = fs::path(__FILE__).parent_path().parent_path() / "fuzz" / "regressions";
  const loupe::test::TempDir dir;
  const std::vector<uint8_t> tflite = loupe::test::tiny_tflite();
  const std::string npz_path = loupe::test::write_npz(dir.path / "tiny.npz");
  std::ifstream in(npz_path, std::ios::binary);
  const std::vector<uint8_t> npz{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const std::string config = R"({"name": "x", "data": {"path": "d"}, "model": {"architecture": "simple_cnn"}})";
  std::vector<std::vector<uint8_t>> inputs = {{}, tflite, npz, {config.begin(), config.end()}};
  for (const auto* whole : {&tflite, &npz}) {  // cut copies
    for (size_t size : {size_t{5}, whole->size() / 3, whole->size() - 1}) inputs.emplace_back(whole->begin(), whole->begin() + static_cast<std::ptrdiff_t>(size));
  }
  size_t replayed = 0;
  for (const auto& target : loupe::fuzz::native_targets()) {
    CAPTURE(target.name);
    for (const auto& input : inputs) target.run(input.data(), input.size());
    const fs::path folder = regressions / target.name;
    if (!fs::is_directory(folder)) continue;
    for (const auto& entry : fs::directory_iterator(folder)) {
      if (entry.path().filename() == ".gitkeep") continue;
      CAPTURE(entry.path().string());
      std::ifstream file(entry.path(), std::ios::binary);
      const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
      target.run(bytes.data(), bytes.size());
      ++replayed;
    }
  }
  SUCCEED(replayed << " regression inputs replayed");
  CHECK(loupe::fuzz::native_targets().size() == 5);
}
