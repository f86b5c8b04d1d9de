# FindOnnxRuntime: ONNX Runtime's native library and C/C++ API headers for the native build.
#
# No Debian 12 package has ONNX Runtime. scripts/setup-onnxruntime puts the library of the npm
# package onnxruntime-node and the headers of the newer Debian suite's libonnxruntime-dev into
# a cache folder; pass it as LOUPE_ONNXRUNTIME_DIR:
#
#   cmake --preset native -DLOUPE_ONNXRUNTIME_DIR=$(scripts/setup-onnxruntime --print-dir)
#   find_package(OnnxRuntime REQUIRED)
#   target_link_libraries(app PRIVATE OnnxRuntime::OnnxRuntime)
#
# Defines OnnxRuntime_FOUND, OnnxRuntime_VERSION (the library's, from the folder name when it is
# x.y.z), OnnxRuntime_API_VERSION (ORT_API_VERSION of the headers) and the imported target
# OnnxRuntime::OnnxRuntime. Without LOUPE_ONNXRUNTIME_DIR it looks in the default cache folder.

set(LOUPE_ONNXRUNTIME_DIR "" CACHE PATH
    "ONNX Runtime folder with include/ and lib/ (output of scripts/setup-onnxruntime)")

# A different folder than last time: look again instead of keeping the cached paths.
if(NOT "${LOUPE_ONNXRUNTIME_DIR}" STREQUAL "${_LOUPE_ONNXRUNTIME_DIR_SEARCHED}")
  unset(OnnxRuntime_INCLUDE_DIR CACHE)
  unset(OnnxRuntime_LIBRARY CACHE)
  set(_LOUPE_ONNXRUNTIME_DIR_SEARCHED "${LOUPE_ONNXRUNTIME_DIR}" CACHE INTERNAL "")
endif()

set(_loupe_ort_hints "${LOUPE_ONNXRUNTIME_DIR}")
if(NOT LOUPE_ONNXRUNTIME_DIR)
  if(DEFINED ENV{LOUPE_CACHE_DIR})
    file(GLOB _loupe_ort_hints "$ENV{LOUPE_CACHE_DIR}/onnxruntime/*")
  elseif(DEFINED ENV{HOME})
    file(GLOB _loupe_ort_hints "$ENV{HOME}/.cache/loupe/onnxruntime/*")
  endif()
endif()

find_path(OnnxRuntime_INCLUDE_DIR onnxruntime_cxx_api.h
          HINTS ${_loupe_ort_hints} PATH_SUFFIXES include include/onnxruntime NO_DEFAULT_PATH)
find_library(OnnxRuntime_LIBRARY NAMES onnxruntime libonnxruntime.so.1
             HINTS ${_loupe_ort_hints} PATH_SUFFIXES lib NO_DEFAULT_PATH)

if(OnnxRuntime_INCLUDE_DIR AND EXISTS "${OnnxRuntime_INCLUDE_DIR}/onnxruntime_c_api.h")
  file(STRINGS "${OnnxRuntime_INCLUDE_DIR}/onnxruntime_c_api.h" _loupe_ort_api REGEX "^#define ORT_API_VERSION [0-9]+")
  string(REGEX REPLACE "^#define ORT_API_VERSION ([0-9]+).*" "\\1" OnnxRuntime_API_VERSION "${_loupe_ort_api}")
endif()
if(OnnxRuntime_LIBRARY)
  get_filename_component(_loupe_ort_root "${OnnxRuntime_LIBRARY}" DIRECTORY)
  get_filename_component(_loupe_ort_root "${_loupe_ort_root}" DIRECTORY)
  get_filename_component(_loupe_ort_name "${_loupe_ort_root}" NAME)
  if(_loupe_ort_name MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$")
    set(OnnxRuntime_VERSION "${_loupe_ort_name}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OnnxRuntime
  REQUIRED_VARS OnnxRuntime_LIBRARY OnnxRuntime_INCLUDE_DIR OnnxRuntime_API_VERSION
  VERSION_VAR OnnxRuntime_VERSION
  REASON_FAILURE_MESSAGE
    "set LOUPE_ONNXRUNTIME_DIR to the folder printed by scripts/setup-onnxruntime (run it first: it needs apt and npm access once)")

# The headers' API version must not be newer than the library (the C API is append-only).
if(OnnxRuntime_FOUND AND OnnxRuntime_VERSION)
  string(REGEX REPLACE "^[0-9]+\\.([0-9]+)\\..*" "\\1" _loupe_ort_minor "${OnnxRuntime_VERSION}")
  if(OnnxRuntime_API_VERSION GREATER _loupe_ort_minor)
    message(FATAL_ERROR "ONNX Runtime headers declare ORT_API_VERSION ${OnnxRuntime_API_VERSION} but the library "
                        "is ${OnnxRuntime_VERSION}: rerun scripts/setup-onnxruntime")
  endif()
endif()

if(OnnxRuntime_FOUND AND NOT TARGET OnnxRuntime::OnnxRuntime)
  add_library(OnnxRuntime::OnnxRuntime SHARED IMPORTED)
  set_target_properties(OnnxRuntime::OnnxRuntime PROPERTIES
    IMPORTED_LOCATION "${OnnxRuntime_LIBRARY}"
    IMPORTED_SONAME "libonnxruntime.so.1"
    INTERFACE_INCLUDE_DIRECTORIES "${OnnxRuntime_INCLUDE_DIR}")
  # SYSTEM: the headers are third-party code and must not trip -Wconversion/-Werror.
  set_property(TARGET OnnxRuntime::OnnxRuntime PROPERTY INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${OnnxRuntime_INCLUDE_DIR}")
endif()
mark_as_advanced(OnnxRuntime_INCLUDE_DIR OnnxRuntime_LIBRARY)
