// The Sessions page (the inspector) against a real engine and the shipped model: a user
// whose history is one item X every other step. The attention heatmap's mean row is a
// distribution with X on top (in the explain answer the page got, and in the cells it
// drew), a second look-up agrees, each stacked bar adds up to its item's score, and the
// per-head rows appear on demand.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { answerToken, findTokens, openConsole, shot } from './lib/browser.mjs';
import { ADMIN, READ, SHIPPED_MODEL } from './lib/engine.mjs';
import { world } from './lib/world.mjs';

let engine;
let browser;

world({}, (w) => ({ engine, browser } = w));

const SOURCES = ['seq', 'like', 'purchase', 'itemknn', 'markov', 'pop', 'text'];
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

function byItem(history, row) {
  const m = new Map();
  history.forEach((it, i) => m.set(it, (m.get(it) ?? 0) + row[i]));
  return [...m].sort((a, b) => b[1] - a[1]);
}

test('attention over a user whose history alternates one item', { timeout: 90_000 }, async () => {
  const items = JSON.parse(readFileSync(join(SHIPPED_MODEL, 'items.json'), 'utf8'));
  const X = items[7];
  const lines = [];
  for (let i = 0; i < 24; i++) {
    const item = i % 2 === 0 ? X : items[20 + i];
    lines.push(JSON.stringify({ user: 'e2e-probe', kind: 'click', item, ts: 1_700_000_000 + i }));
  }
  // One request per event, as a client's clicks come (a batch's order is checked below).
  for (const l of lines) await engine.ok('POST', '/v1/events', { body: l });

  const page = await openConsole(browser, engine, 'sessions');
  const explained = () => page.waitForResponse((r) => r.url().includes('/v1/users/e2e-probe/explain'), { timeout: 15_000 });
  await page.fill('#session-user', 'e2e-probe');
  let answer = explained();
  await page.press('#session-user', 'Enter');
  // Explanations are a read route: the read-only token is enough.
  await answerToken(page, READ);
  const first = await (await answer).json();
  const heat = page.locator('svg.heatmap');
  await heat.waitFor();

  // The answer: the mean row is a distribution over the window, X holds the most.
  assert.deepEqual(first.history, lines.map((l) => JSON.parse(l).item));
  const mean = first.attention.mean;
  assert.equal(mean.length, first.history.length);
  assert.ok(Math.abs(sum(mean) - 1) <= 1e-3, `mean row sums to ${sum(mean)}`);
  assert.equal(byItem(first.history, mean)[0][0], X, JSON.stringify(byItem(first.history, mean)));

  // The cells drawn: one per history item, the weights the answer holds, X on top again.
  const cells = await heat.locator('rect').evaluateAll((rs) =>
    rs.map((r) => /^(.+) → (.+) \(position (\d+)\): weight (.+)$/.exec(r.querySelector('title').textContent).slice(1)),
  );
  const meanCells = cells.filter((c) => c[0] === 'mean');
  assert.equal(meanCells.length, first.history.length);
  const drawn = meanCells.map((c) => Number(c[3]));
  meanCells.forEach((c, i) => {
    assert.equal(c[1], first.history[i]);
    assert.ok(Math.abs(drawn[i] - mean[i]) <= 0.005 * Math.max(mean[i], 1e-3) + 1e-6, `cell ${i}: ${drawn[i]} vs ${mean[i]}`);
  });
  assert.ok(Math.abs(sum(drawn) - 1) <= 0.01, `the drawn mean row sums to ${sum(drawn)}`);
  assert.equal(byItem(first.history, drawn)[0][0], X);

  // Each stacked bar: the segments add up to the item's score (the answer, and the page).
  const rec = first.recommendation;
  for (const it of rec.items) {
    const total = sum(SOURCES.map((s) => rec.weights[s] * it.breakdown[s]));
    assert.ok(Math.abs(total - it.score) <= 1e-3 * Math.max(1, Math.abs(it.score)), `${it.item}: ${total} vs ${it.score}`);
  }
  const rows = page.locator('.panel:has(#slate-h) ol.slate li');
  assert.equal(await rows.count(), rec.items.length);
  for (let i = 0; i < rec.items.length; i++) {
    const row = rows.nth(i);
    assert.equal((await row.locator('.item').textContent()).replace(' (explored)', ''), rec.items[i].item);
    const score = Number(await row.locator('.score').textContent());
    const label = await row.locator('svg.stackbar').getAttribute('aria-label');
    const parts = [...label.matchAll(/(\w+) (-?[0-9.]+)/g)].map((m) => Number(m[2]));
    assert.equal(parts.length, SOURCES.length, label);
    assert.ok(Math.abs(sum(parts) - score) <= 0.004 + 1e-3 * Math.abs(score), `row ${i}: segments ${sum(parts)} vs score ${score}`);
    // The segments' titles say weight × source score = contribution, with the answer's figures.
    const titles = await row.locator('svg.stackbar rect title').allTextContents();
    for (const t of titles) {
      const [, src, w, b, c] = /^(\w+): (-?[0-9.]+) × (-?[0-9.]+) = (-?[0-9.]+)$/.exec(t);
      const want = rec.weights[src] * rec.items[i].breakdown[src];
      assert.ok(Math.abs(Number(c) - want) <= 6e-4, `${t} vs ${want}`);
      assert.ok(Math.abs(Number(w) - rec.weights[src]) <= 6e-4 && Math.abs(Number(b) - rec.items[i].breakdown[src]) <= 6e-4, t);
    }
  }

  // A second look-up agrees.
  answer = explained();
  await page.getByRole('button', { name: 'Look up' }).click();
  const second = await (await answer).json();
  assert.deepEqual(second.history, first.history);
  second.attention.mean.forEach((v, i) => assert.ok(Math.abs(v - mean[i]) <= 1e-6, `position ${i}: ${v} vs ${mean[i]}`));

  // Per-head rows on demand, each a distribution.
  assert.equal(await heat.locator('.row-label').count(), 1);
  await page.check('#session-heads');
  const labels = await page.locator('svg.heatmap .row-label').allTextContents();
  assert.deepEqual(labels, ['mean', ...second.attention.heads.map((_, i) => `head ${i + 1}`)]);
  assert.ok(second.attention.heads.length >= 2);
  for (const hrow of second.attention.heads) assert.ok(Math.abs(sum(hrow) - 1) <= 1e-3);
  assert.equal(await page.locator('svg.heatmap rect').count(), labels.length * first.history.length);
  await shot(page, 'sessions-inspector-1280x800', { fullPage: true });

  // Both look-ups are audited under the read token's name.
  const audit = await engine.ok('GET', '/v1/audit?limit=10', { token: ADMIN });
  const lookups = audit.filter((r) => r.action === 'user.lookup' && r.target === 'e2e-probe');
  assert.equal(lookups.length, 2);
  assert.ok(lookups.every((r) => r.actor === 'wall'));
  assert.deepEqual((await findTokens(page, [ADMIN, READ])).found, []);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test(
  'a batch of one user’s events keeps its order in the session',
  async () => {
    const items = ['i300', 'i301', 'i302', 'i303', 'i304', 'i305'];
    const body = items.map((item, i) => JSON.stringify({ user: 'e2e-batch', kind: 'click', item, ts: 1_700_000_000 + i })).join('\n');
    await engine.ok('POST', '/v1/events', { body });
    assert.deepEqual((await engine.ok('GET', '/v1/users/e2e-batch')).recent, items);
  },
);

test('find items by text: a description, then the items like a found one and a recent one', { timeout: 60_000 }, async () => {
  const page = await openConsole(browser, engine, 'sessions');
  const rows = page.locator('.item-finder tbody tr');
  const shown = () => rows.evaluateAll((rs) => rs.map((r) => r.dataset.item));

  // A description: the engine's answer is what the page lists, and it understood it.
  let answer = page.waitForResponse((r) => r.url().includes('/v1/items/search'));
  await page.fill('#session-find-q', 'a warm coat for the winter');
  await page.press('#session-find-q', 'Enter');
  const found = await (await answer).json();
  await rows.first().waitFor();
  assert.equal(found.items.length, 10);
  assert.deepEqual(await shown(), found.items.map((m) => m.item));
  const jackets = found.items.filter((m) => m.title.endsWith('Jacket') && m.tags.includes('outerwear'));
  assert.ok(jackets.length >= 8, `a coat is a jacket: ${found.items.map((m) => m.title).join(', ')}`);
  for (let i = 1; i < found.items.length; i++) assert.ok(found.items[i - 1].score >= found.items[i].score);
  await shot(page, 'sessions-find-by-text-1280x800', { fullPage: true });

  // Items like the first one found: it is left out, the others share its category.
  const first = found.items[0];
  answer = page.waitForResponse((r) => r.url().includes(`/v1/items/${first.item}/similar`));
  await rows.first().getByRole('button', { name: 'Similar' }).click();
  const like = await (await answer).json();
  await page.locator('.finder-heading', { hasText: `Items like ${first.item}` }).waitFor();
  assert.deepEqual(await shown(), like.items.map((m) => m.item));
  assert.ok(!like.items.some((m) => m.item === first.item));
  assert.ok(like.items.filter((m) => m.tags.includes('outerwear')).length >= 8, JSON.stringify(like.items));

  // From a looked-up user's recent items.
  await page.fill('#session-user', 'e2e-batch');
  await page.press('#session-user', 'Enter');
  await answerToken(page, READ);
  const recent = page.locator('ol.timeline li', { hasText: 'i303' });
  answer = page.waitForResponse((r) => r.url().includes('/v1/items/i303/similar'));
  await recent.getByRole('button', { name: 'similar' }).click();
  assert.equal((await answer).status(), 200);
  await page.locator('.finder-heading', { hasText: 'Items like i303' }).waitFor();
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
