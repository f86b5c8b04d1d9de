// DICOM: the page's parser (web/dicom.mjs over dicom-parser) against the native reader (DCMTK),
// on files DCMTK writes from real images (dicom_dump --make-fixtures). For every file:
//   - the attributes the page extracts equal the native reader's (and hold no patient values);
//   - the pixel data bytes are the same where neither side transformed them, and where both
//     decompressed them: JPEG lossless and JPEG-LS, decoded by DCMTK natively and by the page's npm
//     decoders (jpeg-lossless-decoder-js, CharLS for wasm), give the same samples;
//   - what the shared pixel math makes of the page's hand-over (dicom_dump --from-page, natively
//     and, when the web build has it, as wasm) is byte-identical to the native decode, JPEG 2000
//     (OpenJPEG on both sides) and the chosen frame of multi-frame files included;
//   - bad files fail on the page path too (a damaged JPEG 2000 codestream, a frame past the end).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { isDicom, needsDicomCodecs, parseDicom, readIdentifyingAttributes } from '../../web/dicom.mjs';

const root = path.resolve(import.meta.dirname, '../..');
const nativeTool = path.join(process.env.LOUPE_NATIVE_BUILD ?? path.join(root, 'build/native'), 'tests/dicom_dump');
const wasmTool = path.join(process.env.LOUPE_WEB_BUILD ?? path.join(root, 'build/web'), 'tests/dicom_dump.js');
const require = createRequire(import.meta.url);
const dicomParser = require(path.join(root, 'node_modules/dicom-parser'));
const EXPLICIT_LITTLE = '1.2.840.10008.1.2.1';

// The decoders the page loads with loadDicomCodecs(), from the same npm packages.
async function nodeCodecs() {
  const { Decoder } = await import(path.join(root, 'node_modules/jpeg-lossless-decoder-js/release/lossless.js'));
  const charls = await require(path.join(root, 'node_modules/@cornerstonejs/codec-charls/dist/charlswasm_decode.js'))();
  return { JpegLosslessDecoder: Decoder, charls };
}

function run(command, args) {
  const stdout = execFileSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
  return stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
}
const runWasm = (args) => run(process.execPath, ['--no-experimental-fetch', wasmTool, ...args]);

test('the page parses DICOM like the native reader, and the shared math gives the same images', async (t) => {
  const codecs = await nodeCodecs();
  assert.ok(fs.existsSync(nativeTool), `${nativeTool} is missing: run scripts/build native`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'loupe-dicom-parity-'));
  t.after(() => fs.rmSync(work, { recursive: true, force: true }));
  const fixturesDir = path.join(work, 'fixtures');
  fs.mkdirSync(fixturesDir);
  const made = run(nativeTool, ['--make-fixtures', fixturesDir]);
  const patientValues = made.pop().patient_values;
  const fixtures = made;
  if (fixtures.some((f) => f.source === 'pattern')) t.diagnostic('no ../shared/data: fixtures made from patterns');

  // Native: read + decode every file.
  const list = path.join(work, 'files.txt');
  fs.writeFileSync(list, fixtures.map((f) => `${f.path}\t${f.frame}`).join('\n') + '\n');
  const nativeOut = path.join(work, 'native');
  fs.mkdirSync(nativeOut);
  const native = run(nativeTool, ['--read', list, '--out', nativeOut]);

  // The page: parse every file, write what it would hand to the core.
  const pageOut = path.join(work, 'page');
  fs.mkdirSync(pageOut);
  const handOver = [];
  const page = fixtures.map((f, i) => {
    const bytes = fs.readFileSync(f.path);
    assert.ok(isDicom(bytes), f.name);
    try {
      const { attributes, pixels } = parseDicom(bytes, { dicomParser, codecs, frame: f.frame });
      const attributesFile = path.join(pageOut, `${i}.json`);
      const pixelsFile = path.join(pageOut, `${i}.pixels`);
      fs.writeFileSync(attributesFile, JSON.stringify(attributes));
      fs.writeFileSync(pixelsFile, pixels);
      handOver.push({ index: i, line: `${attributesFile}\t${pixelsFile}` });
      return { attributes, pixels };
    } catch (e) {
      assert.ok(e instanceof Error, `${f.name}: parseDicom threw a non-Error`);
      return { error: e.message };
    }
  });
  const pageList = path.join(work, 'page.txt');
  fs.writeFileSync(pageList, handOver.map((h) => h.line).join('\n') + '\n');
  const fromPage = (tool) => {
    const out = path.join(work, tool === 'native' ? 'from-page-native' : 'from-page-wasm');
    fs.mkdirSync(out);
    const args = ['--from-page', pageList, '--out', out];
    const lines = tool === 'native' ? run(nativeTool, args) : runWasm(args);
    const byFixture = new Map();
    lines.forEach((line, k) => byFixture.set(handOver[k].index, { ...line, imageFile: path.join(out, `${line.index}.image`) }));
    return byFixture;
  };
  const decoded = { native: fromPage('native') };
  if (fs.existsSync(wasmTool)) decoded.wasm = fromPage('wasm');
  else t.diagnostic(`${wasmTool} is missing: the page's hand-over is decoded natively only`);

  const summary = [];
  const decompressedBoth = [];
  fixtures.forEach((f, i) => {
    const n = native[i];
    const p = page[i];
    const where = `${f.name} frame ${f.frame} (${f.source})`;
    if (p.attributes) {
      const json = JSON.stringify(p.attributes);
      for (const value of patientValues) assert.ok(!json.includes(value), `${where}: patient value ${value} in attributes`);
      assert.ok(!json.includes('Doe'), `${where}: patient name in attributes`);
    }
    if (n.attributes) {
      assert.ok(p.attributes, `${where}: the page failed where native read it: ${p.error}`);
      // pixel_syntax says what each reader left the pixel data in (DCMTK byte-swaps, for one).
      const { pixel_syntax: _native, ...nativeAttributes } = n.attributes;
      const { pixel_syntax: _page, ...pageAttributes } = p.attributes;
      assert.deepEqual(pageAttributes, nativeAttributes, `${where}: attributes differ`);
      const nativePixels = fs.readFileSync(path.join(nativeOut, `${i}.pixels`));
      if (n.attributes.pixel_syntax === n.attributes.transfer_syntax || n.attributes.transfer_syntax === EXPLICIT_LITTLE) {
        assert.ok(Buffer.from(p.pixels).equals(nativePixels), `${where}: pixel data bytes differ`);
      }
      if (needsDicomCodecs(n.attributes)) {  // decompressed on both sides: DCMTK vs the npm decoders
        assert.equal(p.attributes.pixel_syntax, EXPLICIT_LITTLE, `${where}: the page did not decode the frame`);
        assert.ok(Buffer.from(p.pixels).equals(nativePixels), `${where}: the page's decoded samples differ from DCMTK's`);
        decompressedBoth.push(f.name);
      }
    }
    for (const [tool, results] of Object.entries(decoded)) {
      const r = results.get(i);
      if (n.image && !f.native_only) {
        assert.ok(r && r.image, `${where}: ${tool} decoding of the page's hand-over failed: ${r?.error ?? p.error}`);
        assert.deepEqual(r.image, n.image, `${where}: ${tool} image layout differs`);
        const same = fs.readFileSync(r.imageFile).equals(fs.readFileSync(path.join(nativeOut, `${i}.image`)));
        assert.ok(same, `${where}: ${tool} pixels differ from the native decode`);
      } else if (f.native_only) {
        assert.ok(r && r.error, `${where}: ${tool} should refuse a syntax only DCMTK decodes`);
        if (tool === 'wasm') assert.match(r.error, /compressed DICOM \(1\.2\.840\.10008\.1\.2\.4\.\d+\) is not supported: in the browser/);
      } else {
        assert.ok(f.fails && n.error, `${where}: native failed unexpectedly: ${n.error}`);
        assert.ok(p.error || (r && r.error), `${where}: the page path accepted a bad file`);
        if (r && r.error && f.error_contains) assert.ok(r.error.includes(f.error_contains), `${where}: ${r.error}`);
      }
    }
    summary.push(`${f.name}${f.frame ? ` frame ${f.frame + 1}` : ''}: ` +
                 `${n.image ? `${n.image.width}x${n.image.height}x${n.image.channels} ${n.image.bits}-bit` : n.error.slice(0, 70)}`);
  });
  for (const name of ['chest_jpeg_lossless.dcm', 'chest_jpeg_lossless_predictor6.dcm', 'rgb_jpeg_lossless.dcm',
                      'chest_jpeg_ls.dcm', 'chest_jpeg_ls_near_lossless.dcm', 'rgb_jpeg_ls.dcm',
                      'mr_multiframe_jpeg_lossless.dcm', 'mr_multiframe_jpeg_ls.dcm']) {
    assert.ok(decompressedBoth.includes(name), `${name}: not compared with DCMTK's decompressed samples`);
  }
  t.diagnostic(`${fixtures.length} files; decoded by ${Object.keys(decoded).join(' + ')}:\n  ${summary.join('\n  ')}`);

  // Patient values are there for those who ask, and only through the separate reader.
  const chest = fixtures.find((f) => f.name === 'chest_dx_16bit_mono2.dcm');
  const identifying = readIdentifyingAttributes(fs.readFileSync(chest.path), { dicomParser });
  assert.equal(identifying.patient_name, patientValues[0]);
  assert.equal(identifying.patient_id, patientValues[1]);
});

test('parseDicom: clear errors for what is not a readable DICOM file', () => {
  assert.throws(() => parseDicom(new Uint8Array(10), { dicomParser }), /not a DICOM file/);
  assert.throws(() => parseDicom(Buffer.from('patient,label\n'), { dicomParser }), /not a DICOM file/);
  const header = new Uint8Array(140);
  header.set([0x44, 0x49, 0x43, 0x4d], 128);
  assert.throws(() => parseDicom(header, { dicomParser }), /DICOM file could not be parsed/);
  assert.throws(() => parseDicom(header, { dicomParser: undefined }), /not loaded/);
});
