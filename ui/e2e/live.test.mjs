// Live page against a real engine under traffic: stats points arrive once a second, the
// recommendations/s the page shows agrees with /metrics' counter over the same window; a
// SIGKILLed engine raises the role="alert" banner within 5 s, and its restart on the same
// port and store clears it and brings new points without a page reload.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { openConsole, shot, unexpectedErrors } from './lib/browser.mjs';
import { sleep, traffic, until } from './lib/engine.mjs';
import { world } from './lib/world.mjs';

let engine;
let browser;

world({ rate: 40, maxMs: 150_000 }, (w) => ({ engine, browser } = w));

/** In the page: each new point (the scrub's max grows) with the Recommendations tile then. */
function startSampler() {
  const scrub = document.querySelector('#live-scrub');
  const tile = document.querySelector('.kpi[aria-label="Recommendations"] .kpi-value');
  window.__e2eSamples = [];
  let last = Number(scrub.max);
  window.__e2eSampler = setInterval(() => {
    const n = Number(scrub.max);
    if (n !== last) {
      last = n;
      window.__e2eSamples.push({ t: Date.now(), n, text: tile.textContent, ticks: window.__attunePerf?.ticks.length ?? 0 });
    }
  }, 25);
}

const points = (page) => page.evaluate(() => Number(document.querySelector('#live-scrub').max) + 1);
const ticks = (page) => page.evaluate(() => window.__attunePerf?.ticks.length ?? 0);
const rate = (text) => Number(String(text).replace(/[^0-9.]/g, ''));

test('stats arrive once a second and the page’s recommendations/s matches /metrics', { timeout: 60_000 }, async () => {
  const page = await openConsole(browser, engine, 'live');
  await until(async () => (await points(page)) >= 3, { ms: 15_000, what: 'three live points' });
  await page.evaluate(startSampler);

  const t0 = Date.now();
  const c0 = await engine.metric('attune_recommendations_total');
  const [n0, k0] = [await points(page), await ticks(page)];
  await sleep(10_000);
  const c1 = await engine.metric('attune_recommendations_total');
  const t1 = Date.now();
  const [n1, k1] = [await points(page), await ticks(page)];

  assert.ok(n1 - n0 >= 8, `only ${n1 - n0} new points in 10 s`);
  assert.ok(k1 - k0 >= 8, `__attunePerf.ticks grew by ${k1 - k0} in 10 s`);
  const samples = (await page.evaluate(() => window.__e2eSamples)).filter((s) => s.t > t0 && s.t <= t1);
  assert.ok(samples.length >= 8, `sampled ${samples.length} points`);
  const pageRate = samples.reduce((a, s) => a + rate(s.text), 0) / samples.length;
  const counterRate = (c1 - c0) / ((t1 - t0) / 1000);
  console.log(`live: ${n1 - n0} points in ${((t1 - t0) / 1000).toFixed(1)} s; page ${pageRate.toFixed(1)} rec/s, /metrics ${counterRate.toFixed(1)} rec/s`);
  assert.ok(counterRate > 10, `the traffic is not running (${counterRate} rec/s)`);
  assert.ok(Math.abs(pageRate - counterRate) <= 0.25 * counterRate, `page ${pageRate} rec/s vs /metrics ${counterRate} rec/s`);

  // Scrubbing back with the keyboard pauses the view on a past point, in UTC.
  await page.focus('#live-scrub');
  for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowLeft');
  await page.locator('button', { hasText: 'Resume' }).waitFor();
  assert.match(await page.locator('.scrub-time').textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  const frozen = await points(page);
  await sleep(2100);
  assert.equal(await page.inputValue('#live-scrub'), String(frozen - 6), 'the scrubbed point moved while paused');
  await page.locator('button', { hasText: 'Resume' }).click();
  assert.equal(await page.locator('.scrub-time').textContent(), 'live');
  // A range past the client buffer comes from the server's history.
  await page.check('#range-1h');
  await page.locator('.range-note', { hasText: 'Server history: 1 h, one point per 10 s' }).waitFor();
  assert.equal(await page.locator('#live-scrub').isDisabled(), true);
  await page.check('#range-30m');
  await page.locator('.range-note', { hasText: 'Live: the last 30 min' }).waitFor();
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a killed engine raises the banner; its restart clears it without a reload', { timeout: 90_000 }, async () => {
  const page = await openConsole(browser, engine, 'live');
  await until(async () => (await points(page)) >= 2, { ms: 15_000, what: 'live points' });
  const banner = page.locator('.banner[role=alert]');
  assert.equal(await banner.isVisible(), false, 'no banner while connected');
  const origin = await page.evaluate(() => {
    window.__e2eSameDocument = 'kept';
    return performance.timeOrigin;
  });

  const port = engine.port;
  const killedAt = Date.now();
  await engine.kill();
  await banner.waitFor({ state: 'visible', timeout: 5000 });
  const shownAfter = Date.now() - killedAt;
  assert.ok(shownAfter <= 5000, `banner after ${shownAfter} ms`);
  assert.match(await banner.textContent(), /unreachable|shutting down/);
  await shot(page, 'live-banner-1280x800');

  await sleep(1500);
  await engine.restart();
  assert.equal(engine.port, port, 'restarted on the same port');
  const restartedAt = Date.now();
  await banner.waitFor({ state: 'hidden', timeout: 15_000 });
  console.log(`live: banner ${shownAfter} ms after SIGKILL, gone ${Date.now() - restartedAt} ms after the restart`);
  const n0 = await points(page);
  const k0 = await ticks(page);
  await until(async () => (await points(page)) >= n0 + 3 && (await ticks(page)) >= k0 + 3, { ms: 10_000, what: 'new points after the restart' });
  const same = await page.evaluate(() => ({
    mark: window.__e2eSameDocument,
    origin: performance.timeOrigin,
    navigations: performance.getEntriesByType('navigation').length,
    link: document.querySelector('.link')?.textContent,
  }));
  assert.equal(same.mark, 'kept', 'the page was reloaded');
  assert.equal(same.origin, origin, 'a new document (timeOrigin changed)');
  assert.equal(same.navigations, 1);
  assert.equal(same.link, 'connected');
  // The browser logs the failed stream requests while the engine is down; nothing else.
  assert.deepEqual(unexpectedErrors(page, /net::ERR_|Failed to load resource/), []);
  await page.context().close();
});
