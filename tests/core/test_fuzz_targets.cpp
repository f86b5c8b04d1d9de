// The fuzz targets (tests/fuzz/targets.h) outside libFuzzer, natively and as wasm: every committed
// regression input (tests/fuzz/regressions/<target>/, inputs that once crashed a reader) and a
// few inputs made here go through the same functions; any of them crashing fails the suite.
#include <catch2/catch.hpp>

#include <dirent.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/targets.h"
#include "test_support.h"

namespace {

std::vector<std::string> files_in(const std::string& folder) {
  std::vector<std::string> out;
  if (DIR* dir = opendir(folder.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      const std::string name = entry->d_name;
      if (name != "." && name != ".." && name != ".gitkeep") out.push_back(folder + "/" + name);
    }
    closedir(dir);
  }
  return out;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("fuzz targets: the committed regression inputs and made-up ones read without crashing", "[fuzz]") {
  const std::string regressions = LOUPE_FUZZ_REGRESSIONS_DIR;
  const std::vector<uint8_t> png = loupe::test::encode(loupe::test::make_pattern(12, 9, 3), ".png");
  const std::vector<std::vector<uint8_t>> made_up = {
      {}, png, std::vector<uint8_t>(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2)),
      std::vector<uint8_t>(300, 0xff), {'{', '}'}, {'[', '1', ']'}};
  size_t replayed = 0;
  for (const auto& target : loupe::fuzz::core_targets()) {
    CAPTURE(target.name);
    for (const auto& input : made_up) target.run(input.data(), input.size());
    for (const auto& path : files_in(regressions + "/" + target.name)) {
      CAPTURE(path);
      const std::vector<uint8_t> bytes = read_bytes(path);
      target.run(bytes.data(), bytes.size());
      ++replayed;
    }
  }
  SUCCEED(replayed << " regression inputs replayed");
  CHECK(loupe::fuzz::core_targets().size() == 5);
}
