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
#include "loupe/data/dataset.h"
#include "loupe/error.h"

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

// Found by tests/fuzz (regressions/npz/): a shape that is not a number escaped as std::invalid_argument
// ("loupe: error: stoll"); it is now a loupe::Error that names the array.
TEST_CASE("a damaged .npy shape inside an .npz is an error that names the array", "[data][fuzz][bad-input]") {
  const fs::path folder = fs::path(__FILE__).parent_path().parent_path() / "fuzz" / "regressions" / "npz";
  size_t checked = 0;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() != ".npz") continue;
    CAPTURE(entry.path().string());
    try {
      loupe::data::read_npz(entry.path().string());
      FAIL("read");
    } catch (const loupe::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(entry.path().string()) && Catch::Contains(".npy"));
      WARN(e.what());
    }
    ++checked;
  }
  CHECK(checked >= 1);
  // The shape itself: not a number, negative, or more data than there is.
  const loupe::test::TempDir dir;
  const auto npy_with_shape = [](const std::string& shape) {
    return loupe::test::npy_u8_with_shape(shape, std::vector<uint8_t>(18, 7));
  };
  const std::vector<uint8_t> labels = loupe::test::npy_u8({2, 1}, {0, 1});
  for (const auto& [shape, expected] : std::vector<std::pair<std::string, std::string>>{
           {"(2, x, 3)", "not a non-negative integer (' x')"},
           {"(2, -3, 3)", "not a non-negative integer (' -3')"},
           {"(2, 999, 9)", "array data truncated"},
           {"(2, 9999999999999, 9999999)", "array data truncated"}}) {
    CAPTURE(shape);
    const std::string path = loupe::test::write_zip(dir.path / "bad.npz", {{"train_images.npy", npy_with_shape(shape)},
                                                                          {"train_labels.npy", labels}});
    CHECK_THAT(loupe::test::error_of([&] { loupe::data::read_npz(path); }), Catch::Contains("train_images.npy: ") && Catch::Contains(expected));
  }
}
