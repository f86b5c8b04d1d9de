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
// --tune compares ORT Web settings (graph optimisation, threads, spinning, memory arena) on (c);
// --op-profile compares one run's time per operator type, browser vs native (ORT's profilers).
//
//   node tests/bench/bench-web.mjs [--model FILE]... [--image FILE] [--folder-images N]
//        [--cold-runs N] [--folder-runs N] [--baseline-site DIR] [--only cold,latency,folder] [--tune] [--op-profile]
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
    tune: { type: 'boolean', default: false },
    'op-profile': { type: 'boolean', default: false },
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

// (c) in the page: the model's scores output on a fixed input through the app's own bridge (ORT in
// its worker), per image at batch 1 (the latency) and at the app's batch size of 8; and how long
// the session took to create. `ortOptions`: numThreads for the page's ORT (set before the page
// starts), sessionOptions for this session alone: --tune compares settings this way.
async function browserLatency(browser, site, model, reps, ortOptions = null) {
  const context = await browser.newContext({ viewport });
  const { sessionOptions = {}, ...pageOptions } = ortOptions ?? {};
  if (Object.keys(pageOptions).length) await context.addInitScript((options) => { globalThis.loupeOrtOptions = options; }, pageOptions);
  try {
    const page = await context.newPage();
    await page.goto(site.url);
    await page.waitForFunction(() => window.loupe?.state?.model?.status === 'ready', null, { timeout: 120_000 });
    const bytes = readFileSync(model).toString('base64');  // a string crosses into the page quickly
    const fixedBatch = !!sessionOptions.freeDimensionOverrides;
    return await page.evaluate(async ({ bytes, reps, fixedBatch, sessionOptions }) => {
      const bridge = window.loupe.ortBridge;
      const started = performance.now();
      const session = await bridge.createSession(Uint8Array.from(atob(bytes), (c) => c.charCodeAt(0)), sessionOptions);
      const createMs = performance.now() - started;
      const [c, h, w] = window.loupe.state.model.input;
      const output = window.loupe.state.model.scoresOutput;
      const perImage = async (batch, count) => {
        const times = [];
        for (let r = 0; r < count + 3; ++r) {
          const input = new Float32Array(batch * c * h * w).fill(0.5);
          const start = performance.now();
          await bridge.run(session.id, input, [batch, c, h, w], [output]);
          if (r >= 3) times.push((performance.now() - start) / batch);
        }
        times.sort((a, b) => a - b);
        return { median_ms: times[Math.floor(times.length / 2)], min_ms: times[0] };
      };
      const single = await perImage(1, reps);
      const batch8 = fixedBatch ? { median_ms: NaN } : await perImage(8, Math.max(5, Math.round(reps / 4)));
      await bridge.releaseSession(session.id);
      return { ...single, batch8_ms_per_image: batch8.median_ms, create_ms: createMs, threads: window.loupe.state.ort.threads };
    }, { bytes, reps, fixedBatch, sessionOptions });
  } finally {
    await context.close();
  }
}

// Settings --tune compares (createOrtBridge's options; SESSION_OPTIONS in web/ort_bridge.js are the
// page's).
const TUNING = [
  ['as shipped', null],
  ['graph optimisation extended', { sessionOptions: { graphOptimizationLevel: 'extended' } }],
  ['graph optimisation basic', { sessionOptions: { graphOptimizationLevel: 'basic' } }],
  ['graph optimisation disabled', { sessionOptions: { graphOptimizationLevel: 'disabled' } }],
  ['intra-op threads do not spin', { sessionOptions: { extra: { session: { 'session.intra_op.allow_spinning': '0' } } } }],
  ['no CPU memory arena', { sessionOptions: { enableCpuMemArena: false } }],
  ['1 thread', { numThreads: 1 }],
  ['3 threads', { numThreads: 3 }],
  ['4 threads', { numThreads: 4 }],
  // Fixes the batch dimension: a session for batch 1 cannot run batch 8 (measured at batch 1 only).
  ['freeDimensionOverrides batch = 1', { sessionOptions: { freeDimensionOverrides: { batch: 1 } } }],
];

// Per-operator time of one run at batch 1, summed by operator type (ms per run), from ONNX
// Runtime's own profiler: `events` are its Chrome-trace events, `runs` how many runs they cover.
function opTimes(events, runs) {
  const byOp = {};
  for (const event of events) {
    if (event.cat !== 'Node' || !event.name?.endsWith('_kernel_time')) continue;
    const op = event.args?.op_name ?? '?';
    byOp[op] = (byOp[op] ?? 0) + event.dur / 1000 / runs;
  }
  return byOp;
}
const PROFILE_RUNS = 20;

// --op-profile, in the page: the same session through the app's bridge with ORT's profiler on; the
// events arrive as console lines of ORT's worker.
async function browserOpProfile(browser, site, model) {
  const context = await browser.newContext({ viewport });
  try {
    const page = await context.newPage();
    const lines = [];
    page.on('console', (message) => lines.push(message.text()));
    await page.goto(site.url);
    await page.waitForFunction(() => window.loupe?.state?.model?.status === 'ready', null, { timeout: 120_000 });
    const bytes = readFileSync(model).toString('base64');  // a string crosses into the page quickly
    const threads = await page.evaluate(async ({ bytes, runs }) => {
      const bridge = window.loupe.ortBridge;
      const session = await bridge.createSession(Uint8Array.from(atob(bytes), (c) => c.charCodeAt(0)), { enableProfiling: true });
      const [c, h, w] = window.loupe.state.model.input;
      for (let r = 0; r < runs; ++r) {
        await bridge.run(session.id, new Float32Array(c * h * w).fill(0.5), [1, c, h, w], [window.loupe.state.model.scoresOutput]);
      }
      await bridge.endProfiling(session.id);
      await bridge.releaseSession(session.id);
      return window.loupe.state.ort.threads;
    }, { bytes, runs: PROFILE_RUNS });
    await page.waitForTimeout(1000);  // the last console lines
    const events = lines.filter((line) => line.startsWith('{"cat"')).map((line) => JSON.parse(line.replace(/,\s*$/, '')));
    return { threads, ops: opTimes(events, PROFILE_RUNS) };
  } finally {
    await context.close();
  }
}

function nativeOpProfile(model, threads) {
  const dir = mkdtempSync(path.join(tmpdir(), 'loupe-bench-profile-'));
  try {
    const out = JSON.parse(execFileSync(requireTool(nativeLatencyTool), [model, String(threads), String(PROFILE_RUNS - 5), path.join(dir, 'ort')],
                                        { encoding: 'utf8' }));
    return { threads, ops: opTimes(JSON.parse(readFileSync(out.profile, 'utf8')), PROFILE_RUNS) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// CPU time (s) of every thread of the Chromium processes this script started, by process type and
// thread name, from /proc (Linux): where a batch's cycles went, whatever thread spent them (the
// page's main thread, ORT's worker and its pthreads, the GPU process rasterising frames in
// SwiftShader...).
function chromiumCpu() {
  const stat = (file) => {
    try {
      const text = readFileSync(file, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
    } catch {
      return null;
    }
  };
  const processes = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number);
  const parent = new Map(processes.map((pid) => [pid, stat(`/proc/${pid}/stat`)?.ppid]));
  const ours = (pid) => {
    for (let p = parent.get(pid), hops = 0; p && hops < 20; p = parent.get(p), ++hops) if (p === process.pid) return true;
    return false;
  };
  const seconds = {};
  for (const pid of processes.filter(ours)) {
    let type;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.includes('chrom')) continue;
      type = /--type=([\w-]+)/.exec(cmdline)?.[1] ?? 'browser';
      if (type === 'utility') type = /--utility-sub-type=([\w.]+)/.exec(cmdline)?.[1]?.split('.').at(-1) ?? type;
    } catch {
      continue;
    }
    let tasks = [];
    try { tasks = readdirSync(`/proc/${pid}/task`); } catch { continue; }
    for (const tid of tasks) {
      let name;
      try { name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim().replace(/[\d/:.-]+$/, ''); } catch { continue; }
      const ticks = stat(`/proc/${pid}/task/${tid}/stat`)?.ticks ?? 0;
      const key = `${type}: ${name}`;
      seconds[key] = (seconds[key] ?? 0) + ticks / 100;  // USER_HZ
    }
  }
  return seconds;
}
function cpuSince(before) {
  const after = chromiumCpu();
  const delta = {};
  for (const [key, s] of Object.entries(after)) {
    const d = s - (before[key] ?? 0);
    if (d >= 0.05) delta[key] = Number(d.toFixed(2));
  }
  return Object.fromEntries(Object.entries(delta).sort((a, b) => b[1] - a[1]));
}

// (d) in the page: the folder opened with the model ready, to the last prediction.
async function browserFolder(browser, site, model, files) {
  const { context, page } = await pageWithModel(browser, site, model);
  try {
    const threads = await page.evaluate(() => window.loupe.state.ort.threads);
    const ortBefore = await page.evaluate(() => ({ ...window.loupe.ortBridge.stats }));
    const cpuBefore = chromiumCpu();
    const start = Date.now();
    await page.setInputFiles('#open-files', files);
    await page.waitForFunction((count) => {
      const { batch } = window.loupe.state;
      return batch.total === count && batch.done === count && !batch.running;
    }, files.length, { timeout: 600_000, polling: 50 });
    const ms = Date.now() - start;
    const cpu = cpuSince(cpuBefore);
    const state = await page.evaluate(() => window.loupe.state);
    const ortAfter = await page.evaluate(() => ({ ...window.loupe.ortBridge.stats }));
    const ort = Object.fromEntries(Object.entries(ortAfter).map(([k, v]) => [k, v - (ortBefore[k] ?? 0)]));
    const list = state.images.list ?? [];
    return { ms, imagesPerSecond: files.length / (ms / 1000), threads, frames: state.frames, profile: state.profile ?? null, ort, cpu,
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
  if (options.tune) {
    results.load.tune = load();
    results.tuning = [];
    for (const [name, ortOptions] of TUNING) {
      // A browser of its own per setting: one that crashes takes no other setting with it.
      const own = await chromium.launch({ executablePath, args: [...chromiumArgs] });
      try {
        results.tuning.push({ name, ortOptions, ...(await browserLatency(own, sites[0].site, models[0], Number(options['latency-reps']), ortOptions)) });
      } catch (error) {
        results.tuning.push({ name, ortOptions, error: error.message.split('\n')[0] });
      } finally {
        await own.close().catch(() => {});
      }
    }
  }
  if (options['op-profile']) {
    results.load.opProfile = load();
    results.opProfile = [];
    for (const model of models) {
      const browserSide = await browserOpProfile(browser, sites[0].site, model);
      results.opProfile.push({ model: path.basename(model), browser: browserSide, native: nativeOpProfile(model, browserSide.threads) });
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
  console.log(`| (c) ${l.model} in the browser at batch 8, per image; session creation | this build | ` +
              `${l.browser.batch8_ms_per_image.toFixed(1)} ms; ${l.browser.create_ms.toFixed(0)} ms | |`);
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
if (results.tuning) {
  console.log(`\nORT Web settings (${results.models[0]}; ms per image at batch 1 and at batch 8, session creation):`);
  console.log('| setting | threads | batch 1 | batch 8 | create |\n|---|---|---|---|---|');
  for (const t of results.tuning) {
    if (t.error) console.log(`| ${t.name} | failed: ${t.error} | | | |`);
    else console.log(`| ${t.name} | ${t.threads} | ${t.median_ms.toFixed(1)} | ${t.batch8_ms_per_image.toFixed(1)} | ${t.create_ms.toFixed(0)} |`);
  }
}
for (const p of results.opProfile ?? []) {
  const ops = Object.keys({ ...p.browser.ops, ...p.native.ops }).sort((a, b) => (p.browser.ops[b] ?? 0) - (p.browser.ops[a] ?? 0));
  const total = (side) => Object.values(side.ops).reduce((sum, ms) => sum + ms, 0);
  console.log(`\nwhere one run's time goes, ${p.model} at batch 1 (ORT's profiler, ms per run, kernels only; ${p.browser.threads} threads both):`);
  console.log('| operator | browser | native | browser / native |\n|---|---|---|---|');
  for (const op of ops) {
    const b = p.browser.ops[op] ?? 0, n = p.native.ops[op] ?? 0;
    console.log(`| ${op} | ${b.toFixed(2)} | ${n.toFixed(2)} | ${n > 0 ? (b / n).toFixed(1) : '-'}x |`);
  }
  console.log(`| all kernels | ${total(p.browser).toFixed(2)} | ${total(p.native).toFixed(2)} | ${(total(p.browser) / total(p.native)).toFixed(1)}x |`);
}
for (const f of results.folder) {
  for (const { name } of sites) {
    const run = f.browser[name][0];
    console.log(`\nwhere the page's time went, ${f.model}, ${name}, first run (${(run.ms / 1000).toFixed(2)} s, ${run.frames} frames):`);
    if (run.profile) console.log(`  page's main thread (ms): ${Object.entries(run.profile).map(([k, v]) => `${k} ${Number(v).toFixed(0)}`).join(', ')}`);
    console.log(`  Chromium CPU time by thread (s, all processes): ${Object.entries(run.cpu).map(([k, v]) => `${k} ${v}`).join('; ')}`);
    if (run.ort && run.ort.runs !== undefined) {
      console.log(`  ORT (ms, as the page waits for its worker): ${run.ort.runs} runs of ${run.ort.images} images, ${run.ort.runMs.toFixed(0)} ms ` +
                  `(${(run.ort.runMs / Math.max(1, run.ort.images)).toFixed(1)} ms per image)`);
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
