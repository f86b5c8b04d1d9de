// The int8 models in the browser, in headless Chromium (issue 13 item 3):
//   - the shipped int8 models: the page's "Shipped models" menu offers them (titles say int8), each
//     opens through the menu's path, passes its self-test in this browser (its expectations are
//     ONNX Runtime's int8 outputs) and says its precision (never skipped: they are in the repository);
//   - on the same real images (LOUPE_DATA_DIR; skipped without) the page's predictions and CSV
//     export equal `loupe predict`'s with the same int8 file (same top class, label, status and
//     flag; probabilities within 1e-4; reported in build/test-artifacts/browser-int8-parity.json);
//   - bad int8 models: a card whose calibration record is missing, and a graph with an int8
//     operator ONNX Runtime Web has no kernel for, each get a clear message; the active model and
//     its results stay.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  artifactsDir, assertNoProblems, clickWidget, describeEvents, framesPass, launchBrowser, onnxWire, openPage, publicDir,
  repoRoot, requireBuiltSite, startSite, waitForApp, waitForModel, waitForPredictions,
} from './helpers.mjs';

const dataDir = path.resolve(repoRoot, process.env.LOUPE_DATA_DIR ?? '../shared/data');
const loupeCli = path.resolve(repoRoot, process.env.LOUPE_CLI ?? 'build/native/native/loupe');
const PER_CLASS = 5;

// The int8 models and the data each is for.
const INT8_MODELS = [
  { file: 'chest-xray-mobilenet_v2.int8.onnx', name: 'shipped-chest-xray-mobilenet_v2-int8', data: 'chest-xray-covid' },
  { file: 'all-leukemia-mobilenet_v2.int8.onnx', name: 'shipped-all-leukemia-mobilenet_v2-int8', data: 'all-leukemia' },
];

let site, browser, scratch, manifest;

before(async () => {
  requireBuiltSite();
  manifest = JSON.parse(readFileSync(path.join(publicDir, 'models/models.json'), 'utf8'));
  scratch = mkdtempSync(path.join(tmpdir(), 'loupe-int8-'));
  site = await startSite();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await site?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// --- helpers -------------------------------------------------------------------------------------

// A folder NAME/<class>/<file> of real images (copies in a temp dir, never in the repository).
function copyFolder(from, name) {
  const dir = path.join(scratch, name);
  const classes = readdirSync(from).filter((entry) => !entry.startsWith('.')).sort();
  let images = 0;
  for (const cls of classes) {
    mkdirSync(path.join(dir, cls), { recursive: true });
    for (const file of readdirSync(path.join(from, cls)).sort().slice(0, PER_CLASS)) {
      copyFileSync(path.join(from, cls, file), path.join(dir, cls, file));
      images++;
    }
  }
  return { dir, images };
}

async function downloadAfterClick(page, widget) {
  for (let attempt = 1; ; attempt++) {
    const download = page.waitForEvent('download', { timeout: 15_000 });
    await clickWidget(page, widget);
    try {
      return await download;
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

function parseCsv(text) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; ++i) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; ++i; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n') { row.push(field); rows.push(row); row = []; field = ''; }
    else field += c;
  }
  const [header, ...body] = rows;
  return body.map((cells) => Object.fromEntries(header.map((key, i) => [key, cells[i]])));
}

// --- A small ONNX encoder (protobuf wire format): a model with an int8 operator ORT has no kernel for.
const { integer, message, string, tensorValue, tensor, node } = onnxWire;

// input [batch, 3, 8, 8] -> QuantizeLinear (int8) -> QLinearConv of int8 data with uint8 weights
// (ONNX Runtime, native and Web, has QLinearConv for uint8 x uint8, uint8 x int8 and int8 x int8
// only) -> DequantizeLinear -> GlobalAveragePool -> Flatten -> logits; an int8 card with its
// record, so that the reader lets it through to ONNX Runtime.
function encodeInt8OpModel(card) {
  const scale = Buffer.alloc(4);
  scale.writeFloatLE(1 / 64);
  const weights = Buffer.from([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  const graph = [
    ...message(1, node(['input', 'scale', 'zero'], ['xq'], 'QuantizeLinear', 'quantize')),
    ...message(1, node(['xq', 'scale', 'zero', 'w', 'scale', 'zero_u8', 'scale', 'zero'], ['yq'], 'QLinearConv',
                       'qlinearconv_s8_u8')),
    ...message(1, node(['yq', 'scale', 'zero'], ['y'], 'DequantizeLinear', 'dequantize')),
    ...message(1, node(['y'], ['pooled'], 'GlobalAveragePool', 'pool')),
    ...message(1, node(['pooled'], ['logits'], 'Flatten', 'flatten')),
    ...string(2, 'int8-op'),
    ...message(5, tensor('scale', 1, [], scale)),
    ...message(5, tensor('zero', 3, [], Buffer.from([0]))),
    ...message(5, tensor('zero_u8', 2, [], Buffer.from([0]))),
    ...message(5, tensor('w', 2, [3, 3, 1, 1], weights)),
    ...message(11, tensorValue('input', ['batch', 3, 8, 8])),
    ...message(12, tensorValue('logits', ['batch', 3])),
  ];
  const metadata = message(14, [...string(1, 'loupe.model_card'), ...string(2, JSON.stringify(card))]);
  return Buffer.from([...integer(1, 8), ...string(2, 'loupe-test'), ...message(7, graph), ...message(8, integer(2, 13)),
                      ...metadata]);
}

// --- the tests ------------------------------------------------------------------------------------

// Opens a shipped model the way its "Shipped models" menu entry does; waits until it is active.
async function openShipped(page, events, { file, name }) {
  await page.evaluate((file) => window.loupe.modelFiles.openShipped(file), file);
  const model = await waitForModel(page, events, { name });
  assert.equal(model.file, file);
  assert.equal(model.source, 'shipped');
  return model;
}

test('the shipped int8 models: offered by the menu, self-tested in this browser, saying int8', async () => {
  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events);
    await waitForModel(page, events);
    // The page's own list of shipped models is the one its menu draws.
    const offered = await page.evaluate(async () => (await window.loupe.modelFiles.manifest()).models);
    for (const entry of INT8_MODELS) {
      const item = offered.find((m) => m.file === entry.file);
      assert.ok(item, `the page offers ${entry.file}`);
      assert.match(item.title, /int8/, `${entry.file}: the menu title says int8`);
      const model = await openShipped(page, events, entry);
      assert.equal(model.precision, 'int8');
      assert.equal(model.weightsVerified, true, `${entry.file}: the weights hash computed in the browser matches the card`);
      assert.equal(model.selfTest.present, true);
      assert.equal(model.selfTest.passed, true, `${entry.file}: ${model.selfTest.summary}`);
      console.log(`${entry.file}: self-test in the browser: ${model.selfTest.summary}`);
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(artifactsDir(), `web-int8-${entry.data}.png`) });
    }
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

test('the int8 models in the browser give the predictions and CSV of loupe predict on real images', async (t) => {
  assert.ok(existsSync(loupeCli), `no native CLI at ${loupeCli}: build it first (scripts/build native)`);
  const missing = INT8_MODELS.map((m) => path.join(dataDir, m.data)).filter((dir) => !existsSync(dir));
  if (missing.length) return t.skip(`no data at ${missing.join(', ')} (set LOUPE_DATA_DIR)`);
  const parity = [];
  for (const entry of INT8_MODELS) {
    const { file, data } = entry;
    const { context, page, events } = await openPage(browser, site.url);
    try {
      await waitForApp(page, events);
      await waitForModel(page, events);
      const model = await openShipped(page, events, entry);
      const { dir, images } = copyFolder(path.join(dataDir, data), `int8-${data}`);
      const modelPath = path.join(publicDir, 'models', file);
      const nativeJson = path.join(scratch, `${data}.native.json`);
      execFileSync(loupeCli, ['predict', '-m', modelPath, dir, '-o', nativeJson, '-q', '--threads', '2'],
                   { stdio: ['ignore', 'pipe', 'pipe'] });
      const native = JSON.parse(readFileSync(nativeJson, 'utf8'));
      const nativeByFile = new Map(native.predictions.map((p) => [p.path.split('/').slice(-2).join('/'), p]));

      await page.setInputFiles('#open-folder', dir);
      const state = await waitForPredictions(page, events, images);
      let maxDiff = 0;
      for (const entry of state.images.list) {
        const reference = nativeByFile.get(entry.path.split('/').slice(-2).join('/'));
        assert.ok(reference?.probabilities, `${entry.path} has a native prediction`);
        assert.equal(entry.prediction.predicted, reference.predicted, `${entry.path}: top class`);
        const diff = Math.max(...entry.prediction.probabilities.map((p, i) => Math.abs(p - reference.probabilities[i])));
        maxDiff = Math.max(maxDiff, diff);
      }

      // The CSV export equals loupe predict's CSV of the same folder, opened as the page opened it.
      const download = await downloadAfterClick(page, 'exportCsv');
      const csvPath = path.join(artifactsDir(), `web-int8-${data}.csv`);
      await download.saveAs(csvPath);
      execFileSync(loupeCli, ['predict', '-m', modelPath, path.basename(dir), '-o', 'native.csv', '-q', '--threads', '2'],
                   { cwd: path.dirname(dir), stdio: ['ignore', 'pipe', 'pipe'] });
      const nativeCsv = readFileSync(path.join(path.dirname(dir), 'native.csv'), 'utf8');
      const pageCsv = readFileSync(csvPath, 'utf8');
      assert.equal(pageCsv.split('\n')[0], nativeCsv.split('\n')[0], 'the same columns');
      const rows = parseCsv(pageCsv), nativeRows = parseCsv(nativeCsv);
      assert.deepEqual(rows.map((r) => r.path), nativeRows.map((r) => r.path), 'the same rows, in the same order');
      let csvMaxDiff = 0, oodMaxDiff = 0;
      rows.forEach((row, i) => {
        for (const key of Object.keys(row)) {
          const other = nativeRows[i][key];
          if (key === 'confidence' || key.startsWith('p_') || key === 'ood_distance') {
            // ood_distance: a squared distance summed in float32 from terms that cancel; where the two
            // runtimes' int8 kernels round one activation of the feature map differently (a tie in a
            // requantisation), it moves by a few 1e-3 of itself while the probabilities stay within 1e-5.
            // The flag, what a user sees, is compared exactly below.
            const ood = key === 'ood_distance';
            const diff = Math.abs(Number(row[key]) - Number(other)) / (ood ? Math.max(1, Math.abs(Number(other))) : 1);
            if (ood) oodMaxDiff = Math.max(oodMaxDiff, diff);
            else csvMaxDiff = Math.max(csvMaxDiff, diff);
            assert.ok(diff <= (ood ? 1e-2 : 1e-4), `${row.path} ${key}: ${row[key]} vs ${other}`);
          } else {
            assert.equal(row[key], other, `${row.path} ${key}`);
          }
        }
      });
      console.log(`${file}: page vs loupe predict on ${images} real images: same top class, max probability ` +
                  `difference ${maxDiff.toExponential(3)}; CSV max difference ${csvMaxDiff.toExponential(3)}, ` +
                  `ood_distance ${oodMaxDiff.toExponential(3)} (relative)`);
      parity.push({ model: file, images, maxProbabilityDiff: maxDiff, csvMaxDiff, oodMaxRelativeDiff: oodMaxDiff,
                    selfTest: model.selfTest.summary });
      assert.ok(maxDiff <= 1e-4, `${file}: max probability difference ${maxDiff}`);
      assertNoProblems(events, site.origin);
    } finally {
      await context.close();
    }
  }
  writeFileSync(path.join(artifactsDir(), 'browser-int8-parity.json'), JSON.stringify(parity, null, 2));
});

test('bad int8 models: no calibration record, an int8 operator ORT Web lacks; the active model stays', async () => {
  const int8File = path.join(publicDir, 'models', INT8_MODELS[0].file);
  const bytes = readFileSync(int8File);
  // The card without its "quantization" record: the key renamed in place (same length, so the
  // protobuf stays valid and the reader sees an int8 card that does not say how it was calibrated).
  const text = bytes.toString('latin1');
  const at = text.indexOf('"quantization":');
  assert.ok(at > 0, `${int8File} has no quantization record`);
  const noRecord = Buffer.from(bytes);
  noRecord.write('"quantizatioX":', at, 'latin1');
  // A tiny graph whose card is a valid int8 card (what the reader checks), so that it reaches ONNX Runtime.
  const tinyCard = {
    format: 'loupe.model_card', format_version: 1, name: 'int8-op-test', version: '1',
    architecture: 'tiny', model: { architecture: 'tiny', num_classes: 3 },
    class_names: ['Covid-19', 'No_findings', 'Pneumonia'],
    input: { name: 'input', layout: 'NCHW', dtype: 'float32', batch: 'dynamic', channels: 3, height: 8, width: 8 },
    preprocess: { color: 'rgb', width: 8, height: 8, resize: 'stretch', interpolation: 'area',
                  crop_fraction: 1.0, pad_value: 0.0, mean: [0.5], std: [0.5] },
    outputs: [{ name: 'logits', shape: ['batch', 3], description: 'channel sums' }],
    training_data: null, test_metrics: null, weights_sha256: '',
    intended_use: 'browser tests', disclaimer: 'Not a diagnostic device.',
    precision: 'int8',
    quantization: { method: 'static_qdq', calibration: { method: 'min_max', images: 1 },
                    test: { images: 1, float_accuracy: 1, int8_accuracy: 1, agreement: 1 } },
  };
  const models = path.join(scratch, 'bad-int8');
  mkdirSync(models, { recursive: true });
  const cases = [
    ['no-calibration-record.int8.onnx', noRecord,
      /quantization: missing: an int8 model's card must carry its calibration record/],
    ['int8-op.onnx', encodeInt8OpModel(tinyCard),
      /ONNX Runtime cannot run int8-op\.onnx: .*Could not find an implementation for QLinearConv/],
  ];

  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events);
    const first = await waitForModel(page, events);
    for (const [name, content, expected] of cases) {
      const file = path.join(models, name);
      writeFileSync(file, content);
      await page.setInputFiles('#open-model', file);
      const model = await waitForModel(page, events, { errorFor: name });
      console.log(`${name}: ${model.error}`);
      assert.match(model.error, expected, `${name}: ${model.error}`);
      assert.equal(model.id, first.id, `${name}: the active model stays`);
      assert.equal(model.status, 'ready');
      assert.equal(model.precision, first.precision);
    }
    await page.screenshot({ path: path.join(artifactsDir(), 'web-int8-bad-model.png') });
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});
