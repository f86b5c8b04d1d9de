// Where models come from: the ones shipped with the page (models/models.json next to index.html
// lists them, the first "default" one opens with the page) and the user's own .onnx files, opened
// with the "Open model..." picker (the hidden #open-model input in index.html) or dropped onto the
// page. Either way the bytes go to the app, which reads the model card (shared C++ core) before
// ONNX Runtime ever sees them. User files are read inside this tab; nothing is uploaded.
// This file knows nothing of the Emscripten module.

// Largest model read into memory. ORT Web's wasm heap is limited to 4 GB; a model this size would
// not run anyway, and a huge file picked by mistake should not be read just to be rejected.
export const MAX_MODEL_BYTES = 1024 * 1024 * 1024;

export function createModelFiles({ document: doc = document, baseUrl = new URL('./models/', import.meta.url).href } = {}) {
  let listener = null;
  const waiting = [];  // models opened before the app listened
  let firstDelivered;
  const firstModel = new Promise((resolve) => { firstDelivered = resolve; });

  function deliver(model) {
    if (listener) listener(model);
    else waiting.push(model);
    firstDelivered();
  }

  async function readFile(file) {
    if (file.size > MAX_MODEL_BYTES) {
      throw new Error(`${file.name}: file too large for a model (${file.size} bytes; at most ${MAX_MODEL_BYTES})`);
    }
    return new Uint8Array(await file.arrayBuffer());
  }

  function openFile(file) {
    readFile(file).then(
      (bytes) => deliver({ bytes, name: file.name, source: 'file' }),
      (error) => deliver({ bytes: null, name: file.name, source: 'file', error: error.message }));
  }

  async function fetchModel(name) {
    const response = await fetch(new URL(name, baseUrl));
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }

  // The manifest and the default model are fetched as soon as the page starts, while loupe.wasm
  // and ONNX Runtime compile: the first prediction does not wait for a download started late.
  const prefetched = new Map();  // file -> Promise<Uint8Array>, taken by openShipped()
  const manifestLoad = fetch(new URL('models.json', baseUrl), { cache: 'no-cache' }).then((response) => {
    if (!response.ok) throw new Error(`models/models.json: HTTP ${response.status}`);
    return response.json();
  });
  manifestLoad.then((manifest) => {
    if (typeof manifest?.default === 'string' && !manifest.default.includes('/')) {
      const bytes = fetchModel(manifest.default);
      bytes.catch(() => {});  // reported when openShipped() takes it
      prefetched.set(manifest.default, bytes);
    }
  }, () => {});

  const input = doc.getElementById('open-model');
  input?.addEventListener('change', () => {
    const [file] = input.files;
    input.value = '';  // picking the same file again fires another change
    if (file) openFile(file);
  });

  const models = {
    // Settles when the first model (shipped or opened) has arrived, loaded or not.
    firstModel,
    // listener({ bytes: Uint8Array | null, name, source: 'shipped' | 'file', error? }).
    listen(callback) {
      listener = callback;
      for (const model of waiting.splice(0)) listener(model);
    },
    openPicker() {
      input?.click();
    },
    // A dropped .onnx file (image_files.js hands these over instead of treating them as images).
    openFile,
    // The shipped models: { default: file, models: [{ file, title, ... }] }.
    manifest() {
      return manifestLoad;
    },
    // Fetches a shipped model (a file name from the manifest) and delivers it like an opened one.
    async openShipped(file) {
      const name = String(file);
      try {
        if (name.includes('/') || name.includes('\\')) throw new Error('not a plain file name');
        let bytes = prefetched.get(name);
        prefetched.delete(name);
        bytes = await (bytes ?? fetchModel(name));
        deliver({ bytes, name, source: 'shipped' });
      } catch (error) {
        deliver({ bytes: null, name, source: 'shipped', error: `cannot load models/${name}: ${error.message}` });
      }
    },
  };
  return models;
}
