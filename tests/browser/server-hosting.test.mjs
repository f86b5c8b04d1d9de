// web/server.mjs beyond the basics (server.test.mjs): the brotli copies web/precompress.mjs makes
// at install time (sent to clients that accept brotli, never when the file changed since), and the
// plain mode that serves like a static host without special headers (isolation.test.mjs runs the
// page against it).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';

import { precompress } from '../../web/precompress.mjs';
import { securityHeaders, startServer } from '../../web/server.mjs';

const root = mkdtempSync(path.join(tmpdir(), 'loupe-hosting-'));
// 200 KB of script-like text: big enough to get a copy, and it compresses.
const script = Buffer.from(Array.from({ length: 4000 }, (_, i) => `export const value${i} = ${i * 7};\n`).join(''));
let server, plain;

before(async () => {
  writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>t</title>');
  writeFileSync(path.join(root, 'big.js'), script);
  writeFileSync(path.join(root, 'small.js'), 'export {};\n');
  await precompress(root);
  server = await startServer({ root, port: 0 });
  plain = await startServer({ root, port: 0, plain: true });
});
after(async () => {
  await server?.close();
  await plain?.close();
  rmSync(root, { recursive: true, force: true });
});

// The raw response (no decompression), with the Accept-Encoding given.
function get(base, target, acceptEncoding) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: base.port, path: target, headers: { 'Accept-Encoding': acceptEncoding } }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('precompress writes a brotli copy named after the bytes it was made from, for big files only', () => {
  const copies = readdirSync(root).filter((name) => name.endsWith('.br'));
  assert.equal(copies.length, 1, `copies: ${copies.join(', ')}`);
  assert.match(copies[0], /^big\.js\.[0-9a-f]{16}\.br$/);
});

test('clients that accept brotli get the copy; others gzip; the bytes are the file', async () => {
  const br = await get(server, '/big.js', 'gzip, deflate, br');
  assert.equal(br.status, 200);
  assert.equal(br.headers['content-encoding'], 'br');
  assert.equal(br.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal(br.headers['cross-origin-embedder-policy'], 'require-corp');
  assert.ok(br.body.length < script.length / 4, `brotli copy of ${br.body.length} bytes`);
  assert.deepEqual(brotliDecompressSync(br.body), script);

  const gz = await get(server, '/big.js', 'gzip');
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.deepEqual(gunzipSync(gz.body), script);
  const none = await get(server, '/big.js', 'identity');
  assert.equal(none.headers['content-encoding'], undefined);
  assert.deepEqual(none.body, script);
});

test('a file changed after precompress is never answered with its old copy', async () => {
  const changed = Buffer.from(script);
  changed[10] = 'X'.charCodeAt(0);  // same size
  writeFileSync(path.join(root, 'big.js'), changed);
  utimesSync(path.join(root, 'big.js'), new Date(0), new Date(0));  // even with an older time than the copy
  const response = await get(server, '/big.js', 'br, gzip');
  assert.notEqual(response.headers['content-encoding'], 'br');
  assert.deepEqual(gunzipSync(response.body), changed);
});

test('plain mode sends none of the security headers (a static host), only the file', async () => {
  const response = await get(plain, '/index.html', 'identity');
  assert.equal(response.status, 200);
  for (const name of Object.keys(securityHeaders)) assert.equal(response.headers[name.toLowerCase()], undefined, name);
  assert.equal(response.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal((await get(plain, '/missing.js', 'identity')).headers['cross-origin-embedder-policy'], undefined);
});
