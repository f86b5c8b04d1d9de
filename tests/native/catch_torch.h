// Include this instead of <catch2/catch.hpp> in the native suites.
//
// LibTorch's c10/util/Logging.h defines CHECK(condition) (glog's in Debian's build, c10's own
// otherwise). Included after Catch, it silently replaces Catch's CHECK with one that aborts the
// whole run on failure and reports nothing when it passes. Including LibTorch first and then Catch
// makes CHECK Catch's again (c10's other macros, CHECK_EQ etc., stay defined: use REQUIRE/CHECK).
#pragma once

#include <c10/util/Logging.h>
#include <torch/nn.h>

#undef CHECK
#include <catch2/catch.hpp>
