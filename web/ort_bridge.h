// C++ face of ort_bridge.js: ONNX Runtime Web, which lives in JavaScript.
//
// ORT Web's API is promise-based, and the app's frame loop must never block. So every call here
// returns at once, and the answer arrives later as a call to an exported C function (named
// loupe_on_ort_*), run by the browser's event loop between two frames. The app stores the answer
// in its state and the next frame draws it. No Asyncify, no threads in the app itself.
//
// The same shape carries inference later on: C++ asks with a request id and pointers into the wasm
// heap (input tensor, output buffer it owns); the bridge runs the session and copies the result in
// before calling loupe_on_ort_* with the id. JS views of the heap must be taken after every await,
// because memory growth replaces the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace loupe_web {

enum class OrtStatus { loading = 0, ready = 1, failed = 2 };

// Asks the bridge for ONNX Runtime Web (app.mjs starts the download as the page opens, so this
// usually just waits for it). Answered once by loupe_on_ort_status.
void ort_bridge_load();

// Opens a session on the model in [bytes, bytes + size) (copied: the caller may free them on
// return) and hashes its weights: `weight_ranges_json` is [[offset, size], ...] into the bytes.
// Answered once by loupe_on_ort_session with the same request id.
void ort_bridge_create_session(int request, const uint8_t* bytes, size_t size, const std::string& weight_ranges_json);

// Runs `session` on one input tensor (copied before this returns) of shape `dims_json` ([1, C, H, W]),
// asking for the outputs named in `outputs_json` (["probabilities", "cam"]). Answered once by
// loupe_on_ort_run with the same request id.
void ort_bridge_run(int request, int session, const float* input, size_t count, const std::string& dims_json,
                    const std::string& outputs_json);

// Closes a session (a model replaced by another). Runs already queued on it finish first.
void ort_bridge_release_session(int session);

}  // namespace loupe_web

// Defined by the app. `status` is an OrtStatus; `version`, `backend` ("wasm" or "webgpu") and
// `threads` are meaningful when ready, `error` when failed. The strings live only for the
// duration of the call.
extern "C" void loupe_on_ort_status(int status, const char* version, const char* backend, int threads,
                                    const char* error);

// A session opened (`session` > 0, `weights_sha256` = the hex SHA-256 of the weight ranges), or
// not (`session` = 0, `error` says why).
extern "C" void loupe_on_ort_session(int request, int session, const char* weights_sha256, const char* error);

// Outputs of a run: `data` (malloc'd, the app frees it) holds `count` floats, the outputs one after
// another as `layout_json` says: [{"name", "dims": [...], "offset": first float}, ...]. On failure
// `data` is null and `error` says why.
extern "C" void loupe_on_ort_run(int request, float* data, int count, const char* layout_json, const char* error);
