// Debian's Chromium through playwright-core (never a downloaded browser): launching it,
// opening the console on a real engine, answering the token modal, screenshots under
// target/ui-shots/, axe-core, and where a token could have been left behind.

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { REPO } from './engine.mjs';

export const SHOTS = join(REPO, 'target/ui-shots');
mkdirSync(SHOTS, { recursive: true });

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000,
  });
}

/**
 * A page of the console at `route` (`live`, `strategy`, …), waiting until it is connected
 * to the live stream. Page errors and console errors are collected in `page.errors`.
 */
export async function openConsole(browser, engine, route = 'live', { width = 1280, height = 800, connected = true } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, acceptDownloads: true });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console.error: ${m.text()}`);
  });
  page.setDefaultTimeout(15_000);
  await page.goto(`${engine.ui}#/${route}`);
  if (connected) await page.locator('.link.link-connected').waitFor({ timeout: 20_000 });
  return page;
}

/**
 * The page's errors, less those a test expects: Chromium logs every 4xx/5xx answer and
 * every refused connection as a console error (`expected` are regular expressions).
 */
export function unexpectedErrors(page, ...expected) {
  return page.errors.filter((e) => !expected.some((re) => re.test(e)));
}

/** Goes to a route of the already open console (no reload). */
export async function go(page, route) {
  await page.evaluate((r) => (location.hash = `#/${r}`), route);
  await page.locator(`.page-${route}`).waitFor({ state: 'visible' });
}

/** Waits for the token modal and answers it with `token` (typed, then Enter). */
export async function answerToken(page, token, { timeout = 10_000 } = {}) {
  const input = page.locator('.dialog input[type=password]');
  await input.waitFor({ state: 'visible', timeout });
  await input.fill(token);
  await input.press('Enter');
  await input.waitFor({ state: 'detached', timeout });
}

export async function shot(page, name, opts = {}) {
  const path = join(SHOTS, `${name}.png`);
  // A full-page shot of a scrolled page draws the sticky header where the viewport was.
  if (opts.fullPage) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path, ...opts });
  return path;
}

/** axe-core's serious and critical violations of the page as it is now. */
export async function axeSerious(page) {
  // Through the DevTools protocol: the console's CSP (script-src 'self') refuses inline tags.
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(AXE);
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length}) e.g. ${v.nodes[0]?.target?.join(' ')} ${v.nodes[0]?.failureSummary ?? ''}`);
  });
}

/**
 * Every place a page could keep a token: cookies, localStorage, sessionStorage, every
 * IndexedDB database's every record, Cache Storage, the URL. Returns where each was found.
 */
export async function findTokens(page, tokens) {
  return page.evaluate(async (toks) => {
    const found = [];
    const look = (where, s) => {
      if (typeof s !== 'string') s = JSON.stringify(s ?? null);
      for (const t of toks) if (s.includes(t)) found.push(where);
    };
    look('location', location.href);
    look('document.cookie', document.cookie);
    for (const [name, st] of [['localStorage', localStorage], ['sessionStorage', sessionStorage]]) {
      for (let i = 0; i < st.length; i++) look(name, `${st.key(i)}=${st.getItem(st.key(i))}`);
    }
    const dbs = indexedDB.databases ? await indexedDB.databases() : [];
    for (const d of dbs) {
      look('indexedDB name', d.name);
      const db = await new Promise((res, rej) => {
        const r = indexedDB.open(d.name);
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      for (const store of db.objectStoreNames) {
        const all = await new Promise((res) => {
          const r = db.transaction(store).objectStore(store).getAll();
          r.onsuccess = () => res(r.result);
          r.onerror = () => res([]);
        });
        look(`indexedDB ${d.name}/${store}`, all);
      }
      db.close();
    }
    if (typeof caches !== 'undefined') {
      for (const k of await caches.keys()) look('CacheStorage', k);
    }
    return { found, indexedDB: dbs.length };
  }, tokens);
}

/**
 * Focuses the element matching the CSS `selector` (and whose text is `text`, if given) with
 * Tab alone, or Shift+Tab with `back` (bounded); returns the presses.
 */
export async function tabTo(page, selector, { text = null, max = 250, back = false } = {}) {
  for (let i = 1; i <= max; i++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const hit = await page.evaluate(
      ([s, t]) => !!document.activeElement?.matches(s) && (t === null || document.activeElement.textContent.trim() === t),
      [selector, text],
    );
    if (hit) return i;
  }
  throw new Error(`${selector} not reached with ${max} ${back ? 'Shift+Tab' : 'Tab'} presses`);
}
