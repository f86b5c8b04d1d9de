// Catch's implementation and its session live here, with the skip bookkeeping: every suite's
// main() only calls run_tests().
#define CATCH_CONFIG_RUNNER
#include "skip.h"

#include <cstdio>
#include <vector>

namespace loupe::test {
namespace {
std::vector<std::string>& skips() {
  static std::vector<std::string> list;
  return list;
}
}  // namespace

void record_skip(const std::string& reason) {
  skips().push_back(Catch::getResultCapture().getCurrentTestName() + ": " + reason);
}

int run_tests(int argc, char** argv) {
  const int failures = Catch::Session().run(argc, argv);
  if (skips().empty()) return failures;
  std::fprintf(stderr, "%zu skipped:\n", skips().size());
  for (const auto& s : skips()) std::fprintf(stderr, "  SKIPPED %s\n", s.c_str());
  return failures == 0 ? 77 : failures;
}

}  // namespace loupe::test
