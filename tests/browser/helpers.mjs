// Shared pieces of the browser tests (node --test tests/browser/), run from the repository root
// against an already built and installed site:
//
//   const site = await startSite();                 // scripts/serve's server on a free port
//   const browser = await launchBrowser();          // headless /usr/bin/chromium
//   const { page, events } = await openPage(browser, site.url);
//   await waitForApp(page);                         // window.loupe.state.ready
//   assertNoProblems(events, site.origin);          // console/page errors, foreign requests
//
// Set LOUPE_PUBLIC_DIR to test a site installed elsewhere, LOUPE_ARTIFACTS_DIR for screenshots.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, inflateSync } from 'node:zlib';

import { chromium } from 'playwright-core';

import { startServer } from '../../web/server.mjs';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const publicDir = path.resolve(process.env.LOUPE_PUBLIC_DIR ?? path.join(repoRoot, 'public'));

export function artifactsDir() {
  const dir = path.resolve(repoRoot, process.env.LOUPE_ARTIFACTS_DIR ?? 'build/test-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

// Fails early, with the fix, when the site has not been built and installed.
export function requireBuiltSite() {
  const needed = ['index.html', 'app.mjs', 'loupe.js', 'loupe.wasm', 'ort/ort.wasm.min.mjs'];
  const missing = needed.filter((file) => !existsSync(path.join(publicDir, file)));
  assert.deepEqual(missing, [],
    `The web app is not installed in ${publicDir} (missing: ${missing.join(', ')}). Build it first:\n` +
    '  emcmake cmake -S . -B build/web -G Ninja -DLOUPE_WASM_DEPS_DIR=<dir> && ' +
    'cmake --build build/web && cmake --install build/web');
}

// The static server on a free port. Resolves to { url, origin, port, close() }.
export async function startSite({ root = publicDir } = {}) {
  const server = await startServer({ root, port: 0, host: '127.0.0.1' });
  return { ...server, origin: new URL(server.url).origin };
}

// The flags that make Debian's Chromium work headless and offline here: WebGL2 via SwiftShader
// (no GPU), and none of the background traffic to Google services.
export const chromiumArgs = Object.freeze([
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-swiftshader',
]);

// chromium.launch() gives every browser a fresh temporary profile.
export async function launchBrowser({ args = [] } = {}) {
  const executablePath = process.env.LOUPE_CHROMIUM ?? '/usr/bin/chromium';
  assert.ok(existsSync(executablePath), `No Chromium at ${executablePath}: apt-get install chromium`);
  return chromium.launch({ executablePath, args: [...chromiumArgs, ...args] });
}

// A new context + page that records everything a test may want to assert on:
//   requests       every request of the context (pages and their workers): { url, method, resourceType }
//   failedRequests requests that got no response: { url, failure }
//   console        console messages, workers' included: { type, text, location }
//   pageErrors     uncaught exceptions and unhandled rejections: { message, stack }
// `locale` sets navigator.language(s), e.g. 'id-ID'.
export async function openPage(browser, url, { viewport = { width: 1280, height: 800 }, deviceScaleFactor = 1, locale } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor, ...(locale ? { locale } : {}) });
  const page = await context.newPage();
  const events = { requests: [], failedRequests: [], console: [], pageErrors: [] };
  context.on('request', (request) =>
    events.requests.push({ url: request.url(), method: request.method(), resourceType: request.resourceType() }));
  context.on('requestfailed', (request) =>
    events.failedRequests.push({ url: request.url(), failure: request.failure()?.errorText }));
  // Messages from the page's workers (ORT's threads) arrive here too, marked by worker().
  page.on('console', (message) => events.console.push({
    type: message.type(),
    text: `${message.worker() ? '[worker] ' : ''}${message.text()}`,
    location: message.location(),
  }));
  page.on('pageerror', (error) => events.pageErrors.push({ message: error.message, stack: error.stack }));
  if (url) await page.goto(url);
  return { context, page, events };
}

// Waits until the C++ app has drawn frames (and, by default, ONNX Runtime Web has settled).
// On timeout the message carries the last state and the console, which usually say why.
export async function waitForApp(page, events, { minFrames = 1, ort = true, timeout = 90_000 } = {}) {
  try {
    await page.waitForFunction(
      ({ minFrames, ort }) => {
        const state = window.loupe?.state;
        return state?.ready && state.frames >= minFrames && (!ort || state.ort?.status !== 'loading');
      },
      { minFrames, ort },
      { timeout, polling: 100 });
  } catch (error) {
    const state = await page.evaluate(() => window.loupe?.state).catch(() => undefined);
    assert.fail(`The app did not become ready within ${timeout} ms (${error.message.split('\n')[0]}).\n` +
                `window.loupe.state = ${JSON.stringify(state)}\n${describeEvents(events)}`);
  }
  return page.evaluate(() => window.loupe.state);
}

export function describeEvents(events) {
  if (!events) return '';
  const lines = [
    ...events.pageErrors.map((e) => `page error: ${e.message}`),
    ...events.console.map((m) => `console.${m.type}: ${m.text}`),
    ...events.failedRequests.map((r) => `request failed: ${r.url} (${r.failure})`),
  ];
  return lines.length ? lines.join('\n') : '(no console output, page errors or failed requests)';
}

// The checks every page of the app must pass: nothing went wrong, nothing left the machine.
export function assertNoProblems(events, origin) {
  const errors = events.console.filter((m) => m.type === 'error');
  assert.deepEqual(errors.map((m) => m.text), [], `Console errors:\n${describeEvents(events)}`);
  assert.deepEqual(events.pageErrors.map((e) => e.message), [], `Page errors:\n${describeEvents(events)}`);
  assert.deepEqual(events.failedRequests, [], `Failed requests:\n${describeEvents(events)}`);
  assertAllRequestsLocal(events, origin);
}

// Every request went to `origin` (blob: and data: URLs never leave the page).
export function assertAllRequestsLocal(events, origin) {
  assert.ok(events.requests.length > 0, 'No requests were recorded at all: is the recorder attached?');
  const foreign = events.requests.filter(
    ({ url }) => new URL(url).origin !== origin && !url.startsWith('blob:') && !url.startsWith('data:'));
  assert.deepEqual(foreign.map((r) => r.url), [], `Requests left ${origin}`);
}

// Minimal PNG decoder (8-bit greyscale/RGB/RGBA, not interlaced: what Chromium's screenshots are),
// so tests can look at pixels without a dependency. Returns { width, height, channels, pixels }.
export function decodePng(buffer) {
  assert.equal(buffer.readUInt32BE(0), 0x89504e47, 'not a PNG');
  let offset = 8;
  let width, height, channels;
  const idat = [];
  while (offset < buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString('ascii', offset + 4, offset + 8);
    const data = buffer.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [bitDepth, colourType, , , interlace] = data.subarray(8, 13);
      channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colourType];
      assert.ok(bitDepth === 8 && channels && interlace === 0, `unsupported PNG (depth ${bitDepth}, colour type ${colourType})`);
    } else if (type === 'IDAT') {
      idat.push(data);
    }
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; ++y) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; ++x) {
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      pixels[y * stride + x] = (line[x] + predictor) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

// A PNG of 8-bit pixels (channels 1 gray, 3 RGB, 4 RGBA), for synthetic test images.
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
export function encodePng({ width, height, channels, pixels }) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;
  header[9] = { 1: 0, 3: 2, 4: 6 }[channels];
  const stride = width * channels;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; ++y) pixels.copy(raw, y * (stride + 1) + 1, y * stride, (y + 1) * stride);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header),
                        chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// How many distinct colours an image has, and the share of the most common one.
export function colourStats({ pixels, channels }) {
  const counts = new Map();
  for (let i = 0; i < pixels.length; i += channels) {
    const key = pixels.readUIntBE(i, Math.min(channels, 3));
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const total = pixels.length / channels;
  return { distinct: counts.size, dominantShare: Math.max(...counts.values()) / total };
}

// A hand-encoded ONNX model with a Loupe model card, for "Open model..." tests: input
// [batch, 3, size, size] -> GlobalAveragePool -> Flatten -> logits [batch, 3] (the channel means),
// classes Covid-19 / No_findings / Pneumonia. Options make it bad on purpose: no card, a card whose
// input size differs from the graph's, an operator ONNX Runtime does not have.
const varint = (n) => {
  const bytes = [];
  for (; n > 127; n = Math.floor(n / 128)) bytes.push((n % 128) | 128);
  bytes.push(n);
  return bytes;
};
const integer = (field, value) => [...varint(field << 3), ...varint(value)];
const message = (field, bytes) => [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
const string = (field, text) => message(field, [...new TextEncoder().encode(text)]);
const dim = (value) => (typeof value === 'number' ? message(1, integer(1, value)) : message(1, string(2, value)));
const tensorValue = (name, dims) =>
  [...string(1, name), ...message(2, message(1, [...integer(1, 1), ...message(2, dims.flatMap(dim))]))];
// TensorProto: dims (1), data_type (2: 1 float, 2 uint8, 3 int8), name (8), raw_data (9).
const tensor = (name, dataType, dims, raw) =>
  [...dims.flatMap((d) => integer(1, d)), ...integer(2, dataType), ...string(8, name), ...message(9, [...raw])];
// NodeProto: inputs (1), outputs (2), name (3, optional), op_type (4).
const node = (inputs, outputs, op, name) =>
  [...inputs.flatMap((n) => string(1, n)), ...outputs.flatMap((n) => string(2, n)), ...(name ? string(3, name) : []),
   ...string(4, op)];
// The protobuf wire pieces above, for tests that encode other small models (int8.test.mjs).
export const onnxWire = Object.freeze({ integer, message, string, tensorValue, tensor, node });

export function encodeTinyModel({ card = true, cardSize = 8, graphSize = 8, op = 'GlobalAveragePool' } = {}) {
  const graph = [
    ...message(1, node(['input'], ['pooled'], op)),
    ...message(1, node(['pooled'], ['logits'], 'Flatten')),
    ...string(2, 'tiny'),
    ...message(11, tensorValue('input', ['batch', 3, graphSize, graphSize])),
    ...message(12, tensorValue('logits', ['batch', 3])),
  ];
  const cardJson = {
    format: 'loupe.model_card', format_version: 1, name: 'tiny-test-model', version: '1',
    architecture: 'tiny', model: { architecture: 'tiny', num_classes: 3 },
    class_names: ['Covid-19', 'No_findings', 'Pneumonia'],
    input: { name: 'input', layout: 'NCHW', dtype: 'float32', batch: 'dynamic', channels: 3, height: cardSize, width: cardSize },
    preprocess: { color: 'rgb', width: cardSize, height: cardSize, resize: 'stretch', interpolation: 'area',
                  crop_fraction: 1.0, pad_value: 0.0, mean: [0.5], std: [0.5] },
    outputs: [{ name: 'logits', shape: ['batch', 3], description: 'channel means' }],
    training_data: null, test_metrics: null, weights_sha256: '',
    intended_use: 'browser tests', disclaimer: 'Not a diagnostic device.',
  };
  const metadata = card ? message(14, [...string(1, 'loupe.model_card'), ...string(2, JSON.stringify(cardJson))]) : [];
  return Buffer.from([...integer(1, 8), ...string(2, 'loupe-test'), ...message(7, graph),
                      ...message(8, integer(2, 13)), ...metadata]);
}

// --- driving the page: frames, clicks, models, batches ------------------------------------------

// Waits until the page has drawn `count` more frames (each one reads the input since the last).
export async function framesPass(page, count = 2) {
  const start = await page.evaluate(() => window.loupe.state.frames);
  await page.waitForFunction((want) => window.loupe.state.frames >= want, start + count, { timeout: 30_000, polling: 20 });
}

// Clicks one of the app's buttons where the app drew it (state.widgets: x, y, width, height):
// moves onto it, presses and releases, each in its own frame. ImGui reads the mouse once per
// frame, so a move, press and release that all land between two frames of a slow (software-
// rendered, loaded) page can reach it as a press somewhere else. `beforeClick(page, id)` runs once
// the widget exists (e.g. to scroll it into view).
export async function clickWidget(page, id, { beforeClick } = {}) {
  await page.waitForFunction((id) => window.loupe.state.widgets?.[id], id, { timeout: 10_000 });
  if (beforeClick) await beforeClick(page, id);
  const [x, y, width, height] = await page.evaluate((id) => window.loupe.state.widgets[id], id);
  await page.mouse.move(x + width / 2, y + height / 2);
  await framesPass(page);
  await page.mouse.down();
  await framesPass(page);
  await page.mouse.up();
  await framesPass(page);
}

// Waits until the active model is ready (and, with want.name, is that model), or until opening a
// model failed with a message naming want.errorFor; returns the model's state.
export async function waitForModel(page, events, want = {}, timeout = 90_000) {
  try {
    await page.waitForFunction((want) => {
      const model = window.loupe?.state?.model ?? {};
      if (want.errorFor) return model.loading === '' && model.error.includes(want.errorFor);
      return model.status === 'ready' && (!want.name || model.name === want.name);
    }, want, { timeout, polling: 100 });
  } catch (error) {
    const model = await page.evaluate(() => window.loupe?.state?.model).catch(() => undefined);
    assert.fail(`the model did not get there (${error.message.split('\n')[0]}): ${JSON.stringify(model)}\n${describeEvents(events)}`);
  }
  return page.evaluate(() => window.loupe.state.model);
}

// Waits until the active model has classified every decodable image of a batch of `count` files.
export async function waitForPredictions(page, events, count, timeout = 180_000) {
  try {
    await page.waitForFunction(
      (count) => {
        const { images, batch } = window.loupe.state;
        return images.count === count && images.pending === 0 && images.list?.length === count &&
          batch.total > 0 && batch.done === batch.total && batch.inFlight === 0 &&
          images.list.filter((e) => e.prediction?.status === 'done').length === batch.total;
      },
      count, { timeout, polling: 250 });
  } catch (error) {
    const { images: { list, rows, ...images }, batch } = await page.evaluate(() => window.loupe.state);
    assert.fail(`the batch was not classified: ${JSON.stringify({ images, batch })}\n${describeEvents(events)}`);
  }
  return page.evaluate(() => window.loupe.state);
}

