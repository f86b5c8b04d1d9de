#include "ort_bridge.h"

#include <emscripten.h>

namespace {

// Module.ortBridge is the object app.mjs passed to createLoupe(). A failure here (no bridge,
// ORT files missing, wasm not compiling) is reported as a status, never thrown into the frame loop.
EM_JS(void, js_ort_bridge_load, (), {
  const report = (status, version, threads, error) => Module["ccall"](
      "loupe_on_ort_status", null, ["number", "string", "number", "string"],
      [status, version, threads, error]);
  const bridge = Module["ortBridge"];
  if (!bridge) {
    report(2, "", 0, "no ORT bridge: the page did not pass ortBridge to createLoupe()");
    return;
  }
  bridge.load().then(
      (runtime) => report(1, runtime.version, runtime.threads, ""),
      (error) => report(2, "", 0, String(error && error.message || error)));
});

}  // namespace

namespace loupe_web {

void ort_bridge_load() { js_ort_bridge_load(); }

}  // namespace loupe_web
