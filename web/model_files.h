// C++ face of model_files.js: the shipped models (models/models.json) and the user's own .onnx
// files ("Open model...", or dropped onto the page).
//
// Every model arrives the same way, between two frames, as a call to loupe_on_model_file with a
// malloc'd copy of its bytes in the wasm heap (the callee owns and frees it). The app then reads
// the model card with the shared core before handing the bytes to ONNX Runtime (ort_bridge.h).
#pragma once

#include <string>

namespace loupe_web {

// Starts forwarding models (those opened before the app ran included), then loads the shipped
// manifest: loupe_on_shipped_models gets it, and the default model arrives as a model file.
void model_files_listen();

// The browser's file picker for one .onnx file.
void model_files_open_picker();

// Loads one shipped model by the file name the manifest gives.
void model_files_open_shipped(const std::string& file);

}  // namespace loupe_web

// Defined by the app. On success `bytes` (malloc'd, owned by the callee) holds `size` bytes; on
// failure it is null and `error` says why. `source` is "shipped" or "file". Strings live only for
// the duration of the call.
extern "C" void loupe_on_model_file(unsigned char* bytes, double size, const char* name, const char* source,
                                    const char* error);
// The shipped models' manifest (JSON: {"default": file, "models": [{"file", "title", ...}]}), or
// an error when it could not be loaded (then `manifest_json` is empty).
extern "C" void loupe_on_shipped_models(const char* manifest_json, const char* error);
