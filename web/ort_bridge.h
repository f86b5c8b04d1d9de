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

namespace loupe_web {

enum class OrtStatus { loading = 0, ready = 1, failed = 2 };

// Asks the bridge for ONNX Runtime Web (app.mjs starts the download as the page opens, so this
// usually just waits for it). Answered once by loupe_on_ort_status.
void ort_bridge_load();

}  // namespace loupe_web

// Defined by the app. `status` is an OrtStatus; `version` and `threads` are meaningful when ready,
// `error` when failed. The strings live only for the duration of the call.
extern "C" void loupe_on_ort_status(int status, const char* version, int threads, const char* error);
