// Changes drawn on the Live charts, made for real: a guarded publish that breaches its
// p99 limit under traffic and is reverted exactly once by the engine (REST), then drawn as
// a labelled revert marker; and a checkpoint activated on the Models page (confirmed) that
// serves the next recommendations and is drawn as a model marker.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { answerToken, go, openConsole, shot } from './lib/browser.mjs';
import { ADMIN, modelsDir, sleep, traffic, until } from './lib/engine.mjs';
import { world } from './lib/world.mjs';

let engine;
let browser;

world({ start: { models: modelsDir(['ckpt-a', 'ckpt-b']) }, rate: 40, maxMs: 150_000 }, (w) => ({ engine, browser } = w));

const markerItems = (page, kind) => page.locator(`.page-live .marker-list li[data-kind=${kind}]`);

test('a guard reverts a breaching publish once, and Live draws the revert', { timeout: 90_000 }, async () => {
  const page = await openConsole(browser, engine, 'live');
  const live = await engine.ok('GET', '/v1/strategy');
  const draft = structuredClone(live.strategy);
  draft.weights.markov = 1.5;
  // No request is that fast: every judged interval breaches.
  const v = await engine.ok('PUT', '/v1/strategy', {
    token: ADMIN,
    body: {
      strategy: draft,
      message: 'e2e: guarded',
      base_version: live.version,
      guard: { max_p99_ms: 0.000001, interval_s: 1, breach_intervals: 2, min_samples: 5, duration_s: 60 },
    },
  });
  assert.equal(v.guard.state, 'watching');
  assert.equal(v.version, live.version + 1);
  // The answer carries the weights as published (not widened f32s).
  assert.deepEqual(v.strategy.weights, draft.weights);

  const g = await until(
    async () => {
      const s = await engine.ok('GET', '/v1/strategy/guard');
      return s.state !== 'watching' && s;
    },
    { ms: 30_000, every: 250, what: 'the guard to decide' },
  );
  assert.equal(g.state, 'reverted', JSON.stringify(g));
  assert.match(g.reason, /^p99_ms/);
  await sleep(3000); // a second revert would come within a few intervals
  const hist = await engine.ok('GET', '/v1/strategy/history');
  const reverts = hist.filter((x) => x.author === 'guard');
  assert.equal(reverts.length, 1, JSON.stringify(hist.map((x) => [x.version, x.author, x.note])));
  assert.deepEqual(reverts[0].strategy, live.strategy);
  assert.equal((await engine.ok('GET', '/v1/strategy')).version, live.version + 2);

  // On the Live page (open all along): a labelled revert marker after the publish.
  const revert = markerItems(page, 'revert');
  await revert.first().waitFor({ timeout: 10_000 });
  assert.equal(await revert.count(), 1);
  const label = await revert.textContent();
  assert.match(label, new RegExp(`v${live.version + 2}.*revert`, 'i'));
  assert.equal(await revert.getAttribute('data-version'), String(live.version + 2));
  assert.equal(await markerItems(page, 'publish').count(), 1);
  const times = await page.locator('.page-live .marker-list li[data-kind] time').evaluateAll((ts) => ts.map((t) => Date.parse(t.getAttribute('datetime'))));
  assert.ok(times[0] >= times[1], 'newest first: the revert after the publish');
  // The marker is on the charts too: the revert colour (#ff6b6b, no series of the
  // Throughput chart has it) is on its canvas: the dashed line and the label.
  const red = await page.locator('.page-live figure.chart').first().locator('canvas').evaluate((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 255) < 24 && Math.abs(d[i + 1] - 107) < 24 && Math.abs(d[i + 2] - 107) < 24) n++;
    return n;
  });
  assert.ok(red >= 40, `the revert marker is not drawn on the Throughput chart (${red} red pixels)`);
  await shot(page, 'live-markers-1280x800');

  // A fresh page gets the same markers from the history, not only from the stream.
  const fresh = await openConsole(browser, engine, 'live');
  await markerItems(fresh, 'revert').first().waitFor({ timeout: 10_000 });
  assert.equal(await markerItems(fresh, 'revert').count(), 1);
  // The Strategy page's guard panel tells how it ended.
  await go(fresh, 'strategy');
  await fresh.locator('.panel:has(#guard-h) .tag', { hasText: 'reverted' }).waitFor();
  assert.match(await fresh.locator('.panel:has(#guard-h)').textContent(), /Reverted to v\d+: p99_ms/);
  for (const p of [page, fresh]) {
    assert.deepEqual(p.errors, []);
    await p.context().close();
  }
});

test('a checkpoint activated on the Models page serves, and Live draws it', { timeout: 90_000 }, async () => {
  const before = await engine.ok('POST', '/v1/recommend', { body: { user: 'u1', k: 5 } });
  const page = await openConsole(browser, engine, 'models');
  const card = page.locator('article[aria-label="checkpoint ckpt-b"]');
  await card.waitFor();
  assert.equal(await page.locator('article[aria-label="checkpoint ckpt-a"] .tag', { hasText: 'serving' }).count(), 1);
  await card.getByRole('button', { name: 'Activate…' }).click();
  const dlg = page.locator('.dialog');
  assert.match(await dlg.textContent(), /Activate ckpt-b\?/);
  await dlg.getByRole('button', { name: 'Activate', exact: true }).click();
  await answerToken(page, ADMIN);
  await page.locator('.toast', { hasText: /\(ckpt-b\) is serving/ }).waitFor();
  await card.locator('.tag', { hasText: 'serving' }).waitFor();
  await page.locator('.app-header', { hasText: `model v${before.model_version + 1} · ckpt-b` }).waitFor();
  await shot(page, 'models-activated-1280x800', { fullPage: true });

  // The next recommendations come from the new model.
  const after = await engine.ok('POST', '/v1/recommend', { body: { user: 'u1', k: 5 } });
  assert.equal(after.model_version, before.model_version + 1);
  const info = await engine.ok('GET', '/v1/info');
  assert.equal(info.model.name, 'ckpt-b');
  const audit = await engine.ok('GET', '/v1/audit?limit=20', { token: ADMIN });
  const act = audit.find((r) => r.action === 'model.activate');
  assert.equal(act?.actor, 'alice');

  // Live: a model marker, labelled with the new version.
  await go(page, 'live');
  const m = markerItems(page, 'model');
  await m.first().waitFor({ timeout: 10_000 });
  assert.equal(await m.getAttribute('data-version'), String(after.model_version));
  assert.match(await m.textContent(), /ckpt-b|model/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
