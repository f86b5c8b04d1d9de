// The confusion matrix you can click (issue 15, part 3), in headless Chromium: a labelled folder the
// test writes (generated images in class folders; never skipped) is classified by the default
// model; a cell of the evaluation window lists exactly the images it counts in the table (true
// class from the folder, predicted class from the table), the first of them in the viewer with its
// heat map; the same cell again, or "Show all images", brings every image back. The sidebar states
// the out-of-distribution check's false-alarm rate with its interval (part 6). Screenshots of the
// clicked matrix go to build/test-artifacts/. No request leaves the local server; no console errors.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  artifactsDir, assertNoProblems, clickWidget, describeEvents, encodePng, launchBrowser, openPage, repoRoot,
  requireBuiltSite, startSite, waitForApp,
} from './helpers.mjs';

let site, browser, scratch;

before(async () => {
  requireBuiltSite();
  scratch = mkdtempSync(path.join(tmpdir(), 'loupe-cells-'));
  site = await startSite();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await site?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// Seeded pseudo-random images of different textures, so that the model's answers spread over classes.
function writeLabelledFolder(classes, perClass) {
  const dir = path.join(scratch, 'site');
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  let files = 0;
  classes.forEach((cls, c) => {
    mkdirSync(path.join(dir, cls), { recursive: true });
    for (let i = 0; i < perClass; ++i) {
      const width = 96, height = 96, base = 40 + 60 * c + 7 * i, noise = 20 + 30 * ((i + c) % 4);
      const pixels = Buffer.alloc(width * height);
      for (let y = 0; y < height; ++y) {
        for (let x = 0; x < width; ++x) {
          const ring = Math.hypot(x - 48, y - 48) < 20 + 4 * i ? 50 * ((c + i) % 3) : 0;
          pixels[y * width + x] = Math.max(0, Math.min(255, Math.round(base + ring + (random() - 0.5) * noise)));
        }
      }
      writeFileSync(path.join(dir, cls, `image-${i}.png`), encodePng({ width, height, channels: 1, pixels }));
      files++;
    }
  });
  return { dir, files };
}

async function waitFor(page, events, what, predicate, arg, timeout = 30_000) {
  try {
    return await (await page.waitForFunction(predicate, arg, { timeout, polling: 100 })).jsonValue();
  } catch (error) {
    const state = await page.evaluate(() => ({ table: window.loupe.state.images?.table, rows: window.loupe.state.images?.rows,
                                               selected: window.loupe.state.images?.selectedPath }));
    assert.fail(`${what} (${error.message.split('\n')[0]}): ${JSON.stringify(state)}\n${describeEvents(events)}`);
  }
}

test('a confusion-matrix cell lists its images in the table, with the first in the viewer, and back', async () => {
  const { context, page, events } = await openPage(browser, site.url);
  try {
    await waitForApp(page, events);
    const model = await waitFor(page, events, 'the default model did not load',
                                () => window.loupe.state.model?.status === 'ready' ? window.loupe.state.model : null);
    const classes = model.classes;
    const { dir, files } = writeLabelledFolder(classes, 4);
    await page.setInputFiles('#open-folder', dir);
    await waitFor(page, events, 'the batch did not finish', (count) => {
      const { images, batch } = window.loupe.state;
      // The list is published at most twice a second, the counts every frame: wait for both.
      return images.count === count && images.pending === 0 && batch.done === batch.total && batch.inFlight === 0 &&
        images.list?.length === count && images.list.every((e) => e.prediction?.status === 'done');
    }, files, 180_000);

    // Part 6: the sidebar's OOD line states the false-alarm rate with its interval (the card's figures).
    const card = JSON.parse(readFileSync(path.join(repoRoot, 'models/shipped', model.file.replace(/\.onnx$/, '.card.json')), 'utf8'));
    const falseAlarms = model.oodFalseAlarms;
    assert.equal(falseAlarms.false_alarm_rate, card.ood.false_alarm_rate);
    assert.deepEqual(falseAlarms.false_alarm_interval, card.ood.false_alarm_interval);
    assert.ok(falseAlarms.false_alarm_interval[0] < falseAlarms.false_alarm_rate &&
              falseAlarms.false_alarm_rate < falseAlarms.false_alarm_interval[1], 'a rate inside its interval');
    assert.equal(falseAlarms.test_images, card.ood.test_images);

    await clickWidget(page, 'evaluation');
    const evaluation = await waitFor(page, events, 'no evaluation', () => window.loupe.state.showEvaluation &&
                                     window.loupe.state.evaluation?.matrix ? window.loupe.state.evaluation : null);
    assert.equal(evaluation.labelled, files);
    const matrix = evaluation.matrix.matrix;
    assert.deepEqual(evaluation.matrix.classes, classes);
    // The largest off-diagonal cell if there is one (the interesting case), else the largest cell.
    const cells = [];
    matrix.forEach((row, i) => row.forEach((count, j) => { if (count > 0) cells.push({ i, j, count }); }));
    cells.sort((a, b) => (b.i !== b.j) - (a.i !== a.j) || b.count - a.count);
    const { i, j, count } = cells[0];
    const all = await page.evaluate(() => window.loupe.state.images);

    await clickWidget(page, `matrixCell-${i}-${j}`);
    const state = await waitFor(page, events, `cell ${i},${j} did not filter the table`, ({ i, j }) => {
      const s = window.loupe.state;
      return s.images.table.cell?.trueClass === i && s.images.table.cell?.predictedClass === j ? s : null;
    }, { i, j });
    assert.equal(state.showEvaluation, false, 'the evaluation window makes way for the table');
    const images = state.images;
    assert.equal(images.rows.length, count, `the table shows the cell's ${count} images`);
    for (const row of images.rows) {
      const entry = images.list[row];
      assert.equal(entry.path.split('/').at(-2), classes[i], `${entry.path}: true class`);
      assert.equal(entry.prediction.predicted, classes[j], `${entry.path}: predicted class`);
    }
    // Every image of the cell, and no other: the same rule as the matrix's count.
    const expected = all.list.map((entry, index) => ({ entry, index }))
      .filter(({ entry }) => entry.path.split('/').at(-2) === classes[i] && entry.prediction?.predicted === classes[j])
      .map(({ index }) => index);
    assert.deepEqual([...images.rows].sort((a, b) => a - b), expected);
    assert.ok(images.rows.includes(images.list.findIndex((e) => e.path === images.selectedPath)),
              'one of the cell\'s images is in the viewer');
    // Its heat map: the viewer has the selected image's class activation map.
    await waitFor(page, events, 'no heat map for the selected image', () => {
      const { heatMap, images } = window.loupe.state;
      return heatMap.drawn && heatMap.camEntry === images.selected;
    });
    await page.waitForTimeout(400);
    await page.screenshot({ path: path.join(artifactsDir(), 'web-matrix-cell-table.png') });

    // The window again: the chosen cell is marked. Clicking it once more shows every image.
    await clickWidget(page, 'evaluation');
    await waitFor(page, events, 'the evaluation window did not come back', () => window.loupe.state.showEvaluation);
    await page.waitForTimeout(400);
    await page.screenshot({ path: path.join(artifactsDir(), 'web-matrix-cell.png') });
    await clickWidget(page, `matrixCell-${i}-${j}`);
    const again = await waitFor(page, events, 'the chosen cell clicked again', () =>
      window.loupe.state.images.table.cell === null ? window.loupe.state.images : null);
    assert.equal(again.rows.length, files);

    // "Show all images" above the table.
    await clickWidget(page, `matrixCell-${i}-${j}`);
    await waitFor(page, events, 'the cell again', () => window.loupe.state.images.table.cell !== null);
    await clickWidget(page, 'showAllImages');
    const back = await waitFor(page, events, '"Show all images" did not bring every image back',
                               () => window.loupe.state.images.table.cell === null ? window.loupe.state.images : null);
    assert.equal(back.rows.length, files);
    assertNoProblems(events, site.origin);
  } finally {
    await context.close();
  }
});
