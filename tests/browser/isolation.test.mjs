// Threads everywhere the page is hosted: on a static host that sends no special headers (no
// COOP/COEP, no CSP: an intranet web server, GitHub Pages), the service worker adds web/server.mjs's
// headers to everything it serves and the page reloads once to come under it. Checked against
// web/server.mjs in its plain mode: after exactly one reload the page is cross-origin isolated,
// ORT runs with more than one thread, the document carries the same security headers as
// scripts/serve sends (the CSP really blocks a request to another origin), nothing leaves the
// local server and the console has no errors. Behind scripts/serve's own headers there is no reload.
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { after, before, test } from 'node:test';

import { securityHeaders, startServer } from '../../web/server.mjs';
import { assertNoProblems, describeEvents, launchBrowser, openPage, publicDir, requireBuiltSite, startSite, waitForApp } from './helpers.mjs';

let plainSite, isolatedSite, foreign, browser;
let foreignHits = 0;

before(async () => {
  requireBuiltSite();
  const plain = await startServer({ root: publicDir, port: 0, host: '127.0.0.1', plain: true });
  plainSite = { ...plain, origin: new URL(plain.url).origin };
  isolatedSite = await startSite();
  // Another origin (another port) that counts what reaches it: the CSP must keep the page off it.
  foreign = await startServer({ root: publicDir, port: 0, host: '127.0.0.1' });
  foreign.server.prependListener('request', () => { foreignHits += 1; });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  for (const server of [plainSite, isolatedSite, foreign]) await server?.close();
});

function headersOf(url) {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      res.resume();
      res.on('end', () => resolve(res.headers));
    }).on('error', reject);
  });
}

// Main-frame navigations of `page` (the first load and every reload), counted from now on.
function countNavigations(page) {
  const navigations = [];
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });
  return navigations;
}

// The app's state once it runs with ORT settled, across the service worker's one reload.
async function waitThroughReload(page, events) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await waitForApp(page, events, { ort: true });
    } catch (error) {
      if (attempt >= 2 || !/context was destroyed|navigat/i.test(error.message)) throw error;
    }
  }
}

test('a plain static host: the service worker provides isolation after one reload, threads and the CSP hold', async () => {
  // The host really sends none of the headers.
  const served = await headersOf(plainSite.url);
  for (const name of Object.keys(securityHeaders)) assert.equal(served[name.toLowerCase()], undefined, `${name} was sent`);

  const { context, page, events } = await openPage(browser, null);
  const navigations = countNavigations(page);
  const documents = [];
  page.on('response', (response) => {
    if (response.request().isNavigationRequest()) documents.push({ fromServiceWorker: response.fromServiceWorker(), headers: response.headers() });
  });
  try {
    const started = Date.now();
    await page.goto(plainSite.url);
    const state = await waitThroughReload(page, events);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    assert.equal(navigations.length, 2, `expected the first load and one reload, got ${JSON.stringify(navigations)}`);
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'not cross-origin isolated after the reload');
    assert.equal(state.crossOriginIsolated, true);
    assert.equal(state.ort.status, 'ready', `ORT: ${state.ort.error}\n${describeEvents(events)}`);
    assert.ok(state.ort.threads > 1, `ORT runs on ${state.ort.threads} thread(s) (hardwareConcurrency ${state.hardwareConcurrency})`);
    assert.ok(await page.evaluate(() => navigator.serviceWorker.controller !== null), 'the page is not under the service worker');

    // The document the app runs in came from the service worker with scripts/serve's headers.
    const document = documents.at(-1);
    assert.equal(document.fromServiceWorker, true, 'the reloaded document did not come through the service worker');
    for (const [name, value] of Object.entries(securityHeaders)) {
      if (name === 'Cache-Control') continue;
      assert.equal(document.headers[name.toLowerCase()], value, `${name} of the document`);
    }

    // The default model verifies itself in this threaded ORT before it becomes active.
    await page.waitForFunction(() => window.loupe.state.model.status === 'ready', null, { timeout: 90_000 });
    const model = await page.evaluate(() => window.loupe.state.model);
    assert.equal(model.selfTest.passed, true, model.selfTest.summary);
    console.log(`# plain host: isolated after one reload, ORT ${state.ort.threads} threads, model verified; ${seconds} s to the app`);
    assertNoProblems(events, plainSite.origin);

    // The CSP is enforced: a request to another origin never leaves the page.
    const attempt = await page.evaluate(async (url) => {
      const violations = [];
      document.addEventListener('securitypolicyviolation', (event) => violations.push(event.violatedDirective));
      let outcome;
      try {
        await fetch(url);
        outcome = 'fetched';
      } catch {
        outcome = 'blocked';
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { outcome, violations };
    }, `${foreign.url}index.html`);
    assert.equal(attempt.outcome, 'blocked');
    assert.ok(attempt.violations.some((directive) => directive.startsWith('connect-src')), JSON.stringify(attempt.violations));
    assert.equal(foreignHits, 0, 'a request reached the other origin');
  } finally {
    await context.close();
  }
});

test('behind scripts/serve (headers sent) the page is isolated at once, without a reload', async () => {
  const { context, page, events } = await openPage(browser, null);
  const navigations = countNavigations(page);
  try {
    await page.goto(isolatedSite.url);
    const state = await waitForApp(page, events, { ort: true });
    assert.equal(state.crossOriginIsolated, true);
    assert.ok(state.ort.threads > 1, `ORT runs on ${state.ort.threads} thread(s)`);
    await page.waitForTimeout(1000);  // a reload would have started by now
    assert.equal(navigations.length, 1, `the page reloaded: ${JSON.stringify(navigations)}`);
    assertNoProblems(events, isolatedSite.origin);
  } finally {
    await context.close();
  }
});

test('a plain static host where service workers are blocked: no reload loop, the page runs single-threaded', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, serviceWorkers: 'block' });
  const page = await context.newPage();
  const events = { requests: [], failedRequests: [], console: [], pageErrors: [] };
  context.on('request', (request) => events.requests.push({ url: request.url() }));
  context.on('requestfailed', (request) => events.failedRequests.push({ url: request.url(), failure: request.failure()?.errorText }));
  page.on('console', (message) => events.console.push({ type: message.type(), text: message.text() }));
  page.on('pageerror', (error) => events.pageErrors.push({ message: error.message }));
  const navigations = countNavigations(page);
  try {
    await page.goto(plainSite.url);
    const state = await waitForApp(page, events, { ort: true });
    await page.waitForTimeout(1000);
    assert.ok(navigations.length <= 2, `the page reloaded ${navigations.length - 1} times`);
    assert.equal(state.crossOriginIsolated, false);
    assert.equal(state.ort.status, 'ready', `ORT: ${state.ort.error}`);
    assert.equal(state.ort.threads, 1, 'without isolation ORT has one thread, and the page says so');
    assertNoProblems(events, plainSite.origin);
  } finally {
    await context.close();
  }
});
