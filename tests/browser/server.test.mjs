// scripts/serve's server (web/server.mjs): the headers the app depends on, MIME types, and that
// it serves nothing outside its root.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { securityHeaders, startServer } from '../../web/server.mjs';

// A site of our own, inside a folder that also holds a file the server must never hand out.
const sandbox = mkdtempSync(path.join(tmpdir(), 'loupe-serve-'));
const root = path.join(sandbox, 'public');
let server;

before(async () => {
  mkdirSync(path.join(root, 'ort'), { recursive: true });
  writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>t</title>');
  writeFileSync(path.join(root, 'app.mjs'), 'export {};');
  writeFileSync(path.join(root, 'ort', 'ort.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  writeFileSync(path.join(root, 'model.onnx'), Buffer.alloc(4));
  writeFileSync(path.join(sandbox, 'package.json'), '{"secret": true}');
  symlinkSync(path.join(sandbox, 'package.json'), path.join(root, 'link.json'));
  server = await startServer({ root, port: 0 });
});
after(async () => {
  await server?.close();
  rmSync(sandbox, { recursive: true, force: true });
});

// A request sent byte for byte, so that `..` reaches the server unnormalised (fetch() and
// new URL() would resolve it on the client side).
function rawGet(target) {
  return new Promise((resolve, reject) => {
    const socket = connect(server.port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let response = '';
    socket.on('data', (chunk) => (response += chunk));
    socket.on('end', () => resolve({ status: Number(response.split(' ')[1]), text: response }));
    socket.on('error', reject);
  });
}

function head(target, method = 'HEAD') {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path: target, method }, (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    });
    req.on('error', reject);
    req.end();
  });
}

test('prints a URL on 127.0.0.1 with the port it picked', () => {
  assert.ok(server.port > 0);
  assert.equal(server.url, `http://127.0.0.1:${server.port}/`);
});

test('serves index.html for / with every security header', async () => {
  const response = await fetch(server.url);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
  for (const [name, value] of Object.entries(securityHeaders)) {
    assert.equal(response.headers.get(name), value, `header ${name}`);
  }
  assert.equal(response.headers.get('cross-origin-opener-policy'), 'same-origin');
  assert.equal(response.headers.get('cross-origin-embedder-policy'), 'require-corp');
  const csp = response.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /connect-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /https?:|\*/, 'the CSP must not allow any outside origin');
  assert.doesNotMatch(csp, /'unsafe-eval'|'unsafe-inline'/);
});

test('MIME types', async () => {
  const expected = {
    'ort/ort.wasm': 'application/wasm',
    'app.mjs': 'text/javascript; charset=utf-8',
    'model.onnx': 'application/octet-stream',
  };
  for (const [file, type] of Object.entries(expected)) {
    const response = await fetch(new URL(file, server.url));
    assert.equal(response.status, 200, file);
    assert.equal(response.headers.get('content-type'), type, file);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff', file);
  }
  const wasm = await fetch(new URL('ort/ort.wasm', server.url));
  assert.deepEqual([...new Uint8Array(await wasm.arrayBuffer())], [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
});

test('missing files are 404, with the security headers', async () => {
  const response = await fetch(new URL('no-such-file.js', server.url));
  assert.equal(response.status, 404);
  assert.equal(response.headers.get('cross-origin-embedder-policy'), 'require-corp');
  assert.equal((await head('/ort/')).statusCode, 404, 'a folder without index.html is not listed');
});

test('nothing outside the root is served', async () => {
  for (const target of ['/../package.json', '/ort/../../package.json', '/%2e%2e/package.json',
                        '/..%2fpackage.json', '/ort/%2E%2E/%2E%2E/package.json', '/..\\package.json',
                        '/link.json', '/%00', '//etc/passwd']) {
    const { status, text } = await rawGet(target);
    assert.ok(status >= 400 && status < 500, `GET ${target} answered ${status}`);
    assert.doesNotMatch(text, /secret|root:/, `GET ${target} leaked a file`);
  }
});

test('HEAD works, other methods do not', async () => {
  const response = await head('/index.html');
  assert.equal(response.statusCode, 200);
  assert.equal(Number(response.headers['content-length']), '<!doctype html><title>t</title>'.length);
  assert.equal((await head('/index.html', 'POST')).statusCode, 405);
});

test('scripts/serve prints its URL and serves the folder it is given', async () => {
  const serve = fileURLToPath(new URL('../../scripts/serve', import.meta.url));
  const child = spawn(serve, ['--root', root, '--port', '0', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [firstOutput] = await once(child.stdout, 'data');
    const url = String(firstOutput).match(/http:\/\/127\.0\.0\.1:\d+\//)?.[0];
    assert.ok(url, `no URL in scripts/serve's output: ${firstOutput}`);
    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cross-origin-embedder-policy'), 'require-corp');
  } finally {
    child.kill();
  }
});
