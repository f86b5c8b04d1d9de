// Benchmark (not a test) of the web app in headless Chromium on this machine, in one run
// (scripts/bench-web):
//   (a) cold load to the first prediction: a fresh browser profile opens the page, the default model
//       loads, one real image is opened, until its prediction is in the page state; median of
//       --cold-runs fresh profiles;
//   (b) warm load: the same profile again after the browser was closed and restarted (the second
//       visit: service worker, HTTP cache, V8's cache of compiled wasm), to the first prediction;
//   (c) single-image latency of each model (--model, any .onnx: fp32, int8...) in the page (ORT Web
//       through the page's own bridge, its threads) vs native ONNX Runtime, same file and threads;
//   (d) folder throughput: --folder-images real chest X-rays (read in place from LOUPE_DATA_DIR),
//       opened in the page with the model ready, to the last prediction; vs `loupe predict` on the
//       same files and threads (process start included), side by side; with the page's own
//       breakdown of where the batch's time went (state.profile);
//   (e) bytes the network carried on a cold load (and on the warm one).
// With --baseline-site DIR (an older build of public/), (a), (b), (d) and (e) are measured for it
// too, interleaved with this site's runs, so before and after share the machine's load.
//
//   node tests/bench/bench-web.mjs [--model FILE]... [--image FILE] [--folder-images N]
//        [--cold-runs N] [--folder-runs N] [--baseline-site DIR] [--only cold,latency,folder]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

import { chromiumArgs, publicDir, repoRoot, startSite } from '../browser/helpers.mjs';

const { values: options } = parseArgs({
  options: {
    model: { type: 'string', multiple: true, default: [] },
    image: { type: 'string' },
    'folder-images': { type: 'string', default: '200' },
    'cold-runs': { type: 'string', default: '5' },
    'folder-runs': { type: 'string', default: '3' },
    'latency-reps': { type: 'string', default: '50' },
    'baseline-site': { type: 'string' },
    only: { type: 'string', default: 'cold,latency,folder' },
    out: { type: 'string', default: path.join(repoRoot, 'build/bench/bench-web.json') },
  },
});
const only = new Set(options.only.split(','));
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const executablePath = process.env.LOUPE_CHROMIUM ?? '/usr/bin/chromium';

const dataDir = path.resolve(repoRoot, process.env.LOUPE_DATA_DIR ?? '../shared/data');
const xrayDir = path.join(dataDir, 'chest-xray-covid');
if (!existsSync(xrayDir)) throw new Error(`${xrayDir} missing: the benchmark reads real X-rays (LOUPE_DATA_DIR)`);
// The folder: the same share of every class, in name order (deterministic), read where they are.
function folderImages(count) {
  const classes = readdirSync(xrayDir).filter((name) => !name.startsWith('.')).sort();
  const perClass = classes.map((cls) => readdirSync(path.join(xrayDir, cls)).sort().map((f) => path.join(xrayDir, cls, f)));
  const files = [];
  for (let i = 0; files.length < count && perClass.some((list) => i < list.length); ++i) {
    for (const list of perClass) if (i < list.length && files.length < count) files.push(list[i]);
  }
  return files.sort();
}
const image = options.image ?? folderImages(1)[0];
const manifest = JSON.parse(readFileSync(path.join(publicDir, 'models/models.json'), 'utf8'));
const models = options.model.length ? options.model.map((m) => path.resolve(m))
                                    : [path.join(publicDir, 'models', manifest.default)];
const build = path.join(repoRoot, process.env.LOUPE_NATIVE_BUILD ?? 'build/native');
const nativeLatencyTool = path.join(build, 'tests/bench_ort_model');
const loupeCli = path.join(build, 'native/loupe');
function requireTool(tool) {
  if (!existsSync(tool)) throw new Error(`${tool} missing: cmake --build --preset native --target bench_ort_model loupe`);
  return tool;
}

// --- browser pieces ------------------------------------------------------------------------------

const viewport = { width: 1280, height: 800 };

// Records what the network carried (bodies + headers; gzip where served), page and workers alike.
function recordBytes(context) {
  const responses = [];
  context.on('requestfinished', async (request) => {
    const sizes = await request.sizes().catch(() => null);
    const response = await request.response().catch(() => null);
    responses.push({ url: request.url(), status: response?.status(), bytes: (sizes?.responseBodySize ?? 0) + (sizes?.responseHeadersSize ?? 0),
                     fromServiceWorker: !!request.serviceWorker() || !!response?.fromServiceWorker?.() });
  });
  return {
    summary() {
      const network = responses.filter((r) => !r.fromServiceWorker);
      return {
        total: network.reduce((sum, r) => sum + r.bytes, 0),
        files: network.map((r) => ({ path: new URL(r.url).pathname, status: r.status, bytes: r.bytes })).sort((a, b) => b.bytes - a.bytes),
        serviceWorkerBytes: responses.filter((r) => r.fromServiceWorker).reduce((sum, r) => sum + r.bytes, 0),
      };
    },
  };
}

// Opens the page, then one image as soon as the page can take it; ms until its prediction is in
// the page state.
async function timeFirstPrediction(page, url) {
  const start = Date.now();
  await page.goto(url);
  await page.waitForSelector('#open-files', { state: 'attached' });
  await page.setInputFiles('#open-files', image);
  await page.waitForFunction(() => window.loupe?.state?.images?.list?.[0]?.prediction?.status === 'done',
                             null, { timeout: 120_000, polling: 20 });
  const ms = Date.now() - start;
  // The page's own timeline (ms since navigation): ORT's bridge measures its load, the session and
  // the first runs; resource timing has the downloads the page made itself.
  const timeline = await page.evaluate(() => ({
    now: performance.now(),
    measures: performance.getEntriesByType('measure').filter((m) => m.name.startsWith('loupe:'))
      .map((m) => ({ name: m.name, start: m.startTime, end: m.startTime + m.duration })),
    resources: performance.getEntriesByType('resource')
      .map((r) => ({ name: new URL(r.name).pathname, start: r.startTime, end: r.responseEnd }))
      .filter((r) => /\.(wasm|onnx|mjs)$|loupe\.js$/.test(r.name)),
  }));
  return { ms, timeline };
}

// (a) + (b) + (e): one fresh profile, a cold visit, the browser closed, then a warm visit.
async function coldAndWarm(site) {
  const profile = mkdtempSync(path.join(tmpdir(), 'loupe-bench-profile-'));
  const launch = () => chromium.launchPersistentContext(profile, { executablePath, args: [...chromiumArgs], viewport });
  try {
    let context = await launch();
    let bytes = recordBytes(context);
    let page = context.pages()[0] ?? await context.newPage();
    const { ms: coldMs, timeline } = await timeFirstPrediction(page, site.url);
    const state = await page.evaluate(() => ({ threads: window.loupe.state.ort.threads,
                                               isolated: window.loupe.state.crossOriginIsolated }));
    // The service worker installs after the first model is in, and V8 writes compiled wasm to its
    // cache once it has tiered up: give both time before the browser closes.
    await page.evaluate(() => navigator.serviceWorker?.ready);
    await page.waitForTimeout(4000);
    const coldBytes = bytes.summary();
    await context.close();

    context = await launch();
    bytes = recordBytes(context);
    page = context.pages()[0] ?? await context.newPage();
    const { ms: warmMs, timeline: warmTimeline } = await timeFirstPrediction(page, site.url);
    await page.waitForTimeout(500);
    const warmBytes = bytes.summary();
    await context.close();
    return { coldMs, warmMs, threads: state.threads, isolated: state.isolated, coldBytes, warmBytes, timeline, warmTimeline };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

// A page of `site` with `model` active (the default one, or opened with "Open model...").
async function pageWithModel(browser, site, model) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(site.url);
  await page.waitForFunction(() => window.loupe?.state?.model?.status === 'ready', null, { timeout: 120_000 });
  const name = path.basename(model);
  if (await page.evaluate(() => window.loupe.state.model.file) !== name) {
    await page.setInputFiles('#open-model', model);
    await page.waitForFunction((name) => window.loupe.state.model.file === name && window.loupe.state.model.status === 'ready',
                               name, { timeout: 120_000 });
  }
  return { context, page };
}

// (c) in the page: the model's scores output at batch 1 on a fixed input, through the app's bridge.
async function browserLatency(browser, site, model, reps) {
  const { context, page } = await pageWithModel(browser, site, model);
  try {
    const bytes = [...readFileSync(model)];
    return await page.evaluate(async ({ bytes, reps }) => {
      const bridge = window.loupe.ortBridge;
      const session = await bridge.createSession(new Uint8Array(bytes));
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
    }, { bytes, reps });
  } finally {
    await context.close();
  }
}

// (d) in the page: the folder opened with the model ready, to the last prediction.
async function browserFolder(browser, site, model, files) {
  const { context, page } = await pageWithModel(browser, site, model);
  try {
    const threads = await page.evaluate(() => window.loupe.state.ort.threads);
    const start = Date.now();
    await page.setInputFiles('#open-files', files);
    await page.waitForFunction((count) => {
      const { batch } = window.loupe.state;
      return batch.total === count && batch.done === count && !batch.running;
    }, files.length, { timeout: 600_000, polling: 50 });
    const ms = Date.now() - start;
    const state = await page.evaluate(() => window.loupe.state);
    const ort = await page.evaluate(() => window.loupe.ortBridge.stats ?? null);
    const list = state.images.list ?? [];
    return { ms, imagesPerSecond: files.length / (ms / 1000), threads, frames: state.frames, profile: state.profile ?? null, ort,
             predicted: list.filter((e) => e.prediction?.status === 'done').length, heapBytes: state.memory?.heapBytes };
  } finally {
    await context.close();
  }
}

// (d) natively: `loupe predict` on the same files, threads and model, process start included.
function nativeFolder(model, files, threads) {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'loupe-bench-predict-')), 'predictions.csv');
  const start = process.hrtime.bigint();
  const run = spawnSync(requireTool(loupeCli), ['predict', '-m', model, '--threads', String(threads), '-q', '-o', out, ...files],
                        { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (run.status !== 0) throw new Error(`loupe predict failed: ${run.stderr}`);
  const rows = readFileSync(out, 'utf8').trim().split('\n').length - 1;
  rmSync(path.dirname(out), { recursive: true, force: true });
  return { ms, imagesPerSecond: files.length / (ms / 1000), rows };
}

// --- the run ---------------------------------------------------------------------------------------

const sites = [{ name: 'this build', site: await startSite() }];
if (options['baseline-site']) sites.push({ name: 'baseline', site: await startSite({ root: path.resolve(options['baseline-site']) }) });
const results = { image, models: models.map((m) => path.basename(m)), sites: sites.map((s) => s.name), load: {}, cold: {}, latency: [], folder: [] };
const browser = await chromium.launch({ executablePath, args: [...chromiumArgs] });
results.chromium = browser.version();
try {
  if (only.has('cold')) {
    results.load.cold = load();
    const runs = Number(options['cold-runs']);
    for (const { name } of sites) results.cold[name] = [];
    for (let run = 0; run < runs; ++run) {
      for (const { name, site } of sites) results.cold[name].push(await coldAndWarm(site));
    }
  }
  if (only.has('latency')) {
    results.load.latency = load();
    for (const model of models) {
      const browserSide = await browserLatency(browser, sites[0].site, model, Number(options['latency-reps']));
      const native = JSON.parse(execFileSync(requireTool(nativeLatencyTool), [model, String(browserSide.threads), options['latency-reps']],
                                             { encoding: 'utf8' }));
      results.latency.push({ model: path.basename(model), browser: browserSide, native, ratio: browserSide.median_ms / native.median_ms });
    }
  }
  if (only.has('folder')) {
    results.load.folder = load();
    const files = folderImages(Number(options['folder-images']));
    for (const model of models) {
      const entry = { model: path.basename(model), images: files.length, browser: {}, native: [] };
      for (const { name } of sites) entry.browser[name] = [];
      for (let run = 0; run < Number(options['folder-runs']); ++run) {
        for (const { name, site } of sites) entry.browser[name].push(await browserFolder(browser, site, model, files));
        entry.native.push(nativeFolder(model, files, entry.browser[sites[0].name][0].threads));
      }
      results.folder.push(entry);
    }
  }
  results.load.end = load();
} finally {
  await browser.close();
  for (const { site } of sites) await site.close();
}

// --- the report -------------------------------------------------------------------------------------

const mb = (bytes) => `${(bytes / 1e6).toFixed(2)} MB`;
const list = (values, digits = 0) => values.map((v) => v.toFixed(digits)).join(', ');
console.log(`Chromium ${results.chromium}; image ${path.relative(dataDir, image)}; load average (1, 5, 15 min) at the start of ` +
            `each part: ${Object.entries(results.load).map(([k, v]) => `${k} ${v}`).join('; ')}`);
console.log('| measure | site | value | target |\n|---|---|---|---|');
for (const { name } of sites) {
  const runs = results.cold[name];
  if (!runs?.length) continue;
  const cold = runs.map((r) => r.coldMs), warm = runs.map((r) => r.warmMs);
  console.log(`| (a) cold load to first prediction, median of ${runs.length} | ${name} | ${median(cold)} ms (${list(cold)}); ${runs[0].threads} threads | <= 1200 ms |`);
  console.log(`| (b) warm load (second visit), median of ${runs.length} | ${name} | ${median(warm)} ms (${list(warm)}) | <= 600 ms |`);
  console.log(`| (e) bytes on a cold load | ${name} | ${mb(runs[0].coldBytes.total)} (warm visit: ${mb(runs[0].warmBytes.total)}) | <= 6 MB (int8) |`);
}
for (const l of results.latency) {
  console.log(`| (c) latency ${l.model}, browser (ORT Web, ${l.browser.threads} threads) / native ORT (${l.native.threads} threads) | this build | ` +
              `${l.browser.median_ms.toFixed(1)} / ${l.native.median_ms.toFixed(1)} ms = ${l.ratio.toFixed(2)}x | <= 2.0x |`);
}
for (const f of results.folder) {
  const native = f.native.map((r) => r.imagesPerSecond);
  for (const { name } of sites) {
    const page = f.browser[name].map((r) => r.imagesPerSecond);
    console.log(`| (d) ${f.images} images ${f.model}: page / loupe predict (${f.browser[name][0].threads} threads), medians of ${page.length} | ${name} | ` +
                `${median(page).toFixed(1)} (${list(page, 1)}) / ${median(native).toFixed(1)} (${list(native, 1)}) images/s = ` +
                `${(median(page) / median(native)).toFixed(2)}x | >= 0.5x |`);
  }
}
for (const f of results.folder) {
  for (const { name } of sites) {
    const run = f.browser[name][0];
    if (!run.profile) continue;
    console.log(`\nwhere the page's time went, ${f.model}, ${name}, first run (${(run.ms / 1000).toFixed(2)} s, ${run.frames} frames):`);
    console.log(`  main thread (ms): ${Object.entries(run.profile).map(([k, v]) => `${k} ${Number(v).toFixed(0)}`).join(', ')}`);
    if (run.ort) {
      console.log(`  ORT (ms, as the page waits for its worker): ${run.ort.runs} runs of ${run.ort.images} images, ${run.ort.runMs.toFixed(0)} ms ` +
                  `(${(run.ort.runMs / Math.max(1, run.ort.images)).toFixed(1)} ms per image; the session and self-test included)`);
    }
  }
}
for (const { name } of sites) {
  const runs = results.cold[name];
  if (!runs?.length) continue;
  for (const [which, key, msKey] of [['cold', 'timeline', 'coldMs'], ['warm', 'warmTimeline', 'warmMs']]) {
    const run = [...runs].sort((a, b) => a[msKey] - b[msKey])[Math.floor(runs.length / 2)];
    const events = [...run[key].resources.map((r) => ({ name: `${r.name} downloaded`, end: r.end })),
                    ...run[key].measures.map((m) => ({ name: `${m.name.slice(6)} (${(m.end - m.start).toFixed(0)} ms)`, end: m.end }))]
      .sort((a, b) => a.end - b.end);
    console.log(`\n${which} load timeline, median run (${name}; ms since navigation): ` +
                `${events.map((e) => `${e.name} ${e.end.toFixed(0)}`).join('; ')}; prediction in the state ${run[key].now.toFixed(0)}`);
  }
}
for (const { name } of sites) {
  const runs = results.cold[name];
  if (!runs?.length) continue;
  console.log(`\nlargest downloads on a cold load (${name}):`);
  for (const file of runs[0].coldBytes.files.slice(0, 6)) console.log(`  ${mb(file.bytes)}  ${file.path}`);
  console.log(`  (through the service worker: ${mb(runs[0].coldBytes.serviceWorkerBytes)})`);
}
mkdirSync(path.dirname(options.out), { recursive: true });
writeFileSync(options.out, JSON.stringify(results, null, 2));
