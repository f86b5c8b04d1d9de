// Native vs wasm preprocessing parity: the same preprocess_dump source, built by g++ and by
// Emscripten, runs the same images with the same specs; the tensors are compared element by
// element and must be identical (max abs diff 0) for every format and interpolation: the same
// libpng/libjpeg-turbo/OpenCV versions on both sides, linear resizing through OpenCV's
// fixed-point INTER_LINEAR_EXACT, and scripts/setup-wasm-deps' fix of OpenCV 4.6's wasm SIMD
// rounding (which otherwise puts cubic/area/16-bit results one LSB apart).
// The figures are written to $LOUPE_ARTIFACTS_DIR/parity.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const nativeTool = path.join(process.env.LOUPE_NATIVE_BUILD ?? path.join(root, 'build/native'), 'tests/preprocess_dump');
const wasmTool = path.join(process.env.LOUPE_WEB_BUILD ?? path.join(root, 'build/web'), 'tests/preprocess_dump.js');
const dataDir = process.env.LOUPE_DATA_DIR ?? path.join(root, '../shared/data');
const artifactsDir = process.env.LOUPE_ARTIFACTS_DIR ?? path.join(root, 'build/test-artifacts');

const specs = {
  imagenet_stretch_linear_224: { color: 'rgb', size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  gray_center_crop_area_128: { color: 'gray', size: 128, resize: 'shorter_side_center_crop', crop_fraction: 0.875, interpolation: 'area' },
  rgb_letterbox_cubic_96x64: { color: 'rgb', width: 96, height: 64, resize: 'letterbox', interpolation: 'cubic', pad_value: 0.5 },
  gray_stretch_nearest_28: { color: 'gray', size: 28, interpolation: 'nearest' },
};

function listImages(dir, perClass) {
  if (!fs.existsSync(dir)) return [];
  const out = [];
  for (const cls of fs.readdirSync(dir).sort()) {
    const classDir = path.join(dir, cls);
    if (!fs.statSync(classDir).isDirectory()) continue;
    out.push(...fs.readdirSync(classDir).sort().slice(0, perClass).map((f) => path.join(classDir, f)));
  }
  return out;
}

function runDump(command, args, spec, list, outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  const stdout = execFileSync(command, [...args, '--spec', JSON.stringify(spec), '--out', outDir, '--list', list], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    stdio: ['ignore', 'pipe', 'ignore'],  // libpng/libjpeg warnings on the bad files go to stderr
  });
  return stdout.trim().split('\n').map((line) => JSON.parse(line));
}

function readFloats(file) {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

const formatOf = (file) => {
  const ext = path.extname(file).toLowerCase();
  return ext === '.jpg' || ext === '.jpeg' ? 'jpeg' : ext.slice(1) || 'none';
};

test('native and wasm preprocessing produce the same tensors', (t) => {
  for (const tool of [nativeTool, wasmTool]) {
    assert.ok(fs.existsSync(tool), `${tool} is missing: run scripts/build native web`);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'loupe-parity-'));
  const fixtures = path.join(work, 'fixtures');
  fs.mkdirSync(fixtures);
  execFileSync(nativeTool, ['--make-fixtures', fixtures]);
  // Bad files must fail the same way on both sides.
  fs.writeFileSync(path.join(fixtures, 'not_an_image.png'), 'patient,label\n');
  const png = fs.readFileSync(path.join(fixtures, 'rgb8_257x311.png'));
  fs.writeFileSync(path.join(fixtures, 'truncated.png'), png.subarray(0, png.length >> 1));

  const images = fs.readdirSync(fixtures).sort().map((f) => path.join(fixtures, f));
  const real = [
    ...listImages(path.join(dataDir, 'all-leukemia'), 3),
    ...listImages(path.join(dataDir, 'chest-xray-covid'), 3),
    ...listImages(path.join(dataDir, 'brain-mri'), 3),
  ];
  if (real.length === 0) t.diagnostic(`no real images under ${dataDir}: fixtures only`);
  images.push(...real);
  const list = path.join(work, 'images.txt');
  fs.writeFileSync(list, images.join('\n') + '\n');

  const report = { images: images.length, real_images: real.length, specs: {} };
  const mismatches = [];
  for (const [name, spec] of Object.entries(specs)) {
    const native = runDump(nativeTool, [], spec, list, path.join(work, name, 'native'));
    const wasm = runDump(process.execPath, ['--no-experimental-fetch', wasmTool], spec, list, path.join(work, name, 'wasm'));
    assert.equal(wasm.length, native.length, `${name}: wasm processed ${wasm.length} images, native ${native.length}`);
    const maxByFormat = {};
    for (let i = 0; i < native.length; i++) {
      const file = images[i];
      assert.equal(wasm[i].error, native[i].error, `${name}: ${file}: errors differ`);
      if (native[i].error) continue;
      assert.deepEqual(wasm[i].shape, native[i].shape, `${name}: ${file}: shapes differ`);
      const a = readFloats(path.join(work, name, 'native', `${i}.f32`));
      const b = readFloats(path.join(work, name, 'wasm', `${i}.f32`));
      let maxDiff = 0;
      for (let k = 0; k < a.length; k++) maxDiff = Math.max(maxDiff, Math.abs(a[k] - b[k]));
      const format = formatOf(file);
      maxByFormat[format] = Math.max(maxByFormat[format] ?? 0, maxDiff);
      if (maxDiff !== 0) mismatches.push(`${name}: ${path.basename(file)} (${format}): max abs diff ${maxDiff}`);
    }
    report.specs[name] = maxByFormat;
    t.diagnostic(`${name}: max abs diff by format ${JSON.stringify(maxByFormat)}`);
  }
  assert.deepEqual(mismatches, [], 'native and wasm tensors differ');
  const errors = runDump(nativeTool, [], specs.gray_stretch_nearest_28, list, path.join(work, 'errors')).filter((r) => r.error);
  assert.equal(errors.length, 2, 'exactly the two bad fixtures fail');
  fs.mkdirSync(artifactsDir, { recursive: true });
  fs.writeFileSync(path.join(artifactsDir, 'parity.json'), JSON.stringify(report, null, 2));
  fs.rmSync(work, { recursive: true, force: true });
});
