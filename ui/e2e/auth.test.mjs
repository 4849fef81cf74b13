// Roles on every route the OpenAPI document marks, against a real engine: admin routes
// answer 401 without a token and 403 with the read token, read routes 401 without one; and
// in the browser, a token given to the console lives in the tab's memory only: after admin
// and read actions it is in no browser storage, and a reload forgets it.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { answerToken, findTokens, go, openConsole } from './lib/browser.mjs';
import { ADMIN, READ } from './lib/engine.mjs';
import { world } from './lib/world.mjs';

let engine;
let browser;

world({ start: { users: 50 } }, (w) => ({ engine, browser } = w));

test('every marked route needs its role', { timeout: 60_000 }, async () => {
  const doc = await engine.ok('GET', '/v1/openapi.json');
  const marked = { admin: [], read: [] };
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const role = op['x-attune-role'];
      const m = method.toUpperCase();
      const concrete = path.replace('{id}', 'u1').replace('{file}', 'x');
      if (role === 'admin') {
        marked.admin.push(`${m} ${path}`);
        const none = await engine.call(m, concrete, { body: '{}' });
        assert.equal(none.status, 401, `${m} ${path} without a token: ${none.status}`);
        assert.equal(none.body.error.code, 'unauthorized');
        const ro = await engine.call(m, concrete, { token: READ, body: '{}' });
        assert.equal(ro.status, 403, `${m} ${path} with the read token: ${ro.status}`);
        assert.equal(ro.body.error.code, 'forbidden');
        const wrong = await engine.call(m, concrete, { token: 'not-a-token-of-this-engine', body: '{}' });
        assert.equal(wrong.status, 401, `${m} ${path} with a wrong token`);
      } else if (role === 'read') {
        marked.read.push(`${m} ${path}`);
        const none = await engine.call(m, concrete);
        assert.equal(none.status, 401, `${m} ${path} without a token: ${none.status}`);
        const ro = await engine.call(m, concrete, { token: READ });
        assert.ok(![401, 403].includes(ro.status), `${m} ${path} refuses the read token: ${ro.status}`);
      } else {
        assert.equal(op.security, undefined, `${m} ${path} has security but no role`);
      }
    }
  }
  // The document marks what docs/console-api.md says the console's admin and read routes are.
  for (const r of ['PUT /v1/strategy', 'POST /v1/strategy/rollback', 'DELETE /v1/strategy/guard', 'POST /v1/recommend/preview', 'DELETE /v1/users/{id}', 'POST /v1/models/activate', 'POST /v1/replay']) {
    assert.ok(marked.admin.includes(r), `${r} is not marked admin: ${marked.admin}`);
  }
  for (const r of ['GET /v1/audit', 'GET /v1/users/{id}/explain']) assert.ok(marked.read.includes(r), `${r} is not marked read`);
  console.log(`auth: ${marked.admin.length} admin and ${marked.read.length} read routes checked`);
  // Public routes answer without a token; whoami names the token's actor.
  assert.equal((await engine.call('GET', '/v1/strategy')).status, 200);
  assert.deepEqual(await engine.ok('GET', '/v1/whoami'), { actor: null, role: 'none' });
  assert.deepEqual(await engine.ok('GET', '/v1/whoami', { token: READ }), { actor: 'wall', role: 'read' });
  assert.deepEqual(await engine.ok('GET', '/v1/whoami', { token: ADMIN }), { actor: 'alice', role: 'admin' });
});

test('the token stays in the tab’s memory: no storage, forgotten on reload', { timeout: 60_000 }, async () => {
  const page = await openConsole(browser, engine, 'audit');
  // The audit page asks for a token only when told to.
  await page.getByRole('button', { name: 'Enter token…' }).last().waitFor();
  assert.equal(await page.locator('.dialog').count(), 0, 'a token was asked for on navigation');
  await page.locator('.page-audit').getByRole('button', { name: 'Enter token…' }).click();
  await answerToken(page, ADMIN);
  await page.locator('.page-audit table').waitFor();
  await page.locator('.app-header .who', { hasText: 'alice · admin' }).waitFor();
  // An admin action on the same token: forget a user (typed confirmation).
  await go(page, 'sessions');
  await page.fill('#session-user', 'u3');
  await page.press('#session-user', 'Enter');
  await page.locator('svg.heatmap').waitFor();
  await page.getByRole('button', { name: 'Forget user…' }).click();
  await page.locator('.dialog input').fill('u3');
  await page.locator('.dialog button[type=submit]').click();
  await page.locator('.toast', { hasText: /Forgot u3/ }).waitFor();
  assert.equal((await engine.call('GET', '/v1/users/u3')).body.interactions ?? 0, 0);
  const audit = await engine.ok('GET', '/v1/audit?limit=5', { token: READ });
  // The audit log keeps no copy of a forgotten user's id: both entries name them by number.
  const rows = audit.slice(0, 2).map((r) => [r.action, r.actor, r.target]);
  assert.deepEqual(
    rows.map(([a, who]) => [a, who]),
    [
      ['user.forget', 'alice'],
      ['user.lookup', 'alice'],
    ],
  );
  assert.match(rows[0][2], /^user #\d+$/);
  assert.equal(rows[1][2], rows[0][2]);

  // The audit page shows them live, and filters by action.
  await go(page, 'audit');
  await page.locator('.page-audit tbody tr', { hasText: 'user.forget' }).waitFor();
  await page.selectOption('#audit-action', 'user.forget');
  const actions = await page.locator('.page-audit tbody tr td:nth-child(4)').allTextContents();
  assert.deepEqual(actions, ['user.forget']);
  await page.selectOption('#audit-action', '');

  const found = await findTokens(page, [ADMIN, READ]);
  assert.deepEqual(found.found, [], `the token was found in ${found.found}`);
  // A reload forgets it: no actor, and the audit page waits for a token again.
  await page.reload();
  await page.locator('.link.link-connected').waitFor();
  await go(page, 'audit');
  await page.locator('.page-audit').getByRole('button', { name: 'Enter token…' }).waitFor();
  assert.equal(await page.locator('.app-header .who').textContent(), 'no token');
  assert.deepEqual((await findTokens(page, [ADMIN, READ])).found, []);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
