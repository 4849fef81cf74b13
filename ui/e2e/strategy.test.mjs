// The Strategy page against a real engine: edit → diff → publish (the admin token entered
// once in the modal) → history → rollback through the UI, checked over REST and in the
// audit log; the same publish with the keyboard alone; a preview whose two slates are the
// engine's own and which changes neither the session nor the counters; and no token left
// in any browser storage after all of it.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { answerToken, findTokens, openConsole, shot, tabTo, unexpectedErrors } from './lib/browser.mjs';
import { ADMIN, READ, sleep, until } from './lib/engine.mjs';
import { world } from './lib/world.mjs';

let engine;
let browser;

world({}, (w) => ({ engine, browser } = w));

const toast = (page, re) => page.locator('.toast', { hasText: re }).first().waitFor({ timeout: 10_000 });
const historyRow = (page, v) =>
  page.locator('.panel:has(#history-h) tbody tr').filter({ has: page.locator('td.num', { hasText: new RegExp(`^v${v}(?!\\d)`) }) });

async function strategyPage() {
  const page = await openConsole(browser, engine, 'strategy');
  await page.locator('#w-weights-pop').waitFor();
  return page;
}

async function noTokenLeft(page) {
  const r = await findTokens(page, [ADMIN, READ]);
  assert.deepEqual(r.found, [], `a token was found in ${r.found.join(', ')}`);
}

test('edit → diff → publish → history → rollback to v2 through the UI', { timeout: 90_000 }, async () => {
  const v1 = await engine.ok('GET', '/v1/strategy');
  assert.equal(v1.version, 1);
  const page = await strategyPage();

  // Edit one weight: the diff names it with both values; nothing is published yet.
  await page.fill('#w-weights-pop', '0.75');
  const diff = page.locator('.panel:has(#diff-h) .diff-table');
  await diff.waitFor();
  const row = diff.locator('tr', { hasText: 'weights.pop' });
  assert.equal(await row.locator('td.old').textContent(), '0.2');
  assert.equal(await row.locator('td.new').textContent(), '0.75');
  assert.equal(await diff.locator('tbody tr').count(), 1, 'only the edited field differs');
  assert.equal((await engine.ok('GET', '/v1/strategy')).version, 1, 'an edit publishes nothing');

  // Publish with a message; the token modal asks once.
  await page.getByRole('button', { name: 'Publish…' }).click();
  await page.locator('.dialog input[type=text]').fill('e2e: more popular items');
  await page.locator('.dialog button[type=submit]').click();
  await answerToken(page, ADMIN);
  await toast(page, /Published v2/);
  await historyRow(page, 2).locator('.tag', { hasText: 'live' }).waitFor();
  assert.match(await historyRow(page, 2).textContent(), /alice.*e2e: more popular items.*set/);
  await shot(page, 'strategy-published-1280x800', { fullPage: true });

  // A second publish: no second token prompt.
  await page.fill('#w-weights-markov', '1.25');
  await page.getByRole('button', { name: 'Publish…' }).click();
  await page.locator('.dialog input[type=text]').fill('e2e: more markov');
  await page.locator('.dialog button[type=submit]').click();
  await toast(page, /Published v3/);
  assert.equal(await page.locator('.dialog input[type=password]').count(), 0, 'the token was asked again');

  // Roll back to v2 through the history: a confirmation with its diff, then v4 = v2.
  await historyRow(page, 2).getByRole('button', { name: 'Roll back…' }).click();
  const dlg = page.locator('.dialog');
  assert.match(await dlg.locator('.diff-table').textContent(), /weights\.markov/);
  await dlg.locator('input[type=text]').fill('e2e: back to v2');
  await dlg.getByRole('button', { name: 'Roll back to v2' }).click();
  await toast(page, /Rolled back: v4 now serves v2/);
  await historyRow(page, 4).locator('.tag', { hasText: 'live' }).waitFor();
  assert.match(await historyRow(page, 4).textContent(), /rollback to 2/);
  assert.equal(await page.locator('.app-header').getByText('strategy v4').count(), 1);

  // Over REST: the newest version's strategy is v2's, and the audit log names alice.
  const hist = await engine.ok('GET', '/v1/strategy/history');
  const of = (v) => hist.find((x) => x.version === v);
  assert.equal(hist.at(-1).version, 4);
  assert.deepEqual(of(4).strategy, of(2).strategy);
  assert.notDeepEqual(of(4).strategy, of(3).strategy);
  assert.equal(of(2).strategy.weights.pop, 0.75);
  assert.equal(of(2).author, 'alice');
  assert.equal(of(2).message, 'e2e: more popular items');
  assert.equal(of(4).note, 'rollback to 2');
  assert.equal((await engine.ok('GET', '/v1/strategy')).version, 4);
  const audit = await engine.ok('GET', '/v1/audit?limit=50', { token: READ });
  const publishes = audit.filter((r) => r.action === 'strategy.publish');
  const rollbacks = audit.filter((r) => r.action === 'strategy.rollback');
  assert.equal(publishes.length, 2, JSON.stringify(audit));
  assert.equal(rollbacks.length, 1, JSON.stringify(audit));
  for (const r of [...publishes, ...rollbacks]) assert.equal(r.actor, 'alice');
  assert.equal(rollbacks[0].target, 'v4');
  assert.equal(rollbacks[0].detail.message, 'e2e: back to v2');
  assert.deepEqual(publishes.find((r) => r.target === 'v2').detail.diff['weights.pop'], [0.2, 0.75]);

  // The header now names the token's actor; the token is in no storage.
  await page.locator('.app-header .who', { hasText: 'alice · admin' }).waitFor();
  await noTokenLeft(page);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the same publish with the keyboard alone', { timeout: 90_000 }, async () => {
  const before = await engine.ok('GET', '/v1/strategy');
  const page = await strategyPage();
  await page.evaluate(() => {
    window.__pointer = 0;
    for (const t of ['pointerdown', 'mousedown']) document.addEventListener(t, () => window.__pointer++, true);
  });
  // Tab to the like weight, type a new value over the old one.
  await tabTo(page, '#w-weights-like');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('0.35');
  // Back up to the Publish button and press it with Space.
  await tabTo(page, 'button.btn-primary', { text: 'Publish…', back: true });
  assert.equal(await page.evaluate(() => document.activeElement.disabled), false);
  await page.keyboard.press('Space');
  // The dialog focuses its message; Enter submits; the token modal takes the token and Enter.
  await page.locator('.dialog').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.matches('.dialog input[type=text]')), true, 'focus starts in the message');
  await page.keyboard.type('e2e: keyboard only');
  // Tab cycles inside the dialog and comes back around to the message.
  const inDialog = [];
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    inDialog.push(await page.evaluate(() => !!document.activeElement.closest('.dialog')));
  }
  assert.ok(inDialog.every(Boolean), 'focus left the dialog');
  await tabTo(page, '.dialog input[type=text]', { max: 20 });
  await page.keyboard.press('Enter');
  const tok = page.locator('.dialog input[type=password]');
  await tok.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.type), 'password', 'the token field has focus');
  await page.keyboard.type(ADMIN);
  await page.keyboard.press('Enter');
  await toast(page, new RegExp(`Published v${before.version + 1}`));
  // Focus went back to the page, not lost to <body>.
  assert.notEqual(await page.evaluate(() => document.activeElement.tagName), 'BODY');

  const now = await engine.ok('GET', '/v1/strategy');
  assert.equal(now.version, before.version + 1);
  assert.equal(now.strategy.weights.like, 0.35);
  const v = (await engine.ok('GET', '/v1/strategy/history')).at(-1);
  assert.equal(v.message, 'e2e: keyboard only');
  assert.equal(v.author, 'alice');
  assert.equal(await page.evaluate(() => window.__pointer), 0, 'a pointer was used');
  await noTokenLeft(page);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('preview: the draft reorders the slate, and nothing is recorded', { timeout: 90_000 }, async () => {
  // A user with a history of their own.
  const items = ['i3', 'i17', 'i42', 'i3', 'i58', 'i101', 'i17', 'i250', 'i3', 'i77'];
  const lines = items.map((item, i) => JSON.stringify({ user: 'e2e-preview', kind: 'click', item, ts: 1_700_000_000 + i })).join('\n');
  await engine.ok('POST', '/v1/events', { body: lines });
  const session = await engine.ok('GET', '/v1/users/e2e-preview');
  assert.equal(session.interactions, items.length);
  const stats = await engine.ok('GET', '/v1/stats');

  const page = await strategyPage();
  for (const src of ['seq', 'like', 'purchase']) await page.fill(`#w-weights-${src}`, '0');
  await page.fill('#w-weights-pop', '4');
  await page.fill('#preview-user', 'e2e-preview');
  await page.press('#preview-user', 'Enter');
  await answerToken(page, ADMIN);
  const slates = page.locator('.panel:has(#preview-h) ol.slate');
  await until(async () => (await slates.count()) === 2, { what: 'two slates' });
  const shown = async (i) => (await slates.nth(i).locator('.item').allTextContents()).map((t) => t.replace(' (explored)', ''));
  const [liveShown, draftShown] = [await shown(0), await shown(1)];
  assert.equal(liveShown.length, 10);
  assert.notDeepEqual(liveShown, draftShown, 'the draft’s slate is the live one');
  await shot(page, 'strategy-preview-1280x800', { fullPage: true });

  // The page shows the engine's own previews (live, and the draft as typed).
  const live = await engine.ok('GET', '/v1/strategy');
  const draft = structuredClone(live.strategy);
  Object.assign(draft.weights, { seq: 0, like: 0, purchase: 0, pop: 4 });
  const p1 = await engine.ok('POST', '/v1/recommend/preview', { token: ADMIN, body: { user: 'e2e-preview', k: 10 } });
  const p2 = await engine.ok('POST', '/v1/recommend/preview', { token: ADMIN, body: { user: 'e2e-preview', k: 10, strategy: draft } });
  assert.deepEqual(liveShown, p1.items.map((i) => i.item));
  assert.deepEqual(draftShown, p2.items.map((i) => i.item));
  const scores = (await slates.nth(1).locator('.score').allTextContents()).map(Number);
  p2.items.forEach((it, i) => assert.ok(Math.abs(scores[i] - it.score) <= 5e-3 * Math.max(1, Math.abs(it.score)), `score ${scores[i]} vs ${it.score}`));

  // Nothing moved: the session, the counters.
  assert.deepEqual(await engine.ok('GET', '/v1/users/e2e-preview'), session);
  const after = await engine.ok('GET', '/v1/stats');
  for (const c of ['recommendations', 'events']) assert.equal(after[c], stats[c], c);
  assert.equal(live.version, (await engine.ok('GET', '/v1/strategy')).version, 'a preview published something');
  await noTokenLeft(page);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a publish from a stale draft is refused (409) and rebased', { timeout: 60_000 }, async () => {
  const page = await strategyPage();
  // The engine's validation of the draft (debounced after each edit) answers late, after
  // the refused publish: its "accepts" must not hide the refusal (it did, under load).
  await page.route('**/v1/strategy/validate', async (route) => {
    await sleep(1500);
    await route.continue();
  });
  await page.fill('#w-candidates', '77');
  const base = await engine.ok('GET', '/v1/strategy');
  // Another operator publishes meanwhile.
  const theirs = structuredClone(base.strategy);
  theirs.reward.skip = -1;
  await engine.ok('PUT', '/v1/strategy', { token: ADMIN, body: { strategy: theirs, message: 'e2e: someone else', base_version: base.version } });
  const conflict = page.locator('.conflict');
  await conflict.waitFor({ state: 'visible' });
  assert.match(await conflict.textContent(), new RegExp(`moved to v${base.version + 1}`));

  // Publishing anyway: the engine refuses it, nothing changes.
  await page.getByRole('button', { name: 'Publish…' }).click();
  await page.locator('.dialog input[type=text]').fill('e2e: candidates');
  await page.locator('.dialog button[type=submit]').click();
  await answerToken(page, ADMIN);
  await page.locator('.status-line.error', { hasText: /Not published: the live version moved/ }).waitFor();
  await sleep(2000); // the late validation has answered by now
  assert.match(await page.locator('.status-line').textContent(), /Not published: the live version moved/);
  assert.equal((await engine.ok('GET', '/v1/strategy')).version, base.version + 1);

  // Rebase: my edit kept, theirs taken; then the publish goes through.
  await conflict.getByRole('button', { name: 'Rebase draft' }).click();
  await conflict.waitFor({ state: 'hidden' });
  assert.equal(await page.inputValue('#w-candidates'), '77');
  assert.equal(await page.inputValue('#w-reward-skip'), '-1');
  await page.getByRole('button', { name: 'Publish…' }).click();
  await page.locator('.dialog input[type=text]').fill('e2e: candidates after rebase');
  await page.locator('.dialog button[type=submit]').click();
  await toast(page, new RegExp(`Published v${base.version + 2}`));
  const now = await engine.ok('GET', '/v1/strategy');
  assert.equal(now.strategy.candidates, 77);
  assert.equal(now.strategy.reward.skip, -1);
  assert.equal((await engine.ok('GET', '/v1/strategy/history')).at(-1).based_on, base.version + 1);
  await noTokenLeft(page);
  assert.deepEqual(unexpectedErrors(page, /status of 409 \(Conflict\)/), []);
  await page.context().close();
});

test('an item found by text lends its tag to the draft’s filters', { timeout: 60_000 }, async () => {
  const page = await strategyPage();
  const answer = page.waitForResponse((r) => r.url().includes('/v1/items/search'));
  await page.fill('#strategy-find-q', 'hiking tent for camping');
  await page.press('#strategy-find-q', 'Enter');
  const found = await (await answer).json();
  assert.ok(found.items.filter((m) => m.tags.includes('outdoor')).length >= 8, JSON.stringify(found.items));
  const row = page.locator('.item-finder tbody tr').first();
  await row.waitFor();
  await row.getByRole('button', { name: 'Never serve items tagged “outdoor”' }).click();
  await toast(page, /Added “outdoor” to Never items tagged/);
  // The field shows it, the diff names it, nothing is published.
  assert.match(await page.inputValue('#w-filters-exclude_tags'), /\boutdoor\b/);
  await page.locator('.panel:has(#diff-h) .diff-table', { hasText: 'filters.exclude_tags' }).waitFor();
  const live = await engine.ok('GET', '/v1/strategy');
  assert.ok(!live.strategy.filters.exclude_tags.includes('outdoor'));
  await shot(page, 'strategy-find-by-text-1280x800', { fullPage: true });
  await page.getByRole('button', { name: 'Discard draft' }).click();
  assert.deepEqual(unexpectedErrors(page), []);
  await page.context().close();
});
