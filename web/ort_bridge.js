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

// Hex SHA-256 of the bytes in `ranges` ([[offset, size], ...]) of `bytes`, concatenated: how a
// model card's weights_sha256 is computed (the raw_data of every initializer, in file order).
export async function sha256OfRanges(bytes, ranges) {
  let total = 0;
  for (const [, size] of ranges) total += size;
  const joined = new Uint8Array(total);
  let at = 0;
  for (const [offset, size] of ranges) {
    joined.set(bytes.subarray(offset, offset + size), at);
    at += size;
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', joined));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// A real GPU for WebGPU, or null. Software adapters (SwiftShader's "fallback adapter") are
// refused: on a CPU the wasm backend with threads is faster.
export async function findGpuAdapter() {
  try {
    const adapter = await navigator.gpu?.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter || adapter.isFallbackAdapter || adapter.info?.isFallbackAdapter) return null;
    return adapter;
  } catch {
    return null;
  }
}

// The ORT build for each backend: the WebGPU one (ort.webgpu.min.mjs + its "asyncify" wasm, about
// 27 MB) is downloaded only on machines with a GPU; everyone else gets the plain wasm build.
const RUNTIMES = {
  wasm: { script: 'ort.wasm.min.mjs', providers: ['wasm'] },
  webgpu: { script: 'ort.webgpu.min.mjs', providers: ['webgpu', 'wasm'] },
};

// ORT session options for every model (measured: docs/BENCHMARKS.md, the web app).
export const SESSION_OPTIONS = Object.freeze({
  graphOptimizationLevel: 'all',
});

// `sessionOptions` are merged over SESSION_OPTIONS (scripts/bench-web compares settings this way).
export function createOrtBridge({ ortUrl = new URL('./ort/', import.meta.url).href, numThreads, proxy = true,
                                  webgpu = true, sessionOptions = {} } = {}) {
  let loading = null;
  const sessions = new Map();  // id -> { session, queue }
  // Where ORT's time goes (scripts/bench-web reads it): session creation, and runs as ORT's worker
  // answers them (ms, wall clock on the page's side, message round trip included).
  const stats = { sessions: 0, createMs: 0, runs: 0, images: 0, runMs: 0 };
  let nextSessionId = 1;
  let runtime = RUNTIMES.wasm;

  async function loadRuntime() {
    const started = performance.now();
    const backend = webgpu && (await findGpuAdapter()) ? 'webgpu' : 'wasm';
    runtime = RUNTIMES[backend];
    const ort = await import(`${ortUrl}${runtime.script}`);
    ort.env.wasm.wasmPaths = ortUrl;
    ort.env.wasm.numThreads = numThreads ?? defaultThreadCount();
    // On the wasm backend ORT runs in its own worker (started from its .mjs, this origin), so
    // inference never blocks the page's main thread: the UI keeps drawing while a batch runs.
    // (The proxy worker is wasm-only; WebGPU work is asynchronous on the GPU anyway.)
    ort.env.wasm.proxy = proxy && backend === 'wasm';

    const session = await ort.InferenceSession.create(selfTestModel(), { executionProviders: ['wasm'] });
    try {
      const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array([21]), [1]) });
      if (y.data[0] !== 42) throw new Error(`ONNX Runtime self-test: 21 + 21 gave ${y.data[0]}`);
    } finally {
      await session.release();
    }
    // The page's timeline (scripts/bench-web reads it): ORT fetched, compiled, its threads started.
    performance.measure('loupe:ort-load', { start: started, end: performance.now() });
    // numThreads is read back: ORT lowers it to 1 when threads turn out to be unavailable.
    return { ort, backend, version: ort.env.versions.web ?? ort.env.versions.common, threads: ort.env.wasm.numThreads };
  }

  function entry(id) {
    const found = sessions.get(id);
    if (!found) throw new Error(`no ONNX Runtime session #${id} (the model was closed)`);
    return found;
  }

  const bridge = {
    sha256OfRanges,

    // Resolves to { ort, backend, version, threads }; rejects with the reason ORT could not start.
    // Safe to call many times: loads once.
    load() {
      loading ??= loadRuntime();
      return loading;
    },

    // A session for the model in `bytes` (a Uint8Array this bridge may keep). Resolves to
    // { id, inputNames, outputNames }; rejects with ORT's reason (not an ONNX model, an operator
    // the wasm backend lacks, ...).
    // `overrides` go over the bridge's session options (scripts/bench-web compares settings).
    async createSession(bytes, overrides = {}) {
      const { ort } = await bridge.load();
      const started = performance.now();
      const session = await ort.InferenceSession.create(bytes, {
        ...SESSION_OPTIONS,
        ...sessionOptions,
        ...overrides,
        executionProviders: runtime.providers,  // WebGPU falls back to wasm for what it cannot run
      });
      stats.createMs += performance.now() - started;
      ++stats.sessions;
      performance.measure('loupe:session-create', { start: started, end: performance.now() });
      const id = nextSessionId++;
      sessions.set(id, { session, queue: Promise.resolve() });
      return { id, inputNames: session.inputNames, outputNames: session.outputNames };
    },

    stats,

    // Runs session `id` on one float32 input (dims[0] images); resolves to
    // { name: { data: Float32Array, dims } } for the requested outputs. Runs of one session are
    // queued: ORT's wasm backend runs one at a time.
    run(id, input, dims, outputNames) {
      const found = entry(id);
      const result = found.queue.then(async () => {
        const { ort } = await bridge.load();
        const feeds = { [found.session.inputNames[0]]: new ort.Tensor('float32', input, dims) };
        const started = performance.now();
        const outputs = await found.session.run(feeds, outputNames);
        stats.runMs += performance.now() - started;
        if (stats.runs < 3) performance.measure(`loupe:run-${stats.runs + 1}`, { start: started, end: performance.now() });
        ++stats.runs;
        stats.images += dims[0] ?? 1;
        const out = {};
        for (const name of outputNames) {
          const tensor = outputs[name];
          if (!tensor) throw new Error(`the model has no output '${name}'`);
          out[name] = { data: tensor.data, dims: [...tensor.dims] };
          tensor.dispose?.();
        }
        return out;
      });
      found.queue = result.catch(() => {});
      return result;
    },

    // A session created with { enableProfiling: true } prints its per-node timings (Chrome trace
    // JSON, one event per line) to the console of ORT's worker (scripts/bench-web --op-profile).
    async endProfiling(id) {
      const found = entry(id);
      await found.queue;
      found.session.endProfiling();
    },

    async releaseSession(id) {
      const found = sessions.get(id);
      if (!found) return;
      sessions.delete(id);
      await found.queue;
      await found.session.release();
    },
  };
  return bridge;
}
