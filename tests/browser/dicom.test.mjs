// DICOM in the browser: files the test writes from a real chest X-ray (16-bit with Rescale
// Intercept, MONOCHROME2 and MONOCHROME1, one without a file extension) are parsed by the page
// (dicom-parser, web/dicom.mjs), decoded by the shared core and classified; the probabilities
// equal `loupe predict`'s on the same files (natively DCMTK reads them, the same core does the
// pixel math). A multi-frame file is classified on its first frame and the row says so; a file whose
// Modality contradicts the shipped chest model's card (CR/DX, CHEST, PA/AP) gets the warning in the
// page and in loupe predict's output, one that agrees does not. A damaged file and a JPEG 2000 file
// without a codestream get messages naming the problem, and the patient's name written into every
// file never reaches the page's state or the CSV.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  artifactsDir, assertNoProblems, decodePng, describeEvents, launchBrowser, openPage, publicDir, repoRoot,
  requireBuiltSite, startSite, waitForApp,
} from './helpers.mjs';

const dataDir = path.resolve(repoRoot, process.env.LOUPE_DATA_DIR ?? '../shared/data');
const xrayDir = path.join(dataDir, 'chest-xray-covid');
const loupeCli = path.resolve(repoRoot, process.env.LOUPE_CLI ?? 'build/native/native/loupe');
const PATIENT = 'Doe^Jane-Secret';

// --- a minimal DICOM Part 10 writer (explicit VR little endian unless told otherwise) -------------
const LONG_VRS = new Set(['OB', 'OW', 'UN', 'SQ', 'UT']);
function element(group, elem, vr, value) {
  let data = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value);
  if (data.length % 2) data = Buffer.concat([data, Buffer.from(vr === 'UI' || vr === 'OB' ? [0] : [0x20])]);
  const head = Buffer.alloc(LONG_VRS.has(vr) ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(elem, 2);
  head.write(vr, 4, 'latin1');
  if (LONG_VRS.has(vr)) head.writeUInt32LE(data.length, 8);
  else head.writeUInt16LE(data.length, 6);
  return Buffer.concat([head, data]);
}
const us = (n) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
function writeDicom({ rows, columns, pixels, bitsStored = 16, photometric = 'MONOCHROME2', intercept = 0,
                      transferSyntax = '1.2.840.10008.1.2.1', frames = 1, modality = 'DX', viewPosition = '' }) {
  const meta = Buffer.concat([
    element(0x0002, 0x0001, 'OB', [0, 1]),
    element(0x0002, 0x0002, 'UI', '1.2.840.10008.5.1.4.1.1.1.1'),
    element(0x0002, 0x0003, 'UI', '1.2.826.0.1.3680043.2.1125.1'),
    element(0x0002, 0x0010, 'UI', transferSyntax),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length);
  const body = [
    element(0x0008, 0x0016, 'UI', '1.2.840.10008.5.1.4.1.1.1.1'),
    element(0x0008, 0x0060, 'CS', modality),
    element(0x0010, 0x0010, 'PN', PATIENT),
    element(0x0010, 0x0020, 'LO', 'ID-424242'),
    ...(viewPosition ? [element(0x0018, 0x5101, 'CS', viewPosition)] : []),
    element(0x0028, 0x0002, 'US', us(1)),
    element(0x0028, 0x0004, 'CS', photometric),
  ];
  if (frames > 1) body.push(element(0x0028, 0x0008, 'IS', String(frames)));
  body.push(
    element(0x0028, 0x0010, 'US', us(rows)),
    element(0x0028, 0x0011, 'US', us(columns)),
    element(0x0028, 0x0100, 'US', us(16)),
    element(0x0028, 0x0101, 'US', us(bitsStored)),
    element(0x0028, 0x0102, 'US', us(bitsStored - 1)),
    element(0x0028, 0x0103, 'US', us(0)),
    element(0x0028, 0x1052, 'DS', String(intercept)),
    element(0x0028, 0x1053, 'DS', '1'),
    element(0x7fe0, 0x0010, 'OW', pixels));
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), element(0x0002, 0x0000, 'UL', groupLength), meta, ...body]);
}

let site, browser, scratch;
before(async () => {
  requireBuiltSite();
  scratch = mkdtempSync(path.join(tmpdir(), 'loupe-dicom-'));
  site = await startSite();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await site?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test('DICOM files are parsed in the page, classified like loupe predict, and keep the patient out', async (t) => {
  if (!existsSync(xrayDir)) return t.skip(`no data at ${xrayDir} (set LOUPE_DATA_DIR)`);
  assert.ok(existsSync(loupeCli), `no native CLI at ${loupeCli}: build it first (scripts/build native)`);
  const manifest = JSON.parse(readFileSync(path.join(publicDir, 'models/models.json'), 'utf8'));
  const model = path.join(publicDir, 'models', manifest.default);

  // A real X-ray (8-bit gray PNG) as 12-bit stored values with a Rescale Intercept, as a detector
  // would write it; MONOCHROME1 stores the inverse.
  const cls = readdirSync(xrayDir).sort()[0];
  const png = decodePng(readFileSync(path.join(xrayDir, cls, readdirSync(path.join(xrayDir, cls)).sort()[0])));
  assert.equal(png.channels, 1);
  const stored = (invert) => {
    const out = Buffer.alloc(png.width * png.height * 2);
    for (let i = 0; i < png.width * png.height; ++i) out.writeUInt16LE((invert ? 255 - png.pixels[i] : png.pixels[i]) * 16 + 3, i * 2);
    return out;
  };
  const dir = path.join(scratch, 'dicom');
  mkdirSync(dir, { recursive: true });
  const files = {
    'xray-mono2.dcm': writeDicom({ rows: png.height, columns: png.width, pixels: stored(false), bitsStored: 12, intercept: -1024 }),
    'xray-mono1.dcm': writeDicom({ rows: png.height, columns: png.width, pixels: stored(true), bitsStored: 12,
                                   photometric: 'MONOCHROME1', intercept: -1024 }),
    'IM000001': writeDicom({ rows: png.height, columns: png.width, pixels: stored(false), bitsStored: 12, intercept: -1024,
                             viewPosition: 'PA' }),
    // The chest model's card says CR/DX: the same X-ray labelled MR is classified, with a warning.
    'labelled-mr.dcm': writeDicom({ rows: png.height, columns: png.width, pixels: stored(false), bitsStored: 12,
                                    intercept: -1024, modality: 'MR' }),
    // Two frames, the X-ray and its inverse: the first is classified and the row says so.
    'two-frames.dcm': writeDicom({ rows: png.height, columns: png.width, bitsStored: 12, intercept: -1024, frames: 2,
                                   pixels: Buffer.concat([stored(false), stored(true)]) }),
    // The second frame alone: what the page must give when the user moves to that frame.
    'second-frame.dcm': writeDicom({ rows: png.height, columns: png.width, pixels: stored(true), bitsStored: 12,
                                     intercept: -1024 }),
  };
  const bad = {
    'truncated.dcm': [files['xray-mono2.dcm'].subarray(0, 700), /DICOM|truncated|damaged/i],
    'jpeg2000.dcm': [writeDicom({ rows: 64, columns: 64, pixels: Buffer.alloc(512, 7), transferSyntax: '1.2.840.10008.1.2.4.90' }),
                     /JPEG 2000 frame: no JPEG 2000 codestream/],
  };
  for (const [name, bytes] of Object.entries(files)) writeFileSync(path.join(dir, name), bytes);
  for (const [name, [bytes]] of Object.entries(bad)) writeFileSync(path.join(dir, name), bytes);

  // Natively: DCMTK reads the same files, the same core decodes and preprocesses them.
  const nativeJson = path.join(scratch, 'native.json');
  const printed = execFileSync(loupeCli, ['predict', '-m', model, '-o', nativeJson, '-q',
                                          ...Object.keys(files).map((n) => path.join(dir, n))],
                               { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const native = JSON.parse(readFileSync(nativeJson, 'utf8'));
  const nativeByName = new Map(native.predictions.map((p) => [path.basename(p.path), p]));
  // loupe predict: the warning before any figure, and per row; the frame of the multi-frame file.
  const warning = 'Modality MR (the model was trained for CR/DX)';
  assert.match(printed, /^WARNING: 1 DICOM file\(s\) contradict the model's intended use \(CR\/DX, CHEST, PA\/AP\)/);
  assert.ok(printed.indexOf('labelled-mr.dcm: ' + warning) < printed.indexOf('images,'), printed);
  assert.equal(nativeByName.get('labelled-mr.dcm').intended_use_warning, warning);
  for (const name of ['xray-mono2.dcm', 'IM000001', 'two-frames.dcm']) {
    assert.equal(nativeByName.get(name).intended_use_warning, undefined, `${name}: no warning natively`);
  }
  assert.deepEqual([nativeByName.get('two-frames.dcm').frame, nativeByName.get('two-frames.dcm').frames], [1, 2]);

  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events);
    await page.waitForFunction(() => window.loupe.state.model?.status === 'ready', null, { timeout: 90_000 });
    await page.setInputFiles('#open-folder', dir);
    const count = Object.keys(files).length + Object.keys(bad).length;
    try {
      await page.waitForFunction((count) => {
        const { images, batch } = window.loupe.state;
        // The list is published at most twice a second, the counts every frame: wait for both.
        return images.count === count && images.pending === 0 && images.list?.length === count &&
          batch.done === batch.total && batch.inFlight === 0 &&
          images.list.every((e) => !e.ok || e.prediction?.status === 'done');
      }, count, { timeout: 120_000, polling: 250 });
    } catch (error) {
      const state = await page.evaluate(() => window.loupe.state);
      assert.fail(`DICOM batch did not settle: ${JSON.stringify(state.images.list)}\n${describeEvents(events)}`);
    }
    const state = await page.evaluate(() => window.loupe.state);
    const byName = new Map(state.images.list.map((e) => [e.name, e]));
    let maxDiff = 0;
    for (const name of Object.keys(files)) {
      const entry = byName.get(name);
      assert.ok(entry?.ok, `${name}: ${entry?.status}`);
      assert.deepEqual([entry.width, entry.height, entry.channels, entry.bits], [png.width, png.height, 1, 16], name);
      const reference = nativeByName.get(name);
      assert.ok(reference?.probabilities, `${name}: native ${JSON.stringify(reference)}`);
      assert.equal(entry.prediction?.predicted, reference.predicted, `${name}: top class`);
      maxDiff = Math.max(maxDiff, ...entry.prediction.probabilities.map((p, i) => Math.abs(p - reference.probabilities[i])));
    }
    console.log(`DICOM browser vs loupe predict: max abs difference ${maxDiff.toExponential(3)}`);
    assert.ok(maxDiff <= 1e-4, `max abs difference ${maxDiff}`);
    // MONOCHROME1 is inverted on decoding: the same picture, the same prediction.
    assert.deepEqual(byName.get('xray-mono1.dcm').prediction.probabilities, byName.get('xray-mono2.dcm').prediction.probabilities);
    // The first of two frames is the X-ray itself; the row says which frame.
    assert.deepEqual(byName.get('two-frames.dcm').prediction.probabilities, byName.get('xray-mono2.dcm').prediction.probabilities);
    assert.deepEqual(byName.get('two-frames.dcm').frame, { index: 0, count: 2 });
    // The card's intended images: MR contradicts CR/DX; DX (with or without a view) does not.
    assert.equal(byName.get('labelled-mr.dcm').intendedUseWarning, warning);
    for (const name of ['xray-mono2.dcm', 'xray-mono1.dcm', 'IM000001', 'two-frames.dcm']) {
      assert.equal(byName.get(name).intendedUseWarning, '', `${name}: no warning in the page`);
    }

    for (const [name, [, message]] of Object.entries(bad)) {
      const entry = byName.get(name);
      assert.equal(entry.ok, false, `${name} should fail`);
      assert.match(entry.status, message, `${name}: ${entry.status}`);
    }

    const [download] = await Promise.all([page.waitForEvent('download'), (async () => {
      const [x, y, w, h] = await page.evaluate(() => window.loupe.state.widgets.exportCsv);
      await page.mouse.click(x + w / 2, y + h / 2);
    })()]);
    const csv = readFileSync(await download.path(), 'utf8');
    const header = csv.split('\n')[0].split(',');
    assert.ok(header.includes('intended_use_warning') && header.includes('frame'), header.join(','));
    const csvRow = (name) => csv.split('\n').find((line) => line.split(',')[0].endsWith(`/${name}`))?.split(',') ?? [];
    assert.equal(csvRow('labelled-mr.dcm')[header.indexOf('intended_use_warning')], warning);
    assert.equal(csvRow('xray-mono2.dcm')[header.indexOf('intended_use_warning')], '');
    assert.equal(csvRow('two-frames.dcm')[header.indexOf('frame')], '1 of 2');
    const everything = JSON.stringify(state) + csv;
    assert.ok(!everything.includes('Doe') && !everything.includes('424242'), 'patient attributes reached the page state or CSV');
    await page.screenshot({ path: path.join(artifactsDir(), 'web-dicom.png') });

    // Another frame (issue 15, part 5): the arrows beside "DICOM frame 1 of 2" read and classify the
    // file again at its second frame, which gives exactly the single-frame file of those pixels.
    const indexOf = (name) => state.images.list.findIndex((e) => e.name === name);
    const rows = state.images.rows;
    const current = rows.indexOf(state.images.list.findIndex((e) => e.path === state.images.selectedPath));
    const target = rows.indexOf(indexOf('two-frames.dcm'));
    assert.ok(target >= 0, 'two-frames.dcm is in the table');
    for (let i = 0; i < Math.abs(target - Math.max(0, current)); ++i) await page.keyboard.press(target > current ? 'ArrowDown' : 'ArrowUp');
    // The arrow is drawn with the selected image's probabilities: wait for it, then click it where it is.
    const [fx, fy, fw, fh] = await page.waitForFunction(() => {
      const { images, widgets } = window.loupe.state;
      return images.selectedPath.endsWith('two-frames.dcm') && widgets?.nextFrame ? widgets.nextFrame : null;
    }, null, { timeout: 30_000, polling: 100 }).then((handle) => handle.jsonValue())
      .catch(async () => assert.fail(`two-frames.dcm not selected: ${await page.evaluate(() => window.loupe.state.images.selectedPath)}`));
    await page.mouse.move(fx + fw / 2, fy + fh / 2);
    await page.waitForTimeout(100);
    await page.mouse.down();
    await page.waitForTimeout(100);
    await page.mouse.up();
    const secondFrame = await page.waitForFunction(() => {
      const entry = window.loupe.state.images.list?.find((e) => e.name === 'two-frames.dcm');
      return entry?.frame?.index === 1 && entry.prediction?.status === 'done' ? entry : null;
    }, null, { timeout: 60_000, polling: 200 }).then((handle) => handle.jsonValue()).catch(async (error) => {
      const entry = await page.evaluate(() => window.loupe.state.images.list.find((e) => e.name === 'two-frames.dcm'));
      assert.fail(`the second frame was not classified (${error.message.split('\n')[0]}): ${JSON.stringify(entry)}`);
    });
    assert.deepEqual(secondFrame.frame, { index: 1, count: 2 });
    assert.deepEqual(secondFrame.prediction.probabilities, byName.get('second-frame.dcm').prediction.probabilities);
    assert.notDeepEqual(secondFrame.prediction.probabilities, byName.get('xray-mono2.dcm').prediction.probabilities);
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(artifactsDir(), 'web-dicom-second-frame.png') });
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

// Every syntax the page decodes, on files DCMTK and OpenJPEG write (tests/parity/dicom_dump
// --make-fixtures: real images from ../shared/data, generated patterns without them): JPEG
// lossless and JPEG-LS decoded by the page's npm decoders, JPEG 2000 by the shared core's OpenJPEG
// in wasm. The same chest X-ray in five syntaxes gets exactly the uncompressed file's probabilities;
// a multi-frame file is classified on the frame the row names; the MR file gets the card's warning
// (the chest model is trained for CR/DX, CHEST, PA/AP), the DX files do not.
test('compressed and multi-frame DICOM decode in the page like the uncompressed file', async (t) => {
  const dicomDump = path.resolve(repoRoot, process.env.LOUPE_NATIVE_BUILD ?? 'build/native', 'tests/dicom_dump');
  assert.ok(existsSync(dicomDump), `no ${dicomDump}: build it first (scripts/build native)`);
  const made = path.join(scratch, 'fixtures');
  mkdirSync(made, { recursive: true });
  const lines = execFileSync(dicomDump, ['--make-fixtures', made], { encoding: 'utf8' }).trim().split('\n').map((l) => JSON.parse(l));
  if (lines.some((f) => f.source === 'pattern')) t.diagnostic('no ../shared/data: fixtures made from patterns');
  const chest = ['chest_dx_16bit_mono2.dcm', 'chest_jpeg_lossless.dcm', 'chest_jpeg_lossless_predictor6.dcm',
                 'chest_jpeg_ls.dcm', 'chest_j2k_lossless.dcm', 'chest_rle.dcm'];
  const others = ['rgb_j2k_rct.dcm', 'rgb_jpeg_ls.dcm', 'brain_mr_8bit_mono1.dcm', 'mr_multiframe_j2k.dcm',
                  'mr_multiframe_jpeg_ls.dcm', 'chest_j2k_truncated.dcm'];
  const dir = path.join(scratch, 'syntaxes');
  mkdirSync(dir, { recursive: true });
  for (const name of [...chest, ...others]) writeFileSync(path.join(dir, name), readFileSync(path.join(made, name)));

  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events);
    await page.waitForFunction(() => window.loupe.state.model?.status === 'ready', null, { timeout: 90_000 });
    await page.setInputFiles('#open-folder', dir);
    const count = chest.length + others.length;
    try {
      await page.waitForFunction((count) => {
        const { images, batch } = window.loupe.state;
        // The list is published at most twice a second, the counts every frame: wait for both.
        return images.count === count && images.pending === 0 && images.list?.length === count &&
          batch.done === batch.total && batch.inFlight === 0 &&
          images.list.every((e) => !e.ok || e.prediction?.status === 'done');
      }, count, { timeout: 180_000, polling: 250 });
    } catch (error) {
      const state = await page.evaluate(() => window.loupe.state);
      assert.fail(`DICOM batch did not settle: ${JSON.stringify(state.images.list)}\n${describeEvents(events)}`);
    }
    const state = await page.evaluate(() => window.loupe.state);
    const byName = new Map(state.images.list.map((e) => [e.name, e]));
    const reference = byName.get('chest_dx_16bit_mono2.dcm');
    assert.ok(reference?.ok && reference.prediction?.status === 'done', JSON.stringify(reference));
    for (const name of chest) {
      const entry = byName.get(name);
      assert.ok(entry?.ok, `${name}: ${entry?.status}`);
      assert.deepEqual(entry.prediction.probabilities, reference.prediction.probabilities, `${name}: probabilities`);
      assert.equal(entry.intendedUseWarning, '', `${name}: DX CHEST is what the model was trained for`);
    }
    for (const name of ['rgb_j2k_rct.dcm', 'rgb_jpeg_ls.dcm']) {
      const entry = byName.get(name);
      assert.ok(entry?.ok && entry.channels === 3, `${name}: ${entry?.status}`);
      assert.equal(entry.intendedUseWarning, 'Modality OT (the model was trained for CR/DX)', name);
    }
    assert.deepEqual(byName.get('rgb_j2k_rct.dcm').prediction.probabilities, byName.get('rgb_jpeg_ls.dcm').prediction.probabilities);
    const mr = byName.get('brain_mr_8bit_mono1.dcm');
    assert.equal(mr.intendedUseWarning,
                 'Modality MR (the model was trained for CR/DX); Body Part Examined BRAIN (the model was trained for CHEST)');
    assert.equal(mr.prediction.status, 'done', 'warned, still classified');
    for (const name of ['mr_multiframe_j2k.dcm', 'mr_multiframe_jpeg_ls.dcm']) {
      assert.ok(byName.get(name)?.ok, `${name}: ${byName.get(name)?.status}`);
      assert.deepEqual(byName.get(name).frame, { index: 0, count: 3 }, name);
    }
    // Frame 1 of both multi-frame files is the same picture.
    assert.deepEqual(byName.get('mr_multiframe_j2k.dcm').prediction.probabilities,
                     byName.get('mr_multiframe_jpeg_ls.dcm').prediction.probabilities);
    const truncated = byName.get('chest_j2k_truncated.dcm');
    assert.equal(truncated.ok, false);
    assert.match(truncated.status, /JPEG 2000 frame: codestream could not be decoded/);
    t.diagnostic(`${count} files; the chest X-ray in ${chest.length} syntaxes: identical probabilities`);
    await page.screenshot({ path: path.join(artifactsDir(), 'web-dicom-syntaxes.png') });
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});
