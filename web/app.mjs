// Entry point of the page: makes sure the page is cross-origin isolated where it can be, starts
// ONNX Runtime Web loading, then the C++ app (loupe.js/.wasm), handing it the canvas and the ORT
// bridge. Everything else happens in C++.
import createLoupe from './loupe.js';
import { createImageFiles } from './image_files.js';
import { createModelFiles } from './model_files.js';
import { createOrtBridge } from './ort_bridge.js';

const overlay = document.getElementById('loading');
const canvas = document.getElementById('canvas');

function showFatal(message) {
  overlay.hidden = false;
  overlay.classList.add('error');
  overlay.textContent = `Loupe cannot continue: ${message}`;
}

// ORT's wasm threads need cross-origin isolation (SharedArrayBuffer). scripts/serve sends the
// COOP/COEP headers; a static host that sends none gets them from the service worker (sw.js adds
// them to everything it serves), once it controls the page: register it and reload one time,
// before anything heavy is fetched. sessionStorage remembers the reload, so a browser where it
// does not help goes on single-threaded instead of reloading again; so does one where the worker
// fails to install or does not take control within ISOLATION_WAIT_MS (service workers blocked, a
// very slow first download): it then gives threads from the next visit on.
const ISOLATION_RELOAD = 'loupe.isolation-reload';
const ISOLATION_WAIT_MS = 10_000;
async function reloadUnderServiceWorker() {
  if (self.crossOriginIsolated) {
    sessionStorage.removeItem(ISOLATION_RELOAD);
    return false;
  }
  if (!('serviceWorker' in navigator) || !self.isSecureContext || sessionStorage.getItem(ISOLATION_RELOAD)) return false;
  const underControl = (async () => {
    const registration = await navigator.serviceWorker.register('./sw.js');
    if (navigator.serviceWorker.controller || registration.active) return;  // active: a load that bypassed it (hard reload)
    await new Promise((resolve, reject) => {
      navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true });
      const worker = registration.installing ?? registration.waiting;
      worker?.addEventListener('statechange', () => {
        if (worker.state === 'redundant') reject(new Error('the service worker could not install'));
      });
    });
  })();
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`it did not take control within ${ISOLATION_WAIT_MS / 1000} s`)), ISOLATION_WAIT_MS);
  });
  try {
    await Promise.race([underControl, timeout]);
  } catch (error) {
    console.warn(`Loupe: no cross-origin isolation from the service worker, so one thread this time (${error.message})`);
    return false;
  } finally {
    clearTimeout(timer);
  }
  sessionStorage.setItem(ISOLATION_RELOAD, String(Date.now()));
  location.reload();
  return true;
}

// Resolves once the first model has become active or been refused, and a second has passed for
// its first predictions (at most 30 s after the model arrived, whatever happens).
async function firstModelSettled(ortBridge, modelFiles) {
  await Promise.allSettled([ortBridge.load(), modelFiles.firstModel]);
  const settled = () => {
    const model = window.loupe?.state?.model;
    return model && model.loading === '' && (model.status === 'ready' || model.error !== '');
  };
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  for (let waited = 0; !settled() && waited < 30_000; waited += 250) await pause(250);
  await pause(1000);
}

async function start() {
  // window.loupe is the page's test and debugging hook; the app replaces `state` every frame.
  // scripts/bench-web compares ORT settings by defining loupeOrtOptions before the page runs.
  const ortBridge = createOrtBridge(globalThis.loupeOrtOptions ?? {});
  const modelFiles = createModelFiles();
  // Pickers and drag-and-drop work before the app runs; a dropped .onnx file opens as a model.
  const imageFiles = createImageFiles({ onModelFile: (file) => modelFiles.openFile(file) });
  window.loupe = { state: { ready: false }, ortBridge, imageFiles, modelFiles };

  // Start ORT's download (about 14 MB of wasm) now, beside loupe.wasm; the app asks for the result
  // once it runs. Errors are reported by the app, so only keep the promise from going unhandled here.
  ortBridge.load().catch(() => {});

  // Offline use after the first visit (sw.js). Registered once ORT and the first model are in use
  // (the model verified, the first predictions made), so its precaching finds the big files in the
  // HTTP cache instead of downloading them again, and does not compete with the first prediction
  // for the cores (it writes about 30 MB to Cache Storage).
  if ('serviceWorker' in navigator) {
    firstModelSettled(ortBridge, modelFiles).then(() =>
      navigator.serviceWorker.register('./sw.js').catch((error) =>
        console.warn(`Loupe: offline mode unavailable (service worker: ${error.message})`)));
  }

  // A lost WebGL context (GPU reset, too many tabs) cannot be recovered by this app: say so.
  canvas.addEventListener('webglcontextlost', (event) => {
    event.preventDefault();
    showFatal('the WebGL context was lost. Reload the page.');
  });

  try {
    window.loupe.module = await createLoupe({
      canvas,
      ortBridge,
      imageFiles,
      modelFiles,
      showFatal,                                    // the app's own unrecoverable errors
      onAbort: (what) => showFatal(String(what)),   // wasm traps, out of memory
    });
  } catch (error) {
    showFatal(error?.message ?? String(error));
    throw error;
  }
}

if (!(await reloadUnderServiceWorker())) await start();
