// Version and build information of the shared core, for the CLI's `--version`, the web page's
// "About" panel and model cards.
#pragma once

#include <string>

namespace loupe {

struct BuildInfo {
  std::string loupe_version;   // e.g. "0.1.0"
  std::string target;          // "native" or "wasm"
  std::string compiler;        // e.g. "GCC 12.2.0", "Clang 14.0.0 (Emscripten 3.1.6)"
  std::string opencv_version;  // the OpenCV the core was linked with, e.g. "4.6.0"
};

// The version of Loupe, e.g. "0.1.0".
const char* version();

// Everything a bug report or model card needs to know about this build.
BuildInfo build_info();

}  // namespace loupe
