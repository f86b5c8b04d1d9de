# Third-party dependencies, found the same way for every target.
#
# Native: Debian's packages (scripts/setup installs them).
# Web:    OpenCV (core, imgproc, imgcodecs + zlib/libpng/libjpeg-turbo) and Dear ImGui built for
#         wasm by scripts/setup-wasm-deps into a cache outside the repo; its folder is passed as
#         LOUPE_WASM_DEPS_DIR. The same source versions as the native packages, so that decoding
#         and resizing are the same code on both sides.

if(EMSCRIPTEN)
  set(LOUPE_WASM_DEPS_DIR "" CACHE PATH "Output of scripts/setup-wasm-deps (holds prefix/ and imgui/)")
  if(NOT EXISTS "${LOUPE_WASM_DEPS_DIR}/.complete")
    message(FATAL_ERROR "LOUPE_WASM_DEPS_DIR='${LOUPE_WASM_DEPS_DIR}' is not a finished wasm dependency "
                        "build: run scripts/setup-wasm-deps and pass the folder it prints.")
  endif()
  # The Emscripten toolchain re-roots find_package() into its sysroot; allow our prefix too.
  list(APPEND CMAKE_FIND_ROOT_PATH "${LOUPE_WASM_DEPS_DIR}/prefix")
  set(OpenCV_DIR "${LOUPE_WASM_DEPS_DIR}/prefix/lib/cmake/opencv4" CACHE PATH "" FORCE)
endif()
find_package(OpenCV 4 REQUIRED COMPONENTS core imgproc imgcodecs)

# OpenJPEG (JPEG 2000 DICOM, shared/src/dicom_codecs.cpp): Debian's libopenjp2-7-dev natively, the
# same source built by scripts/setup-wasm-deps for wasm. Found by header and library rather than
# by Debian's OpenJPEGConfig.cmake, which names tools and JPIP libraries that are not installed.
if(NOT TARGET loupe::openjpeg)
  find_path(LOUPE_OPENJPEG_INCLUDE_DIR openjpeg.h PATH_SUFFIXES openjpeg-2.5 REQUIRED)
  find_library(LOUPE_OPENJPEG_LIBRARY NAMES openjp2 REQUIRED)
  add_library(loupe::openjpeg INTERFACE IMPORTED GLOBAL)
  target_include_directories(loupe::openjpeg SYSTEM INTERFACE "${LOUPE_OPENJPEG_INCLUDE_DIR}")
  target_link_libraries(loupe::openjpeg INTERFACE "${LOUPE_OPENJPEG_LIBRARY}")
endif()

# nlohmann-json and Catch2 are header-only Debian packages. An Emscripten build must not see
# /usr/include (glibc headers), so copy just those headers into the build tree.
function(loupe_header_only_target name header_dir)
  if(TARGET ${name})
    return()
  endif()
  add_library(${name} INTERFACE IMPORTED GLOBAL)
  if(EMSCRIPTEN)
    set(dest "${CMAKE_BINARY_DIR}/header-only")
    file(COPY "/usr/include/${header_dir}" DESTINATION "${dest}")
    target_include_directories(${name} SYSTEM INTERFACE "${dest}")
  endif()
endfunction()

if(EMSCRIPTEN)
  loupe_header_only_target(nlohmann_json::nlohmann_json nlohmann)
else()
  find_package(nlohmann_json 3 REQUIRED)
endif()

# LibTorch for the native training backend (Debian's libtorch-dev 1.13 here; a CUDA LibTorch 2.x
# via CMAKE_PREFIX_PATH on GPU machines). Found once at the top so its imported targets are
# visible to every native directory. The core alone (LOUPE_BUILD_NATIVE_TOOLS=OFF) does not look.
if(NOT EMSCRIPTEN AND LOUPE_BUILD_NATIVE_TOOLS)
  find_package(Torch REQUIRED)
endif()
