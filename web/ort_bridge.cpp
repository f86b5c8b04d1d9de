#include "ort_bridge.h"

#include <cstdint>

#include <emscripten.h>

namespace {

// Module.ortBridge is the object app.mjs passed to createLoupe(). A failure here (no bridge,
// ORT files missing, wasm not compiling) is reported as a status, never thrown into the frame loop.
EM_JS(void, js_ort_bridge_load, (), {
  const report = (status, version, backend, threads, error) => Module["ccall"](
      "loupe_on_ort_status", null, ["number", "string", "string", "number", "string"],
      [status, version, backend, threads, error]);
  const bridge = Module["ortBridge"];
  if (!bridge) {
    report(2, "", "", 0, "no ORT bridge: the page did not pass ortBridge to createLoupe()");
    return;
  }
  bridge.load().then(
      (runtime) => report(1, runtime.version, runtime.backend, runtime.threads, ""),
      (error) => report(2, "", "", 0, String(error && error.message || error)));
});

EM_JS(void, js_ort_bridge_create_session, (int request, const uint8_t* bytes, int size, const char* ranges_json), {
  const report = (session, sha256, error) => Module["ccall"](
      "loupe_on_ort_session", null, ["number", "number", "string", "string"], [request, session, sha256, error]);
  const bridge = Module["ortBridge"];
  if (!bridge) {
    report(0, "", "no ORT bridge");
    return;
  }
  // A copy: the app frees its bytes when this returns; ORT may move this one to its worker.
  const model = HEAPU8.slice(bytes, bytes + size);
  const ranges = JSON.parse(UTF8ToString(ranges_json));
  Promise.all([bridge.sha256OfRanges(model, ranges), bridge.createSession(model)]).then(
      ([sha256, session]) => report(session.id, sha256, ""),
      (error) => report(0, "", String(error && error.message || error)));
});

EM_JS(void, js_ort_bridge_run, (int request, int session, const float* input, int count, const char* dims_json,
                                const char* outputs_json), {
  const report = (pointer, floats, layout, error) => Module["ccall"](
      "loupe_on_ort_run", null, ["number", "number", "number", "string", "string"],
      [request, pointer, floats, layout, error]);
  const bridge = Module["ortBridge"];
  if (!bridge) {
    report(0, 0, "[]", "no ORT bridge");
    return;
  }
  const tensor = HEAPF32.slice(input >> 2, (input >> 2) + count);
  const dims = JSON.parse(UTF8ToString(dims_json));
  const names = JSON.parse(UTF8ToString(outputs_json));
  let pending;
  try {
    pending = bridge.run(session, tensor, dims, names);
  } catch (error) {
    pending = Promise.reject(error);
  }
  pending.then((outputs) => {
    let total = 0;
    const layout = names.map((name) => {
      const entry = { name, dims: outputs[name].dims, offset: total };
      total += outputs[name].data.length;
      return entry;
    });
    const pointer = _malloc(Math.max(1, total) * 4);
    if (!pointer) {
      report(0, 0, "[]", "out of memory for the model's outputs (" + total + " floats)");
      return;
    }
    for (const entry of layout) HEAPF32.set(outputs[entry.name].data, (pointer >> 2) + entry.offset);
    report(pointer, total, JSON.stringify(layout), "");
  }, (error) => report(0, 0, "[]", String(error && error.message || error)));
});

EM_JS(void, js_ort_bridge_release_session, (int session), {
  const bridge = Module["ortBridge"];
  if (bridge) bridge.releaseSession(session).catch((error) => console.warn("Loupe: closing a session: " + error));
});

}  // namespace

namespace loupe_web {

void ort_bridge_load() { js_ort_bridge_load(); }

void ort_bridge_create_session(int request, const uint8_t* bytes, size_t size, const std::string& weight_ranges_json) {
  js_ort_bridge_create_session(request, bytes, static_cast<int>(size), weight_ranges_json.c_str());
}

void ort_bridge_run(int request, int session, const float* input, size_t count, const std::string& dims_json,
                    const std::string& outputs_json) {
  js_ort_bridge_run(request, session, input, static_cast<int>(count), dims_json.c_str(), outputs_json.c_str());
}

void ort_bridge_release_session(int session) { js_ort_bridge_release_session(session); }

}  // namespace loupe_web
