// End-to-end smoke of the admin flows against scripts/fake-engine.mjs in Debian's chromium:
// publish with a guard, a 409 and its rebase, rollback, preview, forget, model activation,
// a replay to its report, the audit log, and a stream drop with recovery without reload.
//
//   node scripts/fake-engine.mjs --port 8795 &
//   node scripts/e2e.mjs --url http://127.0.0.1:8795/ui/ [--out /tmp/e2e]

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const URL_ = args.url ?? 'http://127.0.0.1:8795/ui/';
const OUT = args.out ?? '/tmp/attune-e2e';
await mkdir(OUT, { recursive: true });
const API = new URL('/', URL_).href.replace(/\/$/, '');

const browser = await chromium.launch({ executablePath: args.chromium ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
};
const toastText = async () => (await page.locator('.toast').allTextContents()).join(' | ');
const answerToken = async () => {
  const input = page.locator('.dialog input[type=password]');
  if (await input.count()) {
    await input.fill('admin-token');
    await input.press('Enter');
  }
};
const submitDialog = async () => page.locator('.dialog button[type=submit]').click();

await page.goto(`${URL_}#/strategy`);
await page.waitForSelector('#w-weights-pop');
await page.waitForTimeout(500);

// Edit → diff → client validation.
await page.fill('#w-weights-pop', '7');
check((await page.locator('#w-row-pop-err').textContent()).includes('weights.pop'), 'an out-of-bounds weight is named beside its field');
check(await page.locator('text=Publish…').isDisabled(), 'publish is disabled while the draft is invalid');
await page.fill('#w-weights-pop', '0.9');
check((await page.locator('.diff-table').textContent()).includes('weights.pop'), 'the diff lists weights.pop');

// Publish with a guard.
await page.click('text=Publish…');
await page.fill('.dialog input[type=text]', 'more popularity');
await page.check('#pub-guard');
await submitDialog();
await page.waitForTimeout(300);
await answerToken();
await page.waitForTimeout(800);
check((await toastText()).includes('Published v3 under a guard'), 'publish answers with the new version');
await page.waitForTimeout(2500);
check((await page.locator('#guard-h').locator('..').locator('..').textContent()).includes('watching'), 'the guard panel shows the watch');
await page.screenshot({ path: `${OUT}/strategy-guard.png` });

// A publish from a stale base: another operator publishes meanwhile.
await page.fill('#w-candidates', '77');
await page.evaluate(async (api) => {
  const live = await (await fetch(`${api}/v1/strategy`)).json();
  live.strategy.reward.skip = -1;
  await fetch(`${api}/v1/strategy`, { method: 'PUT', headers: { authorization: 'Bearer admin-token', 'content-type': 'application/json' }, body: JSON.stringify({ strategy: live.strategy, message: 'someone else', base_version: live.version }) });
}, API);
await page.waitForTimeout(800);
const conflict = page.locator('.conflict');
check(await conflict.isVisible(), 'a moved live version is flagged before publishing');
await page.click('text=Publish…');
await page.fill('.dialog input[type=text]', 'candidates');
await submitDialog();
await page.waitForTimeout(800);
check((await conflict.textContent()).includes('moved to v4'), '409: "the live version moved to v4 meanwhile — rebase your draft"');
await page.click('text=Rebase draft');
await page.waitForTimeout(600);
check((await page.locator('#w-candidates').inputValue()) === '77' && (await page.locator('#w-reward-skip').inputValue()) === '-1', 'rebase keeps the edit and takes live’s change');
await page.click('text=Publish…');
await page.fill('.dialog input[type=text]', 'candidates after rebase');
await submitDialog();
await page.waitForTimeout(800);
check((await toastText()).includes('Published v5'), 'the rebased draft publishes');

// Preview and rollback.
await page.fill('#w-weights-seq', '0.1');
await page.fill('#preview-user', 'u7');
await page.press('#preview-user', 'Enter');
await page.waitForTimeout(800);
check((await page.locator('.slate').count()) === 2, 'preview shows live and draft slates side by side');
await page.click('button:has-text("Discard draft")');
const rollback = page.locator('tr:has-text("initial") button:has-text("Roll back")');
await rollback.click();
await submitDialog();
await page.waitForTimeout(800);
check((await toastText()).includes('Rolled back: v6'), 'rollback creates a new version');

// Sessions: look up and forget.
await page.evaluate(() => (location.hash = '#/sessions'));
await page.fill('#session-user', 'u42');
await page.press('#session-user', 'Enter');
await page.waitForTimeout(800);
check((await page.locator('.heatmap rect').count()) > 0, 'the attention heatmap is drawn');
await page.check('#session-heads');
check((await page.locator('.heatmap .row-label').count()) === 3, 'per-head rows on demand');
await page.screenshot({ path: `${OUT}/sessions.png`, fullPage: true });
await page.click('text=Forget user…');
await page.fill('.dialog input', 'u4');
await submitDialog();
check((await page.locator('.dialog-error').textContent()).includes('u42'), 'forget needs the exact user id typed');
await page.fill('.dialog input', 'u42');
await submitDialog();
await page.waitForTimeout(600);
check((await toastText()).includes('Forgot u42'), 'forget reports what was deleted');

// Models: activate → marker on Live.
await page.evaluate(() => (location.hash = '#/models'));
await page.waitForTimeout(600);
await page.click('article:has-text("sasrec-ml1m-d128") button:has-text("Activate")');
await submitDialog();
await page.waitForTimeout(800);
check((await page.locator('.app-header').textContent()).includes('model v2 · sasrec-ml1m-d128'), 'the header shows the new model');
await page.screenshot({ path: `${OUT}/models.png`, fullPage: true });

// Replay: live + v1 → report.
await page.evaluate(() => (location.hash = '#/replay'));
await page.waitForTimeout(400);
await page.check('#replay-s-v1');
await page.click('text=Start replay…');
await submitDialog();
await page.waitForTimeout(2500);
check((await page.locator('[role=progressbar]').count()) === 1 || (await page.locator('.report').count()) === 1, 'the replay shows progress');
await page.waitForTimeout(8000);
check((await page.locator('.report table').count()) >= 1, 'the replay report is shown');
await page.screenshot({ path: `${OUT}/replay.png`, fullPage: true });

// Audit: live entries.
await page.evaluate(() => (location.hash = '#/audit'));
await page.waitForTimeout(800);
const audit = await page.locator('.page-audit').textContent();
check(audit.includes('model.activate') && audit.includes('user.forget') && audit.includes('replay.start'), 'the audit log lists the actions');
await page.selectOption('#audit-action', 'strategy.publish');
check((await page.locator('.page-audit tbody tr').count()) > 0 && !(await page.locator('.page-audit tbody').textContent()).includes('user.forget'), 'filtering by action');

// Live: markers, and a stream drop (the page must not reload).
await page.evaluate(() => (location.hash = '#/live'));
await page.evaluate(() => (window.__noReload = true));
await page.waitForTimeout(1500);
await page.screenshot({ path: `${OUT}/live.png` });
await page.locator('#live-scrub').evaluate((el) => {
  el.value = String(Math.floor(Number(el.max) / 2));
  el.dispatchEvent(new Event('input', { bubbles: true }));
});
await page.waitForTimeout(300);
check((await page.locator('.scrub-time').textContent()).endsWith('Z') && (await page.locator('button:has-text("Resume")').count()) === 1, 'scrubbing pauses and shows the UTC time of the point');
await page.click('button:has-text("Resume")');
await page.check('#range-1h');
await page.waitForTimeout(1200);
check((await page.locator('.range-note').textContent()).includes('Server history: 1 h'), 'a 1 h range shows the server history');
await page.check('#range-30m');
const stored = await page.evaluate(() => {
  const all = [document.cookie];
  for (const st of [localStorage, sessionStorage]) for (let i = 0; i < st.length; i++) all.push(st.key(i), st.getItem(st.key(i)));
  return all.some((x) => x && x.includes('admin-token'));
});
check(!stored, 'the token is in no browser storage');
if (args.restart) {
  console.log('… stop the engine now for the drop test');
}
check(errors.length === 0, `no page errors${errors.length ? `: ${errors.join('; ')}` : ''}`);
await browser.close();
console.log(failures ? `${failures} failed` : 'all passed');
process.exit(failures ? 1 : 0);
