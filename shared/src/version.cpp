#include "loupe/version.h"

#include <opencv2/core/version.hpp>

#include "version_info.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/version.h>
#endif

namespace loupe {

const char* version() { return LOUPE_VERSION_STRING; }

BuildInfo build_info() {
  BuildInfo info;
  info.loupe_version = LOUPE_VERSION_STRING;
#ifdef __EMSCRIPTEN__
  info.target = "wasm";
  info.compiler = "Clang " __clang_version__;
  info.compiler += " (Emscripten " + std::to_string(__EMSCRIPTEN_major__) + "." +
                   std::to_string(__EMSCRIPTEN_minor__) + "." + std::to_string(__EMSCRIPTEN_tiny__) + ")";
#else
  info.target = "native";
#if defined(__clang__)
  info.compiler = "Clang " __clang_version__;
#elif defined(__GNUC__)
  info.compiler = "GCC " __VERSION__;
#else
  info.compiler = "unknown";
#endif
#endif
  info.opencv_version = CV_VERSION;
  return info;
}

}  // namespace loupe
