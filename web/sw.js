// Loupe's service worker: after one visit the page, ONNX Runtime and the shipped models work with
// the network off. It only ever talks to this origin (the CSP would stop anything else).
//
// Strategy: network first, cache as fallback. Online, every response of this origin is fetched
// as usual (so a rebuilt site is picked up at once) and a copy is stored; offline, the stored copy
// answers.
//
// Threads and privacy on any host: every response this worker hands to the page carries the
// headers of web/server.mjs (COOP/COEP for cross-origin isolation, hence ORT's wasm threads; the
// CSP that keeps every byte on this machine), added where the server did not send them. On a
// static host that sends no special headers (an intranet web server, GitHub Pages), app.mjs
// registers this worker at once and reloads the page one time to come under it (the
// coi-serviceworker pattern); behind scripts/serve nothing changes.
//
// On install the site is stored ahead of use, not just what the first page view fetched: the app
// shell, ORT's wasm files and the default model of models/models.json. The server answers these
// with 304 when the browser's HTTP cache already has them (ETag), so this costs little after the
// first page view. The other shipped models (about 9 MB each) are stored when first opened.

const CACHE = 'loupe-site-v2';

// web/server.mjs's securityHeaders (a browser test checks that the two stay equal), less
// Cache-Control, which only concerns the server's own caching.
const SECURITY_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Content-Security-Policy': [
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

// `response` with every security header the server left out (the same response when it sent them
// all, as scripts/serve does). Opaque and redirect responses cannot be rebuilt and are left alone.
function withSecurityHeaders(response) {
  if (response.type === 'opaque' || response.type === 'opaqueredirect' || response.status === 0) return response;
  const missing = Object.entries(SECURITY_HEADERS).filter(([name]) => !response.headers.has(name));
  if (missing.length === 0) return response;
  const headers = new Headers(response.headers);
  for (const [name, value] of missing) headers.set(name, value);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

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
      return withSecurityHeaders(response);
    } catch (error) {
      const cached = await caches.match(request, { ignoreSearch: true });
      if (cached) return withSecurityHeaders(cached);
      throw error;
    }
  })());
});
