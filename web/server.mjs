// Static file server for the built page (public/), for development and the browser tests.
// Node's standard library only. scripts/serve is the command-line face of startServer().
//
// The headers are part of the product, not decoration:
// - COOP + COEP make the page cross-origin isolated: SharedArrayBuffer, hence ORT's wasm threads.
//   Without them ORT silently falls back to one thread.
// - The CSP allows this origin only, so no script on the page could send an image anywhere; it is
//   what backs the "no image leaves this device" badge.
// A static host that cannot send headers (an intranet web server, GitHub Pages) still gets all of
// them: the service worker (sw.js) adds them to every response it serves, and the page reloads
// once to come under it. `plain: true` (scripts/serve --plain) serves like such a host, with none
// of these headers, to test exactly that.
import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

import { brotliCopyName, PRECOMPRESSED_EXTENSIONS, PRECOMPRESSED_MIN_BYTES } from './precompress.mjs';

const gzipAsync = promisify(gzip);

const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  // 'wasm-unsafe-eval': compiling WebAssembly, nothing else. No inline script, no eval.
  "script-src 'self' 'wasm-unsafe-eval'",
  // ORT's threads are module workers started from its own .mjs, on this origin.
  "worker-src 'self'",
  "style-src 'self'",
  // blob: and data: for images the user opens from disk (object URLs, thumbnails).
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const securityHeaders = Object.freeze({
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
});

export const mimeTypes = Object.freeze({
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
});

// Sent brotli-compressed where web/precompress.mjs made a copy at install time (the big wasm,
// scripts and models: ORT's wasm shrinks from 14 MB to 2.3 MB), else gzip-compressed to browsers
// that accept it (ORT's wasm: 3.7 MB). Model weights (float32) barely compress and are otherwise
// sent as they are.
const compressible = new Set(['.html', '.js', '.mjs', '.css', '.json', '.wasm', '.svg', '.txt', '.map']);

// Compressed copies, computed once per file version (path, size and modification time).
const gzipCache = new Map();
async function gzipped(file, version) {
  const key = `${file}\0${version}`;
  if (!gzipCache.has(key)) {
    gzipCache.set(key, readFile(file).then((bytes) => gzipAsync(bytes, { level: 9 })));
  }
  try {
    return await gzipCache.get(key);
  } catch (error) {
    gzipCache.delete(key);
    throw error;
  }
}

// The brotli copy web/precompress.mjs made of this file version ({ file, size }), or null: the
// file is hashed once per version and the copy used only when it was made from these bytes.
const brotliCopies = new Map();
function brotliCopy(file, version, size) {
  if (!PRECOMPRESSED_EXTENSIONS.has(path.extname(file).toLowerCase()) || size < PRECOMPRESSED_MIN_BYTES) return null;
  const key = `${file}\0${version}`;
  if (!brotliCopies.has(key)) {
    brotliCopies.set(key, readFile(file).then(async (bytes) => {
      const copy = brotliCopyName(file, bytes);
      const info = await stat(copy);
      return { file: copy, size: info.size };
    }).catch(() => null));
  }
  return brotliCopies.get(key);
}

function contentType(file) {
  return mimeTypes[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

// The file a request path names inside root, or null when it names nothing servable. Paths are
// resolved from the raw request target, so `..` segments (plain or percent-encoded) are refused
// outright instead of being normalised away, and symbolic links may not lead outside root.
async function resolveFile(root, requestTarget) {
  const rawPath = requestTarget.split('?')[0].split('#')[0];
  let decoded;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return { status: 400 };
  }
  if (!decoded.startsWith('/') || decoded.includes('\0') || decoded.includes('\\')) return { status: 400 };
  if (decoded.split('/').some((segment) => segment === '..')) return { status: 403 };

  let file = path.join(root, decoded);
  try {
    let info = await stat(file);
    if (info.isDirectory()) {
      file = path.join(file, 'index.html');
      info = await stat(file);
    }
    if (!info.isFile()) return { status: 404 };
    const real = await realpath(file);
    if (!real.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) return { status: 403 };
    return { status: 200, file: real, size: info.size, mtimeMs: info.mtimeMs };
  } catch {
    return { status: 404 };
  }
}

function sendText(res, status, text, baseHeaders, extraHeaders = {}) {
  res.writeHead(status, { ...baseHeaders, 'Content-Type': 'text/plain; charset=utf-8', ...extraHeaders });
  res.end(`${text}\n`);
}

const statusText = { 400: 'Bad request', 403: 'Forbidden', 404: 'Not found', 500: 'Internal server error' };

// Starts serving `root`. port 0 picks a free port; `plain` sends no security headers (a plain static
// host). Resolves to { server, url, port, close() }.
export async function startServer({ root = 'public', port = 8080, host = '127.0.0.1', log = false, plain = false } = {}) {
  const baseHeaders = plain ? {} : securityHeaders;
  const rootDir = await realpath(path.resolve(root)).catch(() => {
    throw new Error(`No site to serve at ${path.resolve(root)}: build and install the web target first`);
  });

  const server = createServer(async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendText(res, 405, 'Method not allowed', baseHeaders, { Allow: 'GET, HEAD' });
      return;
    }
    const found = await resolveFile(rootDir, req.url ?? '/');
    if (log) console.log(`${found.status} ${req.method} ${req.url}`);
    if (found.status !== 200) {
      sendText(res, found.status, statusText[found.status], baseHeaders);
      return;
    }
    // Revalidation ("Cache-Control: no-cache" asks for it on every use): an unchanged file costs a
    // 304 and no body. The service worker's precaching relies on this.
    const version = `${found.size}-${Math.floor(found.mtimeMs)}`;
    const etag = `"${version}"`;
    const headers = { ...baseHeaders, 'Content-Type': contentType(found.file), ETag: etag, Vary: 'Accept-Encoding' };
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const acceptEncoding = req.headers['accept-encoding'] ?? '';
    const brotli = /\bbr\b/.test(acceptEncoding) ? await brotliCopy(found.file, version, found.size) : null;
    if (brotli) {
      res.writeHead(200, { ...headers, 'Content-Encoding': 'br', 'Content-Length': brotli.size });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const stream = createReadStream(brotli.file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
      return;
    }
    const acceptsGzip = /\bgzip\b/.test(acceptEncoding);
    if (acceptsGzip && compressible.has(path.extname(found.file).toLowerCase())) {
      let body;
      try {
        body = await gzipped(found.file, version);
      } catch {
        sendText(res, 500, 'Internal server error', baseHeaders);
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Encoding': 'gzip', 'Content-Length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': found.size });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(found.file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port: actualPort } = server.address();
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    root: rootDir,
    port: actualPort,
    url: `http://${urlHost}:${actualPort}/`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
