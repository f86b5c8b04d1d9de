// Skipped test cases. Catch2 v2 has no skip: a case that cannot check what it is for (its data
// set is missing) records why and returns, and the runner exits with 77, ctest's
// SKIP_RETURN_CODE, when a case skipped and none failed, so ctest and scripts/test report the
// test as skipped instead of passed. Cases that may skip carry the tag [real-data]; ctest runs
// them apart from the rest (tests/CMakeLists.txt), so a skip never hides the cases that ran.
#pragma once

#include <catch2/catch.hpp>
#include <sstream>
#include <string>

namespace loupe::test {

// Records that the current case skips, and why (printed again at the end of the run).
void record_skip(const std::string& reason);

// Catch::Session().run(), then 77 when a case skipped and nothing failed.
int run_tests(int argc, char** argv);

}  // namespace loupe::test

// Skips the rest of the case. SUCCEED keeps Catch's --warn NoAssertions from failing it: the
// runner's exit code, not a pass, reports it.
#define LOUPE_SKIP(reason)                         \
  do {                                             \
    std::ostringstream loupe_skip_reason;          \
    loupe_skip_reason << reason;                   \
    loupe::test::record_skip(loupe_skip_reason.str()); \
    SUCCEED("skipped: " << loupe_skip_reason.str());   \
    return;                                        \
  } while (0)
