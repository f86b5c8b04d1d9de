// The page as a clinician meets it (issue 18), in headless Chromium:
//   - nothing cut off: the app records every text drawn into a box narrower than it
//     (window.loupe.state.clipped, web/ui_text.h); on the main views (first visit, sidebar, table
//     with a folder loaded, viewer, evaluation with its confusion matrix, keyboard help) the list
//     is empty at 1280x800, 1366x768, 1920x1080, 1280x800 at device scale 2 and the 1024x700
//     minimum, in English and in Bahasa Indonesia; the detector itself fires (a window below the
//     minimum: 320 px) and long names take the ellipsis path (shortened, full text on hover);
//   - the language follows the browser's (navigator.language) and switches in the page; the text
//     size grows and shrinks, is the one thing kept in localStorage, and survives a reload;
//   - tooltips sit beside the item they describe, never over it;
//   - screenshots of each main view in both languages land in build/test-artifacts/
//     (web-<view>-<en|id>.png), from synthetic images made here (no patient image).
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  artifactsDir, assertNoProblems, clickWidget, describeEvents, encodePng, framesPass, launchBrowser, openPage,
  repoRoot, requireBuiltSite, startSite, waitForApp, waitForModel,
} from './helpers.mjs';

const dataDir = path.resolve(repoRoot, process.env.LOUPE_DATA_DIR ?? '../shared/data');
const xrayDir = path.join(dataDir, 'chest-xray-covid');

const SIZES = [
  { width: 1280, height: 800 },
  { width: 1366, height: 768 },
  { width: 1920, height: 1080 },
  { width: 1024, height: 700 },  // the smallest the layout is made for
];
const LOCALES = [['en-US', 'en'], ['id-ID', 'id']];
const CLASSES = ['Covid-19', 'No_findings', 'Pneumonia'];  // the default model's

let site, browser, scratch;

before(async () => {
  requireBuiltSite();
  scratch = mkdtempSync(path.join(tmpdir(), 'loupe-layout-'));
  site = await startSite();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await site?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// --- helpers -----------------------------------------------------------------------------------

// A folder synthetic/<class>/<image> of generated gray images (rings, bars, noise: nothing from a
// patient), three per class, one with a very long name, plus a text file that cannot be read.
function writeSyntheticFolder() {
  const dir = path.join(scratch, 'synthetic');
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  CLASSES.forEach((cls, c) => {
    mkdirSync(path.join(dir, cls), { recursive: true });
    for (let i = 0; i < 3; ++i) {
      const size = 160 + 32 * i;
      const pixels = Buffer.alloc(size * size);
      for (let y = 0; y < size; ++y) {
        for (let x = 0; x < size; ++x) {
          const r = Math.hypot(x - size / 2, y - size / 2);
          const pattern = c === 0 ? 128 + 100 * Math.sin(r / (4 + i)) : c === 1 ? (x % (12 + 4 * i) < 6 ? 200 : 40) : 255 * random();
          pixels[y * size + x] = Math.max(0, Math.min(255, Math.round(pattern)));
        }
      }
      const name = i === 2 && c === 1
        ? 'synthetic-bars-with-a-file-name-far-longer-than-any-column-has-room-for-in-the-table-0042.png'
        : `synthetic-${i}.png`;
      writeFileSync(path.join(dir, cls, name), encodePng({ width: size, height: size, channels: 1, pixels }));
    }
  });
  writeFileSync(path.join(dir, 'notes.txt'), 'not an image\n');
  return { dir, files: CLASSES.length * 3 + 1 };
}

// A folder of real X-rays (copies in a temp dir, never in the repository), when the data is here.
function writeXrayFolder(perClass = 4) {
  const dir = path.join(scratch, 'xray');
  for (const cls of readdirSync(xrayDir).filter((n) => !n.startsWith('.')).sort()) {
    mkdirSync(path.join(dir, cls), { recursive: true });
    for (const file of readdirSync(path.join(xrayDir, cls)).sort().slice(0, perClass)) {
      copyFileSync(path.join(xrayDir, cls, file), path.join(dir, cls, file));
    }
  }
  return dir;
}

async function waitForBatch(page, count) {
  await page.waitForFunction((count) => {
    const { images, batch } = window.loupe.state;
    return images.count === count && images.pending === 0 && batch.total > 0 && batch.done === batch.total &&
      batch.inFlight === 0;
  }, count, { timeout: 180_000, polling: 250 });
}

// Moves the mouse off the page's widgets (to the footer's left end) so no tooltip shows.
async function parkMouse(page) {
  const { height } = page.viewportSize();
  await page.mouse.move(2, height - 4);
}

// The view as drawn a few frames after a change: nothing may be clipped.
async function assertNothingClipped(page, view) {
  await framesPass(page, 4);
  const { clipped, canvas } = await page.evaluate(() => window.loupe.state);
  const size = `${page.viewportSize().width}x${page.viewportSize().height}@${canvas.pixelRatio}`;
  assert.deepEqual(clipped, [], `${view} at ${size}: text cut off:\n${JSON.stringify(clipped, null, 1)}`);
}

async function screenshot(page, name) {
  await framesPass(page, 3);
  await page.screenshot({ path: path.join(artifactsDir(), name) });
}

// --- the tests ---------------------------------------------------------------------------------

test('first visit: the empty state and the keyboard help, nothing cut off at any size, in both languages', async () => {
  for (const [locale, language] of LOCALES) {
    const { context, page, events } = await openPage(browser, site.url, { locale });
    try {
      await waitForApp(page, events);
      await waitForModel(page, events);
      let state = await page.evaluate(() => window.loupe.state);
      assert.equal(state.ui.language, language, `navigator.language ${locale} picks ${language}`);
      assert.equal(await page.evaluate(() => document.documentElement.lang), language);
      assert.equal(state.images.count, 0);
      // The sidebar's per-class metrics open (they stay open at every size below).
      await clickWidget(page, 'perClassMetrics');
      await parkMouse(page);
      for (const size of SIZES) {
        await page.setViewportSize(size);
        await assertNothingClipped(page, `first visit (${language})`);
        await page.keyboard.press('?');
        await page.waitForFunction(() => window.loupe.state.ui.showHelp, null, { timeout: 10_000 });
        await assertNothingClipped(page, `keyboard help (${language})`);
        if (size.width === 1280) await screenshot(page, `web-help-${language}.png`);
        // ImGui sees which keys are down once a frame: hold Escape for a few frames.
        await page.keyboard.down('Escape');
        await framesPass(page, 2);
        await page.keyboard.up('Escape');
        await page.waitForFunction(() => !window.loupe.state.ui.showHelp, null, { timeout: 10_000 });
        if (size.width === 1280) await screenshot(page, `web-empty-${language}.png`);
      }
      state = await page.evaluate(() => window.loupe.state);
      assert.equal(state.ui.showHelp, false);
      assertNoProblems(events, site.origin);
    } finally {
      await context.close();
    }
  }
});

// Opens `dir`, selects the first image, then checks table + sidebar + viewer and the evaluation
// at every size; screenshots at 1280x800 when `shots` names them.
async function checkMainViews(page, events, dir, files, { sizes = SIZES, shots } = {}) {
  await page.setInputFiles('#open-folder', dir);
  await waitForBatch(page, files);
  await page.keyboard.press('ArrowDown');
  await page.waitForFunction(() => {
    const { images, heatMap } = window.loupe.state;
    return images.selected >= 0 && images.view.entry === images.selected && heatMap.drawn;
  }, null, { timeout: 60_000 });
  await parkMouse(page);
  for (const size of sizes) {
    await page.setViewportSize(size);
    await assertNothingClipped(page, 'table, sidebar and viewer');
    if (shots && size.width === 1280) await screenshot(page, `web-table-${shots}.png`);
    await clickWidget(page, 'evaluation');
    await page.waitForFunction(() => window.loupe.state.showEvaluation && window.loupe.state.evaluation?.matrix, null,
                               { timeout: 30_000 });
    await parkMouse(page);
    await assertNothingClipped(page, 'evaluation with the confusion matrix');
    if (shots && size.width === 1280) await screenshot(page, `web-evaluation-${shots}.png`);
    await clickWidget(page, 'evaluation');
    await page.waitForFunction(() => !window.loupe.state.showEvaluation, null, { timeout: 10_000 }).catch(async (error) => {
      await page.screenshot({ path: path.join(artifactsDir(), 'web-layout-failure.png') });
      const { widgets } = await page.evaluate(() => window.loupe.state);
      assert.fail(`the evaluation did not close at ${JSON.stringify(size)} (${error.message}); widgets ${JSON.stringify(widgets)}`);
    });
    await parkMouse(page);
  }
}

test('a folder of synthetic images: table, viewer, evaluation; nothing cut off at any size, in both languages', async () => {
  const { dir, files } = writeSyntheticFolder();
  for (const [locale, language] of LOCALES) {
    const { context, page, events } = await openPage(browser, site.url, { locale });
    try {
      await waitForApp(page, events);
      await waitForModel(page, events);
      await checkMainViews(page, events, dir, files, { shots: language });
      // The long file name takes the ellipsis path: shortened on purpose, never clipped.
      const { ellipsised } = await page.evaluate(() => window.loupe.state);
      assert.ok(ellipsised.some((e) => e.text.includes('far-longer-than-any-column')),
                `the long name is shortened with an ellipsis: ${JSON.stringify(ellipsised)}`);
      assertNoProblems(events, site.origin);
    } finally {
      await context.close();
    }
  }
});

test('at device scale 2 (HiDPI): crisp text, nothing cut off, in both languages', async () => {
  const { dir, files } = writeSyntheticFolder();
  for (const [locale, language] of LOCALES) {
    const { context, page, events } = await openPage(browser, site.url, { locale, deviceScaleFactor: 2 });
    try {
      await waitForApp(page, events);
      await waitForModel(page, events);
      const { canvas } = await page.evaluate(() => window.loupe.state);
      assert.deepEqual(canvas, { width: 2560, height: 1600, pixelRatio: 2 }, 'the backbuffer is at device resolution');
      await assertNothingClipped(page, `first visit (${language}, scale 2)`);
      await checkMainViews(page, events, dir, files, { sizes: [{ width: 1280, height: 800 }] });
      if (language === 'en') await screenshot(page, 'web-table-en-scale2.png');
      assertNoProblems(events, site.origin);
    } finally {
      await context.close();
    }
  }
});

test('a folder of real chest X-rays: table, viewer, evaluation; nothing cut off at any size', async (t) => {
  if (!existsSync(xrayDir)) return t.skip(`no data at ${xrayDir} (set LOUPE_DATA_DIR)`);
  const dir = writeXrayFolder();
  const files = readdirSync(dir).reduce((n, cls) => n + readdirSync(path.join(dir, cls)).length, 0);
  for (const [locale] of LOCALES) {
    const { context, page, events } = await openPage(browser, site.url, { locale });
    try {
      await waitForApp(page, events);
      await waitForModel(page, events);
      // No screenshots here: they would show patient images.
      await checkMainViews(page, events, dir, files);
      assertNoProblems(events, site.origin);
    } finally {
      await context.close();
    }
  }
});

test('the clipped-text detector fires on a window far below the minimum size', async () => {
  const { context, page, events } = await openPage(browser, site.url, { viewport: { width: 1024, height: 700 } });
  try {
    await waitForApp(page, events);
    await waitForModel(page, events);
    await parkMouse(page);
    await assertNothingClipped(page, 'first visit');
    // 320 px is far below the 1024 px the layout is made for (at 560 px everything still wraps or
    // shortens): the menu bar's controls and badges no longer fit, and the app says which.
    await page.setViewportSize({ width: 320, height: 480 });
    await framesPass(page, 4);
    const { clipped } = await page.evaluate(() => window.loupe.state);
    assert.ok(clipped.length > 0, 'a 320 px window cuts text off and the detector reports it');
    for (const entry of clipped) {
      assert.ok(entry.text && entry.window && entry.needed > entry.available,
                `an entry names the text, its window and the widths: ${JSON.stringify(entry)}`);
    }
    console.log(`at 320x480, ${clipped.length} texts reported cut off, e.g. ${JSON.stringify(clipped[0])}`);
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

test('tooltips sit beside what they describe, and go away once it is clicked', async () => {
  const { dir, files } = writeSyntheticFolder();
  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events);
    await waitForModel(page, events);
    await page.setInputFiles('#open-folder', dir);
    await waitForBatch(page, files);
    const overlaps = (a, b) => a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
    for (const id of ['exportCsv', 'evaluation', 'openModel', 'textLarger', 'help']) {
      const [x, y, width, height] = await page.evaluate((id) => window.loupe.state.widgets[id], id);
      await page.mouse.move(x + width / 2, y + height / 2);
      await page.waitForFunction(() => window.loupe.state.tooltip, null, { timeout: 10_000 });
      const { tooltip } = await page.evaluate(() => window.loupe.state);
      assert.ok(!overlaps(tooltip.item, tooltip.tooltip), `${id}: the tooltip ${tooltip.tooltip} covers its item ${tooltip.item}`);
      const { width: pageWidth, height: pageHeight } = page.viewportSize();
      assert.ok(tooltip.tooltip[0] >= 0 && tooltip.tooltip[0] + tooltip.tooltip[2] <= pageWidth + 0.5 &&
                tooltip.tooltip[1] >= 0 && tooltip.tooltip[1] + tooltip.tooltip[3] <= pageHeight + 0.5,
                `${id}: the tooltip ${tooltip.tooltip} is inside the page`);
    }
    // A click on the button hides its tooltip while the mouse stays on it (it would cover what the
    // click opened).
    await clickWidget(page, 'evaluation');
    await framesPass(page, 3);
    assert.equal(await page.evaluate(() => window.loupe.state.tooltip), null, 'no tooltip after the click');
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

test('text size: A+/A- change it, it is the only thing stored and survives a reload; the language switches', async () => {
  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events);
    await waitForModel(page, events);
    const before = await page.evaluate(() => window.loupe.state.ui);
    assert.equal(before.language, 'en');
    await clickWidget(page, 'textLarger');
    await clickWidget(page, 'textLarger');
    await page.waitForFunction((size) => window.loupe.state.ui.fontSize === size, before.fontSize + 2, { timeout: 10_000 });
    await clickWidget(page, 'textSmaller');
    await page.waitForFunction((size) => window.loupe.state.ui.fontSize === size, before.fontSize + 1, { timeout: 10_000 });
    await parkMouse(page);
    await assertNothingClipped(page, `first visit at text size ${before.fontSize + 1}`);

    // The language switch in the page: the app, <html lang> and the page's own texts follow.
    await clickWidget(page, 'language');
    await clickWidget(page, 'language-id');
    await page.waitForFunction(() => window.loupe.state.ui.language === 'id', null, { timeout: 10_000 });
    await page.waitForFunction(() => document.documentElement.lang === 'id' &&
                                     document.querySelector('[data-i18n="html.loading"]').textContent.startsWith('Memuat'),
                               null, { timeout: 10_000 });

    const stored = await page.evaluate(() => Object.fromEntries(Object.entries(localStorage)));
    assert.deepEqual(stored, { 'loupe.fontSize': String(before.fontSize + 1) }, 'the text size, and nothing else, is stored');
    const session = await page.evaluate(() => sessionStorage.length);
    assert.equal(session, 0);

    await page.reload();
    await waitForApp(page, events);
    const after = await page.evaluate(() => window.loupe.state.ui);
    assert.equal(after.fontSize, before.fontSize + 1, 'the text size survives a reload');
    assert.equal(after.language, 'en', 'the language follows the browser again (it is not stored)');
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

test('without storage the text size still changes, and nothing fails', async () => {
  const { context, page, events } = await openPage(browser, null);
  try {
    // Some private modes and sandboxed frames: every use of localStorage throws.
    await context.addInitScript(() => Object.defineProperty(window, 'localStorage', {
      get() { throw new DOMException('storage is disabled', 'SecurityError'); },
    }));
    await page.goto(site.url);
    await waitForApp(page, events);
    const before = await page.evaluate(() => window.loupe.state.ui.fontSize);
    await clickWidget(page, 'textLarger');
    await page.waitForFunction((size) => window.loupe.state.ui.fontSize === size, before + 1, { timeout: 10_000 });
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});
