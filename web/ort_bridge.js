// ONNX Runtime Web behind a small promise API, for the C++ app (see ort_bridge.h/.cpp: EM_JS
// functions call these methods and report the results back through exported C callbacks).
// This file knows nothing of the Emscripten module, so it can be tested and reused on its own.
//
// ORT is the wasm-only build (ort.wasm.min.mjs, installed in ./ort/ next to this file). It loads
// ort-wasm-simd-threaded.mjs, which fetches ort-wasm-simd-threaded.wasm and is also the script of
// ORT's worker threads. Everything comes from this origin: the page's CSP allows nothing else.

// Threads for ORT's intra-op pool. ORT's own default is min(4, ceil(cores / 2)), i.e. one thread
// on a 2-core machine; the page does nothing else heavy while a model runs, so use every core.
// Without cross-origin isolation there is no SharedArrayBuffer: one thread, and say so.
export function defaultThreadCount() {
  if (!self.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
}

// A one-node ONNX model (y = x + x, float32[1]), encoded by hand: ORT only compiles its wasm and
// starts its threads at the first InferenceSession, so loading is not finished until one has run.
function selfTestModel() {
  const varint = (n) => {
    const bytes = [];
    for (; n > 127; n >>>= 7) bytes.push((n & 127) | 128);
    bytes.push(n);
    return bytes;
  };
  const integer = (field, value) => [...varint(field << 3), ...varint(value)];
  const message = (field, bytes) => [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
  const string = (field, text) => message(field, [...new TextEncoder().encode(text)]);
  // ValueInfoProto{name, type: TypeProto{tensor_type{elem_type: FLOAT, shape{dim{dim_value: 1}}}}}
  const floatVector = (name) =>
    [...string(1, name), ...message(2, message(1, [...integer(1, 1), ...message(2, message(1, integer(1, 1)))]))];
  const node = [...string(1, 'x'), ...string(1, 'x'), ...string(2, 'y'), ...string(3, 'add'), ...string(4, 'Add')];
  const graph = [...message(1, node), ...string(2, 'self_test'), ...message(11, floatVector('x')),
                 ...message(12, floatVector('y'))];
  // ModelProto{ir_version: 8, graph, opset_import{domain: "", version: 13}}
  return new Uint8Array([...integer(1, 8), ...message(7, graph), ...message(8, integer(2, 13))]);
}

export function createOrtBridge({ ortUrl = new URL('./ort/', import.meta.url).href, numThreads } = {}) {
  let loading = null;

  async function loadRuntime() {
    const ort = await import(`${ortUrl}ort.wasm.min.mjs`);
    ort.env.wasm.wasmPaths = ortUrl;
    ort.env.wasm.numThreads = numThreads ?? defaultThreadCount();
    ort.env.wasm.proxy = false;  // the app runs sessions itself; results arrive via promises

    const session = await ort.InferenceSession.create(selfTestModel(), { executionProviders: ['wasm'] });
    try {
      const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array([21]), [1]) });
      if (y.data[0] !== 42) throw new Error(`ONNX Runtime self-test: 21 + 21 gave ${y.data[0]}`);
    } finally {
      await session.release();
    }
    // numThreads is read back: ORT lowers it to 1 when threads turn out to be unavailable.
    return { ort, version: ort.env.versions.web ?? ort.env.versions.common, threads: ort.env.wasm.numThreads };
  }

  return {
    // Resolves to { ort, version, threads }; rejects with the reason ORT could not start.
    // Safe to call many times: loads once.
    load() {
      loading ??= loadRuntime();
      return loading;
    },
  };
}
