// The web shell: the installed page starts, shows its state, loads ONNX Runtime Web with threads,
// and never talks to anything but the server it came from.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  artifactsDir, assertNoProblems, colourStats, decodePng, describeEvents, launchBrowser, openPage,
  requireBuiltSite, startSite, waitForApp,
} from './helpers.mjs';

let site;
let browser;
before(async () => {
  requireBuiltSite();
  site = await startSite();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await site?.close();
});

test('the app starts, loads ONNX Runtime Web with threads, and stays local', async () => {
  const { context, page, events } = await openPage(browser, site.url);
  try {
    const state = await waitForApp(page, events, { minFrames: 1, ort: true });
    assert.equal(state.ort.status, 'ready',
      `ONNX Runtime Web did not load: ${state.ort.error}\n${describeEvents(events)}`);
    assert.match(state.ort.version, /^\d+\.\d+\.\d+/, 'ORT version');

    const isolated = await page.evaluate(() => self.crossOriginIsolated);
    assert.equal(isolated, true, 'the page is not cross-origin isolated: check the COOP/COEP headers');
    assert.equal(state.crossOriginIsolated, true, 'the app saw crossOriginIsolated = false');
    assert.ok(state.ort.threads > 1,
      `ORT runs on ${state.ort.threads} thread(s) (hardwareConcurrency ${state.hardwareConcurrency})`);

    assert.match(state.coreVersion, /^\d+\.\d+\.\d+$/, 'loupe::version()');
    assert.equal(state.target, 'wasm');
    assert.ok(state.opencvVersion, 'OpenCV version from loupe::build_info()');

    // Keep drawing: the frame loop runs on requestAnimationFrame.
    const later = await waitForApp(page, events, { minFrames: state.frames + 10 });
    assert.ok(later.frames > 10, `only ${later.frames} frames drawn`);
    assert.ok(later.canvas.width >= 1280 && later.canvas.height >= 800,
      `canvas backbuffer ${later.canvas.width}x${later.canvas.height} does not fill the 1280x800 window`);

    const overlayHidden = await page.locator('#loading').isHidden();
    assert.ok(overlayHidden, 'the "Loading Loupe..." overlay is still shown');

    const png = await page.screenshot({ type: 'png' });
    const screenshot = path.join(artifactsDir(), 'web-shell.png');
    writeFileSync(screenshot, png);
    const { distinct, dominantShare } = colourStats(decodePng(png));
    assert.ok(distinct > 16 && dominantShare < 0.98,
      `the screenshot looks blank (${distinct} colours, ${(dominantShare * 100).toFixed(1)}% one colour): ${screenshot}`);

    assertNoProblems(events, site.origin);
    // The ORT runtime really came from this server (not from a CDN fallback).
    const urls = events.requests.map((r) => new URL(r.url).pathname);
    for (const file of ['/loupe.wasm', '/ort/ort.wasm.min.mjs', '/ort/ort-wasm-simd-threaded.wasm']) {
      assert.ok(urls.includes(file), `${file} was never requested; requests: ${urls.join(', ')}`);
    }
  } finally {
    await context.close();
  }
});

test('the canvas follows window resizes and devicePixelRatio', async () => {
  const { context, page, events } = await openPage(browser, site.url,
    { viewport: { width: 900, height: 600 }, deviceScaleFactor: 2 });
  try {
    let state = await waitForApp(page, events, { minFrames: 2, ort: false });
    assert.deepEqual(state.canvas, { width: 1800, height: 1200, pixelRatio: 2 });

    await page.setViewportSize({ width: 700, height: 500 });
    await page.waitForFunction(() => window.loupe.state.canvas.width === 1400, null, { timeout: 10_000 })
      .catch(async () => assert.fail(`canvas after resize: ${JSON.stringify(await page.evaluate(() => window.loupe.state.canvas))}`));
    state = await page.evaluate(() => window.loupe.state);
    assert.deepEqual(state.canvas, { width: 1400, height: 1000, pixelRatio: 2 });
    await waitForApp(page, events, { ort: true });
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});

test('without WebGL 2 the page says so instead of hanging', async () => {
  const noWebGl = await launchBrowser({ args: ['--disable-3d-apis'] });
  try {
    const { page, events } = await openPage(noWebGl, site.url);
    await page.locator('#loading.error').waitFor({ timeout: 30_000 }).catch(async () => {
      const overlay = await page.locator('#loading').textContent();
      assert.fail(`no error shown without WebGL; overlay: "${overlay}"\n${describeEvents(events)}`);
    });
    assert.match(await page.locator('#loading').textContent(), /WebGL 2 is not available/);
    assert.deepEqual(events.pageErrors, []);
  } finally {
    await noWebGl.close();
  }
});
