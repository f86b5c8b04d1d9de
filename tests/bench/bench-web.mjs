// Benchmark (not a test) for the web app, in one run on this machine (scripts/bench-web):
//   (a) cold load: a fresh browser profile opens the page, the default model loads, one real image
//       is opened, until its prediction is on screen (median of COLD_RUNS fresh contexts);
//   (b) per-image inference latency in the page (ORT Web, wasm, the page's thread count, through
//       the same bridge the app uses) vs native ONNX Runtime with the same model and threads;
//   (c) bytes the page downloads on a cold load (what the network carried: gzip where served).
// Usage: node tests/bench/bench-web.mjs [IMAGE] (default: the first chest X-ray in LOUPE_DATA_DIR)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { launchBrowser, publicDir, repoRoot, startSite } from '../browser/helpers.mjs';

const COLD_RUNS = 3;
const LATENCY_REPS = 50;
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const dataDir = path.resolve(repoRoot, process.env.LOUPE_DATA_DIR ?? '../shared/data');
function defaultImage() {
  const root = path.join(dataDir, 'chest-xray-covid');
  const cls = readdirSync(root).sort()[0];
  return path.join(root, cls, readdirSync(path.join(root, cls)).sort()[0]);
}
const image = process.argv[2] ?? defaultImage();
const manifest = JSON.parse(readFileSync(path.join(publicDir, 'models/models.json'), 'utf8'));
const modelFile = path.join(publicDir, 'models', manifest.default);
const nativeTool = path.join(repoRoot, process.env.LOUPE_NATIVE_BUILD ?? 'build/native', 'tests/bench_ort_model');
if (!existsSync(nativeTool)) throw new Error(`${nativeTool} missing: scripts/build native`);

const site = await startSite();
const browser = await launchBrowser();
const results = { image, model: manifest.default, chromium: browser.version(), cold: [], bytes: null };
try {
  // (a) + (c): fresh contexts (no HTTP cache, no service worker).
  for (let run = 0; run < COLD_RUNS; ++run) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const responses = [];
    context.on('requestfinished', async (request) => {
      const sizes = await request.sizes().catch(() => null);
      const response = await request.response().catch(() => null);
      responses.push({ url: request.url(), status: response?.status(), body: sizes?.responseBodySize ?? 0,
                       headers: sizes?.responseHeadersSize ?? 0, fromServiceWorker: !!request.serviceWorker() });
    });
    const start = Date.now();
    await page.goto(site.url);
    await page.waitForSelector('#open-files', { state: 'attached' });
    await page.setInputFiles('#open-files', image);
    await page.waitForFunction(() => window.loupe?.state?.images?.list?.[0]?.prediction?.status === 'done',
                               null, { timeout: 120_000, polling: 20 });
    const ms = Date.now() - start;
    const state = await page.evaluate(() => ({ threads: window.loupe.state.ort.threads, model: window.loupe.state.model.file }));
    await page.waitForTimeout(500);  // late responses (service worker registration) are counted too
    const page_bytes = responses.filter((r) => !r.fromServiceWorker).reduce((sum, r) => sum + r.body + r.headers, 0);
    results.cold.push({ ms, threads: state.threads });
    if (run === 0) {
      results.bytes = {
        total: page_bytes,
        files: responses.filter((r) => !r.fromServiceWorker)
          .map((r) => ({ path: new URL(r.url).pathname, status: r.status, bytes: r.body + r.headers }))
          .sort((a, b) => b.bytes - a.bytes),
        serviceWorkerBytes: responses.filter((r) => r.fromServiceWorker).reduce((sum, r) => sum + r.body + r.headers, 0),
      };
    }
    await context.close();
  }

  // (b) latency in the page, through the bridge the app uses (ORT in its worker).
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(site.url);
  await page.waitForFunction(() => window.loupe?.state?.model?.status === 'ready', null, { timeout: 120_000 });
  const browserLatency = await page.evaluate(async ({ file, reps }) => {
    const bridge = window.loupe.ortBridge;
    const bytes = new Uint8Array(await (await fetch(`models/${file}`)).arrayBuffer());
    const session = await bridge.createSession(bytes);
    const [c, h, w] = window.loupe.state.model.input;
    const output = window.loupe.state.model.scoresOutput;
    const times = [];
    for (let r = 0; r < reps + 5; ++r) {
      const input = new Float32Array(c * h * w).fill(0.5);
      const start = performance.now();
      await bridge.run(session.id, input, [1, c, h, w], [output]);
      if (r >= 5) times.push(performance.now() - start);
    }
    await bridge.releaseSession(session.id);
    times.sort((a, b) => a - b);
    return { median_ms: times[Math.floor(times.length / 2)], min_ms: times[0], threads: window.loupe.state.ort.threads };
  }, { file: manifest.default, reps: LATENCY_REPS });
  await context.close();
  const native = JSON.parse(execFileSync(nativeTool, [modelFile, String(browserLatency.threads), String(LATENCY_REPS)],
                                         { encoding: 'utf8' }));
  results.latency = { browser: browserLatency, native, ratio: browserLatency.median_ms / native.median_ms };
} finally {
  await browser.close();
  await site.close();
}

const coldMs = median(results.cold.map((r) => r.ms));
console.log(`model ${results.model}; image ${path.relative(repoRoot, image)}; Chromium ${results.chromium}`);
console.log('| measure | value | target |\n|---|---|---|');
console.log(`| (a) cold load to first prediction, median of ${COLD_RUNS} | ${coldMs} ms (${results.cold.map((r) => r.ms).join(', ')}) | <= 2000 ms |`);
console.log(`| (b) inference latency, browser (ORT Web wasm, ${results.latency.browser.threads} threads) | ${results.latency.browser.median_ms.toFixed(1)} ms median | |`);
console.log(`| (b) inference latency, native ONNX Runtime (${results.latency.native.threads} threads) | ${results.latency.native.median_ms.toFixed(1)} ms median | |`);
console.log(`| (b) browser / native | ${results.latency.ratio.toFixed(2)}x | <= 2x |`);
console.log(`| (c) bytes downloaded on a cold load | ${(results.bytes.total / 1e6).toFixed(2)} MB | <= 20 MB |`);
console.log('\nlargest downloads:');
for (const file of results.bytes.files.slice(0, 6)) console.log(`  ${(file.bytes / 1e6).toFixed(2)} MB  ${file.path}`);
console.log(`  (service worker precache after the load: ${(results.bytes.serviceWorkerBytes / 1e6).toFixed(2)} MB)`);
mkdirSync(path.join(repoRoot, 'build/bench'), { recursive: true });
writeFileSync(path.join(repoRoot, 'build/bench/bench-web.json'), JSON.stringify(results, null, 2));
