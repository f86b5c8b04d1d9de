// Opening local images: the file picker (several files), the folder picker and what the app does
// with them. Test images are written by this test (a minimal PNG encoder below) next to a corrupt
// PNG, a non-image, and a PNG whose header claims 20000x20000 pixels; real chest X-rays from
// LOUPE_DATA_DIR are opened too when present. Everything is read inside the tab: no request may
// leave the local server.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { deflateSync } from 'node:zlib';

import {
  artifactsDir, encodeTinyModel, assertNoProblems, colourStats, decodePng, describeEvents, launchBrowser, openPage, repoRoot,
  requireBuiltSite, startSite, waitForApp,
} from './helpers.mjs';

// --- A minimal PNG encoder (not interlaced, filter 0): gray/RGB/RGBA, 8 or 16 bit ------------------
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
function chunk(type, data) {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}
function pngHeader(width, height, bitDepth, colourType) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)]);
}
// sample(x, y, c) -> integer in the bit depth's range.
function encodePng(width, height, channels, bitDepth, sample) {
  const colourType = { 1: 0, 3: 2, 4: 6 }[channels];
  const bytesPerSample = bitDepth / 8;
  const stride = width * channels * bytesPerSample;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; ++y) {
    for (let x = 0; x < width; ++x) {
      for (let c = 0; c < channels; ++c) {
        const at = y * (stride + 1) + 1 + (x * channels + c) * bytesPerSample;
        if (bitDepth === 16) raw.writeUInt16BE(sample(x, y, c), at);
        else raw[at] = sample(x, y, c);
      }
    }
  }
  return Buffer.concat([pngHeader(width, height, bitDepth, colourType), chunk('IDAT', deflateSync(raw)),
                        chunk('IEND', Buffer.alloc(0))]);
}

// The folder the test opens: two classes, plus three bad files that must not stop the batch.
function writeBatch(root) {
  const dir = path.join(root, 'batch');
  mkdirSync(path.join(dir, 'normal'), { recursive: true });
  mkdirSync(path.join(dir, 'pneumonia'), { recursive: true });
  const files = {
    'normal/gray8.png': encodePng(64, 48, 1, 8, (x, y) => (x * 4 + y) & 0xff),
    'normal/rgb8.png': encodePng(32, 40, 3, 8, (x, y, c) => [x * 8, y * 6, 128][c] & 0xff),
    'pneumonia/gray16.png': encodePng(40, 36, 1, 16, (x, y) => 1000 + x * 50 + y * 20),  // a narrow 16-bit range
    'pneumonia/rgba8.png': encodePng(24, 24, 4, 8, (x, y, c) => (c === 3 ? 200 : (x * 10 + c * 40) & 0xff)),
    'pneumonia/corrupt.png': encodePng(64, 64, 1, 8, (x) => x).subarray(0, 60),  // cut inside IDAT
    'huge.png': Buffer.concat([pngHeader(20000, 20000, 8, 0), chunk('IDAT', deflateSync(Buffer.alloc(100))),
                               chunk('IEND', Buffer.alloc(0))]),
    'notes.txt': Buffer.from('Not an image: a note that was in the folder.\n'),
  };
  for (const [name, bytes] of Object.entries(files)) writeFileSync(path.join(dir, name), bytes);
  return { dir, files };
}

const dataDir = path.resolve(repoRoot, process.env.LOUPE_DATA_DIR ?? '../shared/data');
const xrayDir = path.join(dataDir, 'chest-xray-covid');

let site;
let browser;
let scratch;
before(async () => {
  requireBuiltSite();
  site = await startSite();
  browser = await launchBrowser();
  scratch = mkdtempSync(path.join(tmpdir(), 'loupe-open-images-'));
});
after(async () => {
  await browser?.close();
  await site?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// Waits until every listed file is decoded or failed (and the list has `count` entries).
async function waitForBatch(page, events, count, timeout = 60_000) {
  try {
    await page.waitForFunction(
      (count) => {
        const images = window.loupe.state.images;
        // The list is published at most twice a second, the counts every frame: wait for both.
        return images.count === count && images.pending === 0 && images.list?.length === count &&
               images.list.every((e) => e.status !== 'pending' && e.status !== 'reading');
      },
      count, { timeout, polling: 250 });
  } catch (error) {
    const { list, rows, ...images } = await page.evaluate(() => window.loupe.state.images);
    assert.fail(`the batch did not settle: ${JSON.stringify(images)} (${list?.length} listed)\n${describeEvents(events)}`);
  }
  return page.evaluate(() => window.loupe.state.images);
}

test('opens a folder and files, lists them with sizes and errors, and steps through them', async () => {
  const { dir, files } = writeBatch(scratch);
  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events, { ort: false });

    // The folder picker: paths keep the folder and class sub-folder.
    await page.setInputFiles('#open-folder', dir);
    const names = Object.keys(files);
    let images = await waitForBatch(page, events, names.length);
    const byPath = new Map(images.list.map((entry) => [entry.path, entry]));
    for (const [name, bytes] of Object.entries(files)) {
      const entry = byPath.get(`batch/${name}`);
      assert.ok(entry, `batch/${name} is not listed; list: ${[...byPath.keys()].join(', ')}`);
      assert.equal(entry.size, bytes.length, `size of ${name}`);
    }
    const ok = (name, width, height, channels, bits) => {
      const entry = byPath.get(`batch/${name}`);
      assert.equal(entry.status, 'ok', `${name}: ${entry.status}`);
      assert.deepEqual([entry.width, entry.height, entry.channels, entry.bits], [width, height, channels, bits], name);
    };
    ok('normal/gray8.png', 64, 48, 1, 8);
    ok('normal/rgb8.png', 32, 40, 3, 8);
    ok('pneumonia/gray16.png', 40, 36, 1, 16);
    ok('pneumonia/rgba8.png', 24, 24, 4, 8);
    const failed = (name, pattern) => {
      const entry = byPath.get(`batch/${name}`);
      assert.equal(entry.ok, false, `${name} should have failed`);
      assert.match(entry.status, pattern, `${name}'s error message`);
    };
    failed('notes.txt', /format|signature|not a|unknown/i);
    failed('pneumonia/corrupt.png', /./);
    failed('huge.png', /20000/);
    assert.equal(images.ok, 4);
    assert.equal(images.failed, 3);

    // The first file (in path order) is selected and shown.
    assert.equal(images.selectedPath, 'batch/huge.png');
    assert.deepEqual(images.rows.map((i) => images.list[i].path), [...images.list.map((e) => e.path)].sort());

    // Next/previous with the keyboard: down, j, up, k move through the table as sorted.
    const select = async (key, expected) => {
      await page.keyboard.press(key);
      await page.waitForFunction((expected) => window.loupe.state.images.selectedPath === expected, expected,
                                 { timeout: 10_000 }).catch(async () =>
        assert.fail(`after ${key}: selected ${await page.evaluate(() => window.loupe.state.images.selectedPath)}, expected ${expected}`));
    };
    const sorted = [...byPath.keys()].sort();
    await select('ArrowDown', sorted[1]);
    await select('j', sorted[2]);
    await select('k', sorted[1]);
    await select('ArrowUp', sorted[0]);
    // A 16-bit gray image is shown through its window/level (auto: its own min..max).
    const gray16 = sorted.indexOf('batch/pneumonia/gray16.png');
    for (let i = 0; i < gray16; ++i) await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => {
      const { images } = window.loupe.state;
      return images.selectedPath === 'batch/pneumonia/gray16.png' && images.view.entry === images.selected &&
             images.view.texture.width > 0;
    }, null, { timeout: 10_000 });
    const view = (await page.evaluate(() => window.loupe.state.images)).view;
    assert.deepEqual([view.width, view.height, view.channels, view.bits], [40, 36, 1, 16]);
    assert.ok(view.window.width < 0.1, `auto window of a narrow 16-bit range: ${JSON.stringify(view.window)}`);

    // Zoom with the wheel over the image.
    await page.mouse.move(1000, 450);
    await page.mouse.wheel(0, -300);
    await page.waitForFunction(() => window.loupe.state.images.view.zoom > 1, null, { timeout: 10_000 })
      .catch(async () => assert.fail(`no zoom: ${JSON.stringify(await page.evaluate(() => window.loupe.state.images.view))}`));

    // The file picker adds to the batch (real X-rays when the data set is here, else a copy).
    const extra = existsSync(xrayDir)
      ? readdirSync(xrayDir).flatMap((cls) => readdirSync(path.join(xrayDir, cls)).slice(0, 2).map((f) => path.join(xrayDir, cls, f)))
      : [path.join(dir, 'normal/gray8.png')];
    if (!existsSync(xrayDir)) console.log(`# ${xrayDir} is missing: no real images opened`);
    await page.setInputFiles('#open-files', extra);
    images = await waitForBatch(page, events, names.length + extra.length);
    for (const file of extra) {
      const entry = images.list.find((e) => e.path === path.basename(file) && e.size === statSync(file).size);
      assert.ok(entry, `${file} is not listed`);
      assert.equal(entry.status, 'ok', `${file}: ${entry.status}`);
      assert.ok(entry.width >= 8 && entry.height >= 8);
    }
    // Show a real X-ray for the screenshot.
    const firstExtra = images.list.findIndex((e) => e.path === path.basename(extra[0]));
    const rows = images.rows;
    const steps = rows.indexOf(firstExtra) - rows.indexOf(images.selected);
    for (let i = 0; i < Math.abs(steps); ++i) await page.keyboard.press(steps > 0 ? 'ArrowDown' : 'ArrowUp');
    await page.waitForFunction((entry) => {
      const { images } = window.loupe.state;
      return images.selected === entry && images.view.entry === entry && images.view.texture.width > 0;
    }, firstExtra, { timeout: 10_000 });
    await waitForApp(page, events, { ort: true });

    const png = await page.screenshot({ type: 'png' });
    const screenshot = path.join(artifactsDir(), 'web-open-images.png');
    writeFileSync(screenshot, png);
    const { distinct } = colourStats(decodePng(png));
    assert.ok(distinct > 64, `the screenshot has only ${distinct} colours: ${screenshot}`);

    // The filter box: typing narrows the table (keys go to the box, not to next/previous).
    await page.mouse.click(500, 73);
    await page.keyboard.type('normal/');
    await page.waitForFunction(() => window.loupe.state.images.table.filter === 'normal/', null, { timeout: 10_000 })
      .catch(async () => assert.fail(`filter: ${JSON.stringify(await page.evaluate(() => window.loupe.state.images.table))}`));
    images = await page.evaluate(() => window.loupe.state.images);
    assert.deepEqual(images.rows.map((i) => images.list[i].path), ['batch/normal/gray8.png', 'batch/normal/rgb8.png']);

    assertNoProblems(events, site.origin);
    // The images were read locally: no request carried them anywhere, not even to this server.
    const posts = events.requests.filter((r) => r.method !== 'GET');
    assert.deepEqual(posts, [], 'requests other than GET');
  } finally {
    await context.close();
  }
});

// 2,000 images stream through one at a time, each decoded and classified: the wasm heap stays
// bounded (it never shrinks, so its final size is the peak) and the page keeps drawing. The model
// is the tiny hand-encoded one (helpers.mjs), so the test measures the app's streaming, not
// MobileNet's speed on this machine.
test('a batch of 2,000 images streams with bounded memory (LOUPE_BATCH_IMAGES)', async () => {
  const count = Number(process.env.LOUPE_BATCH_IMAGES ?? 2000);  // fewer for a quick run
  const dir = path.join(scratch, 'many');
  mkdirSync(dir, { recursive: true });
  // 512x512 gray with a per-file pattern, so no two files are the same.
  for (let i = 0; i < count; ++i) {
    const png = encodePng(512, 512, 1, 8, (x, y) => (x + y * 3 + i) & 0xff);
    writeFileSync(path.join(dir, `img-${String(i).padStart(4, '0')}.png`), png);
  }
  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events, { ort: false });
    const modelFile = path.join(scratch, 'tiny.onnx');
    writeFileSync(modelFile, encodeTinyModel());
    await page.setInputFiles('#open-model', modelFile);
    await page.waitForFunction(() => window.loupe.state.model?.name === 'tiny-test-model', null, { timeout: 90_000 });
    const before = await page.evaluate(() => window.loupe.state.memory.heapBytes);
    const started = Date.now();
    await page.setInputFiles('#open-folder', dir);
    const images = await waitForBatch(page, events, count, 240_000);
    await page.waitForFunction(({ count }) => {
      const { batch } = window.loupe.state;
      return batch.total === count && batch.done === count && batch.inFlight === 0;
    }, { count }, { timeout: 240_000, polling: 250 });
    const seconds = (Date.now() - started) / 1000;
    assert.equal(images.ok, count);
    const predicted = await page.evaluate(() => window.loupe.state.images.list.filter((e) => e.prediction?.status === 'done').length);
    assert.equal(predicted, count, 'every image classified');
    const { memory, frames } = await page.evaluate(() => window.loupe.state);
    const jsHeap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
    const mb = (bytes) => (bytes / 1048576).toFixed(1);
    console.log(`# ${count} images (512x512 PNG) decoded and classified in ${seconds.toFixed(1)} s; wasm heap ${mb(before)} MB before, ` +
                `${mb(memory.heapBytes)} MB peak; JS heap ${mb(jsHeap)} MB; ${frames} frames`);
    writeFileSync(path.join(artifactsDir(), 'web-open-images-memory.json'),
      JSON.stringify({ count, seconds, heapBytesBefore: before, heapBytesPeak: memory.heapBytes, jsHeapBytes: jsHeap }, null, 2));
    // 2,000 decoded 512x512 images would be 500 MB; streaming keeps one at a time.
    assert.ok(memory.heapBytes <= 64 * 1048576, `wasm heap grew to ${mb(memory.heapBytes)} MB`);
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

test('an image just under the decode limit and a 200 MB non-image: the page goes on, earlier results stay', async () => {
  const dir = path.join(scratch, 'limits');
  mkdirSync(path.join(dir, 'first'), { recursive: true });
  for (let i = 0; i < 3; ++i) {
    writeFileSync(path.join(dir, 'first', `small-${i}.png`), encodePng(48, 40, 1, 8, (x, y) => (x * 3 + y + i * 40) & 0xff));
  }
  // 8000 x 7999 = 63,992,000 pixels: under the 64-megapixel limit (decoded: 61 MB of gray samples).
  const nearLimit = path.join(dir, 'near-limit.png');
  writeFileSync(nearLimit, encodePng(8000, 7999, 1, 8, (x, y) => (x ^ y) & 0xff));
  // 200 MB that is no image at all, named like one.
  const big = path.join(dir, 'big.png');
  writeFileSync(big, Buffer.alloc(200 * 1048576, 0x5a));
  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events, { ort: false });
    const modelFile = path.join(scratch, 'tiny-limits.onnx');
    writeFileSync(modelFile, encodeTinyModel());
    await page.setInputFiles('#open-model', modelFile);
    await page.waitForFunction(() => window.loupe.state.model?.name === 'tiny-test-model', null, { timeout: 90_000 });
    await page.setInputFiles('#open-folder', path.join(dir, 'first'));
    await waitForBatch(page, events, 3);
    await page.waitForFunction(() => window.loupe.state.batch.done === 3 && window.loupe.state.batch.inFlight === 0,
                               null, { timeout: 60_000 });
    const earlier = await page.evaluate(() => window.loupe.state.images.list.map((e) => e.prediction?.probabilities));

    await page.setInputFiles('#open-files', [nearLimit, big]);
    const images = await waitForBatch(page, events, 5, 180_000);
    await page.waitForFunction(() => window.loupe.state.batch.inFlight === 0 && !window.loupe.state.batch.running,
                               null, { timeout: 180_000, polling: 250 });
    const state = await page.evaluate(() => window.loupe.state);
    const entry = (name) => state.images.list.find((e) => e.name === name);
    assert.equal(entry('near-limit.png').ok, true, `near-limit.png: ${entry('near-limit.png').status}`);
    assert.deepEqual([entry('near-limit.png').width, entry('near-limit.png').height], [8000, 7999]);
    assert.equal(entry('near-limit.png').prediction?.status, 'done', 'the near-limit image is classified too');
    assert.equal(entry('big.png').ok, false);
    assert.match(entry('big.png').status, /not a supported image/);
    // What was done before is still there, unchanged.
    assert.deepEqual(state.images.list.slice(0, 3).map((e) => e.prediction?.probabilities), earlier);
    assert.equal(images.ok, 4);
    const framesBefore = state.frames;
    await page.mouse.move(200, 200);
    await page.waitForFunction((n) => window.loupe.state.frames > n, framesBefore, { timeout: 10_000 });
    const mb = (bytes) => (bytes / 1048576).toFixed(0);
    console.log(`# near-limit 8000x7999 PNG decoded and classified; 200 MB non-image refused; wasm heap ${mb(state.memory.heapBytes)} MB`);
    writeFileSync(path.join(artifactsDir(), 'web-limits-memory.json'), JSON.stringify({ heapBytes: state.memory.heapBytes }, null, 2));
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});
