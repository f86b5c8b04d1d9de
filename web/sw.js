// Loupe's service worker: after one visit the page, ONNX Runtime and the shipped models work with
// the network off. It only ever talks to this origin (the CSP would stop anything else).
//
// Strategy: network first, cache as fallback. Online, every response of this origin is fetched
// as usual (so a rebuilt site is picked up at once) and a copy is stored; offline, the stored copy
// answers. Responses are stored with their headers, so a page served from the cache is still
// cross-origin isolated (COOP/COEP) and ORT keeps its threads.
//
// On install the site is stored ahead of use, not just what the first page view fetched: the app
// shell, ORT's wasm files and the default model of models/models.json. The server answers these
// with 304 when the browser's HTTP cache already has them (ETag), so this costs little after the
// first page view. The other shipped models (about 9 MB each) are stored when first opened.

const CACHE = 'loupe-site-v1';

const SHELL = [
  './',
  'index.html',
  'style.css',
  'favicon.svg',
  'app.mjs',
  'loupe.js',
  'loupe.wasm',
  'ort_bridge.js',
  'image_files.js',
  'model_files.js',
  'dicom.mjs',
  'dicomParser.min.js',
  'lossless.js',
  'charlswasm_decode.js',
  'charlswasm_decode.wasm',
  'ort/ort.wasm.min.mjs',
  'ort/ort-wasm-simd-threaded.mjs',
  'ort/ort-wasm-simd-threaded.wasm',
  'models/models.json',
];

async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(SHELL);
  const manifest = await (await cache.match('models/models.json'))?.json().catch(() => null);
  if (manifest?.default) await cache.add(`models/${manifest.default}`);
}

self.addEventListener('install', (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(request);
      if (response.ok && response.status === 200) {
        const copy = response.clone();
        event.waitUntil(caches.open(CACHE).then((cache) => cache.put(request, copy)));
      }
      return response;
    } catch (error) {
      const cached = await caches.match(request, { ignoreSearch: true });
      if (cached) return cached;
      throw error;
    }
  })());
});
