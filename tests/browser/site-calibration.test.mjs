// "Calibrate for this site" in headless Chromium (web/site_calibration.h, web/draw_calibration.cpp):
//   - synthetic labelled PNGs (never skipped): a folder with too few images of one class is refused
//     with every class's count; more images make it available; the figures the view draws are the
//     state's numbers; a sensitivity target chosen in the view gives an operating point; "Download
//     calibrated model" saves MODEL.site.onnx, which opens in the page (self-test passed, the same
//     weights hash) and is then "calibrated for this site"; nothing cut off in the view; zero
//     requests leave the local server, no console errors; a screenshot of the view in
//     build/test-artifacts/web-site-calibration.png;
//   - real chest X-rays from LOUPE_DATA_DIR (skipped without them): 10 per class, the temperature
//     refitted on them, the figures with their intervals.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  artifactsDir, assertNoProblems, clickWidget as clickWidgetAt, describeEvents, encodePng, framesPass, launchBrowser,
  openPage, publicDir, repoRoot, requireBuiltSite, startSite, waitForApp,
} from './helpers.mjs';

const dataDir = path.resolve(repoRoot, process.env.LOUPE_DATA_DIR ?? '../shared/data');
const xrayDir = path.join(dataDir, 'chest-xray-covid');
const CLASSES = ['Covid-19', 'No_findings', 'Pneumonia'];

let site, browser, scratch, manifest;

before(async () => {
  requireBuiltSite();
  manifest = JSON.parse(readFileSync(path.join(publicDir, 'models/models.json'), 'utf8'));
  scratch = mkdtempSync(path.join(tmpdir(), 'loupe-site-calibration-'));
  site = await startSite();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await site?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// --- helpers -----------------------------------------------------------------------------------

// NAME/<class>/<file>.png: `counts[c]` synthetic gray images per class, a pattern per class with
// noise, so the model's outputs vary from image to image.
function writeLabelledFolder(name, counts, seed = 11) {
  const dir = path.join(scratch, name);
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  CLASSES.forEach((cls, c) => {
    mkdirSync(path.join(dir, cls), { recursive: true });
    for (let i = 0; i < counts[c]; ++i) {
      const size = 96 + 8 * (i % 4);
      const pixels = Buffer.alloc(size * size);
      for (let y = 0; y < size; ++y) {
        for (let x = 0; x < size; ++x) {
          const r = Math.hypot(x - size / 2, y - size / 2);
          const base = c === 0 ? 128 + 90 * Math.sin(r / (3 + i % 5)) : c === 1 ? (x % (10 + i % 7) < 5 ? 190 : 50) : 60 + 3 * r;
          pixels[y * size + x] = Math.max(0, Math.min(255, Math.round(base + 60 * (random() - 0.5))));
        }
      }
      writeFileSync(path.join(dir, cls, `${name}-${i}.png`), encodePng({ width: size, height: size, channels: 1, pixels }));
    }
  });
  return dir;
}

// Real X-rays, `perClass` of each class (copies in a temp dir, never in the repository).
function writeXrayFolder(perClass) {
  const dir = path.join(scratch, 'xray');
  for (const cls of CLASSES) {
    mkdirSync(path.join(dir, cls), { recursive: true });
    for (const file of readdirSync(path.join(xrayDir, cls)).sort().slice(0, perClass)) {
      copyFileSync(path.join(xrayDir, cls, file), path.join(dir, cls, file));
    }
  }
  return dir;
}

// Scrolls the calibration window (mouse wheel over it) until the widget is inside it. Emscripten's
// GLFW hands ImGui the wheel with the DOM's sign flipped (draw.cpp's zoom reads it so too): a
// negative deltaY scrolls a window down.
async function scrollIntoWindow(page, id) {
  for (let i = 0; i < 30; ++i) {
    const { widget, window: box } = await page.evaluate((id) => ({
      widget: window.loupe.state.widgets[id], window: window.loupe.state.widgets.siteCalibrationWindow }), id);
    if (!box || widget[1] + widget[3] <= box[1] + box[3] - 4) return;
    await page.mouse.move(box[0] + box[2] / 2, box[1] + box[3] / 2);
    await page.mouse.wheel(0, -120);
    await framesPass(page);
  }
}

// The button sits at the end of the evaluation window: scroll it there (the wheel over the window,
// which opens below the "Evaluation" button).
async function scrollEvaluationToEnd(page) {
  const [x, y, , height] = await page.evaluate(() => window.loupe.state.widgets.evaluation);
  const viewport = page.viewportSize();
  await page.mouse.move(viewport.width / 2, Math.min(viewport.height - 50, y + height + 200));
  for (let i = 0; i < 6; ++i) {
    await page.mouse.wheel(0, -400);
    await framesPass(page);
  }
}

// Clicks a widget of the calibration view or the evaluation window, scrolled into view first.
function clickWidget(page, id) {
  return clickWidgetAt(page, id, {
    beforeClick: async (page, id) => {
      if (/^site(Kind-\d+|Value-\d+|Download)$/.test(id)) await scrollIntoWindow(page, id);
      if (id === 'siteCalibration') await scrollEvaluationToEnd(page);
    },
  });
}

async function waitFor(page, events, what, predicate, arg, timeout = 180_000) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 100 });
  } catch (error) {
    const state = await page.evaluate(() => {
      const { images: { list, rows, ...images }, ...rest } = window.loupe.state;
      return { images, batch: rest.batch, model: rest.model, siteCalibration: rest.siteCalibration };
    }).catch(() => undefined);
    assert.fail(`${what} (${error.message.split('\n')[0]}): ${JSON.stringify(state)}\n${describeEvents(events)}`);
  }
  return page.evaluate(() => window.loupe.state);
}

const batchDone = (count) => {
  const { images, batch } = window.loupe.state;
  return images.count === count && images.pending === 0 && batch.total === count && batch.done === count && batch.inFlight === 0;
};

// A click that lands while the page skips idle frames can go unseen: click again when no download
// starts within 15 s.
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

// "value [low, high]" with 4 decimals: what the view draws for a figure and its interval.
const shown = (value, [low, high]) => `${value.toFixed(4)} [${low.toFixed(4)}, ${high.toFixed(4)}]`;

// --- the tests ---------------------------------------------------------------------------------

test('synthetic labelled images: refused with the counts, calibrated, a sensitivity target, downloaded and opened', async () => {
  const few = writeLabelledFolder('few', [4, 10, 10]);
  const more = writeLabelledFolder('more', [8, 2, 2], 23);
  const { context, page, events } = await openPage(browser, site.url, { viewport: { width: 1280, height: 1024 } });
  try {
    await waitForApp(page, events);
    await waitFor(page, events, 'the default model did not load', () => window.loupe.state.model.status === 'ready');
    const original = await page.evaluate(() => window.loupe.state.model);
    assert.equal(original.file, manifest.default);
    assert.equal(original.calibrationInUse, 'export');

    // Too few images of one class: refused, naming every class's count.
    await page.setInputFiles('#open-folder', few);
    await waitFor(page, events, 'the first folder was not classified', batchDone, 24);
    await clickWidget(page, 'evaluation');
    await clickWidget(page, 'siteCalibration');
    let state = await waitFor(page, events, 'the view did not refuse',
                              () => window.loupe.state.siteCalibration.open && window.loupe.state.siteCalibration.refusal !== '');
    const refused = state.siteCalibration;
    assert.equal(refused.available, false);
    assert.match(refused.refusal, /at least 10 labelled images of every class/);
    assert.match(refused.refusal, /too few: Covid-19 4/);
    assert.match(refused.refusal, /No_findings 10, Pneumonia 10/);
    await page.screenshot({ path: path.join(artifactsDir(), 'web-site-calibration-refused.png') });

    // More labelled images: the view computes the calibration by itself, once.
    await page.setInputFiles('#open-folder', more);
    state = await waitFor(page, events, 'the calibration did not become available',
                          () => window.loupe.state.siteCalibration.available && window.loupe.state.batch.done === 36);
    let calibration = state.siteCalibration;
    assert.equal(calibration.images, 36);
    assert.deepEqual(calibration.classCounts, [12, 12, 12]);
    assert.equal(calibration.replaced, 'export');
    assert.equal(calibration.before.temperature, original.temperature);
    const fits = calibration.fits;
    console.log(`site calibration on 36 synthetic images: T ${calibration.before.temperature.toFixed(4)} -> ` +
                `${calibration.after.temperature.toFixed(4)} (fitted ${calibration.fittedTemperature.toPrecision(4)}, ` +
                `applied: ${calibration.temperatureApplied}); ECE ${calibration.shown.eceBefore} -> ${calibration.shown.eceAfter}; ` +
                `NLL ${calibration.shown.nllBefore} -> ${calibration.shown.nllAfter}`);
    // The texts the view draws are the state's numbers.
    assert.equal(calibration.shown.eceBefore, shown(calibration.before.ece, calibration.before.eceInterval));
    assert.equal(calibration.shown.eceAfter, shown(calibration.after.ece, calibration.after.eceInterval));
    assert.equal(calibration.shown.nllBefore, shown(calibration.before.nll, calibration.before.nllInterval));
    assert.equal(calibration.shown.nllAfter, shown(calibration.after.nll, calibration.after.nllInterval));
    assert.equal(calibration.shown.nllChange, shown(calibration.after.nll - calibration.before.nll, calibration.nllChange));
    assert.ok(calibration.after.nll <= calibration.before.nll + 1e-9, 'the refit does not make the NLL worse on its own images');

    // Pneumonia at a sensitivity target, chosen in the view's menu.
    await clickWidget(page, 'siteKind-2');
    await clickWidget(page, 'siteKind-2-sensitivity');
    state = await waitFor(page, events, 'the operating point was not set',
                          () => window.loupe.state.siteCalibration.operatingPoints?.length === 1);
    calibration = state.siteCalibration;
    assert.deepEqual(calibration.targets[2], { enabled: true, kind: 'sensitivity', value: 0.95 });
    const point = calibration.operatingPoints[0];
    assert.equal(point.class, 'Pneumonia');
    assert.equal(point.positives, 12);
    assert.equal(point.negatives, 24);
    assert.ok(point.sensitivity >= 0.95, `sensitivity ${point.sensitivity} reaches its target`);
    assert.ok(point.sensitivity_interval[0] <= point.sensitivity && point.sensitivity <= point.sensitivity_interval[1]);
    assert.ok(point.specificity_interval[0] <= point.specificity && point.specificity <= point.specificity_interval[1]);
    assert.equal(calibration.fits, fits, 'a target re-chooses the threshold without refitting');
    const clipped = state.clipped.filter((c) => c.window.includes('site-calibration'));
    assert.deepEqual(clipped, [], 'nothing is cut off in the calibration view');
    await page.screenshot({ path: path.join(artifactsDir(), 'web-site-calibration.png') });
    // In Indonesian too (longer words): nothing cut off; then back to English.
    await clickWidget(page, 'language');
    await clickWidget(page, 'language-id');
    await framesPass(page, 4);
    state = await page.evaluate(() => window.loupe.state);
    assert.equal(state.ui.language, 'id');
    assert.deepEqual(state.clipped.filter((c) => c.window.includes('site-calibration')), [],
                     'nothing is cut off in the calibration view in Indonesian');
    await page.screenshot({ path: path.join(artifactsDir(), 'web-site-calibration-id.png') });
    await clickWidget(page, 'language');
    await clickWidget(page, 'language-en');
    await page.waitForFunction(() => window.loupe.state.ui.language === 'en', null, { timeout: 10_000 });
    console.log(`Pneumonia at sensitivity 0.95: p >= ${point.threshold.toFixed(4)}, sensitivity ${point.sensitivity.toFixed(3)} ` +
                `[${point.sensitivity_interval.map((v) => v.toFixed(3)).join(', ')}], specificity ${point.specificity.toFixed(3)} ` +
                `[${point.specificity_interval.map((v) => v.toFixed(3)).join(', ')}]`);

    // The download: MODEL.site.onnx beside the original, opened in the page as a model.
    const download = await downloadAfterClick(page, 'siteDownload');
    const expectedName = manifest.default.replace(/\.onnx$/, '.site.onnx');
    assert.equal(download.suggestedFilename(), expectedName);
    const saved = path.join(scratch, expectedName);
    await download.saveAs(saved);
    assert.ok(readFileSync(saved).length > 1_000_000);
    await page.setInputFiles('#open-model', saved);
    state = await waitFor(page, events, 'the calibrated model did not open',
                          (file) => window.loupe.state.model.status === 'ready' && window.loupe.state.model.file === file,
                          expectedName);
    const calibrated = state.model;
    assert.equal(calibrated.error, '');
    assert.equal(calibrated.selfTest.passed, true, calibrated.selfTest.summary);
    assert.equal(calibrated.weightsVerified, true);
    assert.equal(calibrated.weightsSha256, original.weightsSha256, 'the same weights');
    assert.equal(calibrated.calibrationInUse, 'site');
    assert.equal(calibrated.temperatureInUse, calibration.after.temperature);
    assert.match(calibrated.probabilityNoteShown, /^calibrated for this site by temperature scaling/);
    assert.match(calibrated.probabilityNoteShown, /fitted on 36 labelled images/);
    assert.match(calibrated.decisionNote, /Pneumonia when p >= /);
    // Every image classified again with the site's calibration; the view now replaces it.
    state = await waitFor(page, events, 'the images were not classified again',
                          () => window.loupe.state.batch.done === 36 && window.loupe.state.siteCalibration.available);
    assert.equal(state.siteCalibration.replaced, 'site');
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

test('real chest X-rays: 10 per class refit the temperature (skipped without data)', async (t) => {
  if (!existsSync(xrayDir)) return t.skip(`no data at ${xrayDir} (set LOUPE_DATA_DIR)`);
  const dir = writeXrayFolder(10);
  const { context, page, events } = await openPage(browser, site.url, { viewport: { width: 1280, height: 1024 } });
  try {
    await waitForApp(page, events);
    await waitFor(page, events, 'the default model did not load', () => window.loupe.state.model.status === 'ready');
    await page.setInputFiles('#open-folder', dir);
    await waitFor(page, events, 'the X-rays were not classified', batchDone, 30);
    await clickWidget(page, 'evaluation');
    await clickWidget(page, 'siteCalibration');
    const state = await waitFor(page, events, 'the calibration did not become available',
                                () => window.loupe.state.siteCalibration.available);
    const calibration = state.siteCalibration;
    assert.deepEqual(calibration.classCounts, [10, 10, 10]);
    for (const figure of [calibration.before, calibration.after]) {
      assert.ok(figure.eceInterval[0] <= figure.ece && figure.ece <= figure.eceInterval[1]);
      assert.ok(figure.nllInterval[0] <= figure.nll && figure.nll <= figure.nllInterval[1]);
    }
    console.log(`site calibration on 30 real X-rays: T ${calibration.before.temperature.toFixed(4)} -> ` +
                `${calibration.after.temperature.toFixed(4)} (applied: ${calibration.temperatureApplied}); ` +
                `ECE ${calibration.shown.eceBefore} -> ${calibration.shown.eceAfter} (change ${calibration.shown.eceChange}); ` +
                `NLL ${calibration.shown.nllBefore} -> ${calibration.shown.nllAfter} (change ${calibration.shown.nllChange})`);
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});
