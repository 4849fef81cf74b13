// The Replay page against a real engine: the live strategy against an identical version
// shows no difference (every CI spans 0); a crippled draft against live loses beyond
// noise; the HTML report downloaded from the page names no absolute path.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { answerToken, go, openConsole, shot } from './lib/browser.mjs';
import { ADMIN } from './lib/engine.mjs';
import { world } from './lib/world.mjs';

let engine;
let browser;

// A small log: a replay runs every event through fresh engines (debug build).
world({ start: { users: 80 } }, (w) => ({ engine, browser } = w));

const ABSOLUTE = /\/(tmp|work|home|root)\//;

/** The page's comparison table: per metric the difference and its CI as shown. */
async function shownComparison(page) {
  const table = page.locator('.report table.comparison');
  await table.waitFor();
  const rows = await table.locator('tbody tr').evaluateAll((trs) =>
    trs.map((tr) => ({ metric: tr.dataset.metric, diff: tr.querySelector('.diff').textContent, ci: tr.querySelector('.ci').textContent })),
  );
  const num = (t) => Number(t.replace('−', '-'));
  return {
    strategy: await table.getAttribute('data-strategy'),
    baseline: await table.getAttribute('data-baseline'),
    rows: rows.map((r) => {
      const [lo, hi] = r.ci.replace(/[[\]]/g, '').split(', ').map(num);
      return { metric: r.metric, diff: num(r.diff), lo, hi };
    }),
  };
}

async function runReplay(page, tick, untick) {
  for (const id of untick) if (await page.locator(id).isChecked()) await page.locator(id).uncheck();
  for (const id of tick) await page.locator(id).check();
  await page.getByRole('button', { name: 'Start replay…' }).click();
  await page.locator('.dialog').getByRole('button', { name: 'Start replay' }).click();
}

test('live against itself: no difference; a crippled draft loses; the report has no path', { timeout: 150_000 }, async () => {
  // v2 then a rollback to v1: live (v3) is v1's strategy, offered as a version to replay.
  const v1 = await engine.ok('GET', '/v1/strategy');
  const changed = structuredClone(v1.strategy);
  changed.weights.pop = 0.9;
  await engine.ok('PUT', '/v1/strategy', { token: ADMIN, body: { strategy: changed, message: 'e2e: v2', base_version: 1 } });
  await engine.ok('POST', '/v1/strategy/rollback', { token: ADMIN, body: { version: 1, message: 'e2e: back', base_version: 2 } });

  const page = await openConsole(browser, engine, 'replay');
  await page.locator('#replay-s-v1').waitFor();
  assert.equal(await page.locator('#replay-s-live').isChecked(), true);
  assert.match(await page.locator('label[for=replay-s-live]').textContent(), /Live \(v3\)/);
  await runReplay(page, ['#replay-s-v1'], ['#replay-s-v2']);
  await answerToken(page, ADMIN);
  const verdict = page.locator('.report .verdict');
  await verdict.waitFor({ timeout: 90_000 });
  const same = await verdict.textContent();
  console.log(`replay 1: ${same}`);
  assert.match(same, /v1 vs live v3: no difference beyond noise/);
  const c1 = await shownComparison(page);
  assert.deepEqual([c1.strategy, c1.baseline], ['v1', 'live v3']);
  assert.equal(c1.rows.length, 4);
  for (const r of c1.rows) {
    assert.ok(r.lo <= 0 && r.hi >= 0, `${r.metric}: CI [${r.lo}, ${r.hi}] leaves out 0`);
    assert.equal(r.diff, 0, r.metric);
  }
  const firstId = Number((await page.locator('.report').locator('xpath=..').locator('h3').first().textContent()).match(/Replay (\d+)/)[1]);
  await shot(page, 'replay-same-1280x800', { fullPage: true });

  // A crippled draft: popularity alone, a tiny weight, nothing learned.
  await go(page, 'strategy');
  for (const s of ['seq', 'like', 'purchase', 'itemknn', 'markov']) await page.fill(`#w-weights-${s}`, '0');
  await page.fill('#w-weights-pop', '0.01');
  await page.uncheck('#w-learning-adaptive');
  await page.locator('.panel:has(#diff-h) .diff-table').waitFor();
  await go(page, 'replay');
  await runReplay(page, ['#replay-s-draft'], ['#replay-s-v1', '#replay-s-v2']);
  await page.locator('.report h3, #replay-job-h').first().waitFor();
  await page.waitForFunction((id) => /Replay (\d+): done/.test(document.querySelector('.page-replay')?.textContent ?? '') && !document.querySelector('.page-replay').textContent.includes(`Replay ${id}: done`), firstId, { timeout: 90_000 });
  const lost = await verdict.textContent();
  console.log(`replay 2: ${lost}`);
  assert.match(lost, /^draft vs live v3: draft loses on HR@10/);
  const c2 = await shownComparison(page);
  assert.deepEqual([c2.strategy, c2.baseline], ['draft', 'live v3']);
  const hr = c2.rows.find((r) => r.metric === 'hr');
  assert.ok(hr.diff < 0 && hr.hi < 0, `HR: ${hr.diff} [${hr.lo}, ${hr.hi}]`);
  await shot(page, 'replay-crippled-1280x800', { fullPage: true });

  // The HTML report, downloaded through the page's button, and over REST.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download HTML report' }).click()]);
  const html = readFileSync(await download.path(), 'utf8');
  assert.match(download.suggestedFilename(), /replay-\d+\.html$/);
  assert.match(html, /<html/i);
  assert.match(html, /draft loses on HR@10/);
  assert.doesNotMatch(html, ABSOLUTE, `an absolute path in the report: ${html.match(new RegExp(`.{40}${ABSOLUTE.source}.{40}`))?.[0]}`);
  const id = Number(download.suggestedFilename().match(/\d+/)[0]);
  for (const n of [firstId, id]) {
    const r = await engine.call('GET', `/v1/replay/${n}/report.html`);
    assert.equal(r.status, 200);
    assert.doesNotMatch(String(r.body), ABSOLUTE);
    const job = await engine.ok('GET', `/v1/replay/${n}`);
    assert.doesNotMatch(JSON.stringify(job), ABSOLUTE, `replay ${n}'s JSON names a path`);
  }
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
