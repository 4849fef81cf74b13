// Every page at 1280×800 and 1920×1080 on a real engine under traffic, with content (a
// draft and a preview, a looked-up user, the audit log): a screenshot that is not blank,
// no error banner or error notice, no horizontal overflow, no serious or critical axe-core
// violation, and Live's charts drawn.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { answerToken, axeSerious, go, openConsole, shot } from './lib/browser.mjs';
import { ADMIN, traffic, until } from './lib/engine.mjs';
import { inkStats, readPng } from './lib/png.mjs';
import { world } from './lib/world.mjs';

let engine;
let browser;

world({ rate: 30, maxMs: 180_000 }, (w) => ({ engine, browser } = w));

/** Puts content on each page the way an operator would. */
const PREPARE = {
  async live(page) {
    await until(() => page.evaluate(() => Number(document.querySelector('#live-scrub').max) >= 4), { ms: 15_000, what: 'live points' });
  },
  async strategy(page) {
    await page.fill('#w-weights-pop', '0.6');
    await page.fill('#preview-user', 'u5');
    await page.press('#preview-user', 'Enter');
    await answerToken(page, ADMIN);
    await until(async () => (await page.locator('.panel:has(#preview-h) ol.slate').count()) === 2, { what: 'the preview' });
  },
  async sessions(page) {
    await page.fill('#session-user', 'u5');
    await page.press('#session-user', 'Enter');
    await page.locator('svg.heatmap').waitFor();
  },
  async replay(page) {
    await page.locator('#replay-s-live').waitFor();
  },
  async models(page) {
    await page.locator('.page-models article').first().waitFor();
  },
  async audit(page) {
    await page.locator('.page-audit table').waitFor();
  },
};

for (const [width, height] of [
  [1280, 800],
  [1920, 1080],
]) {
  test(`every page at ${width}×${height}`, { timeout: 120_000 }, async () => {
    const page = await openConsole(browser, engine, 'live', { width, height });
    const problems = [];
    for (const [name, prepare] of Object.entries(PREPARE)) {
      await go(page, name);
      await prepare(page);
      await page.waitForTimeout(400); // toasts and late renders settle
      await page.evaluate(() => window.scrollTo(0, 0));
      const file = await shot(page, `${name}-${width}x${height}`);

      const img = readPng(file);
      assert.deepEqual([img.width, img.height], [width, height]);
      const { ink, colours } = inkStats(img);
      if (ink < 0.05 || colours < 40) problems.push(`${name}: the screenshot looks blank (ink ${(ink * 100).toFixed(1)} %, ${colours} colours)`);

      const state = await page.evaluate((n) => {
        const section = document.querySelector(`.page-${n}`);
        const visible = (el) => {
          const r = el.getBoundingClientRect();
          return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden';
        };
        return {
          text: section.innerText.length,
          visibleChildren: [...section.children].filter(visible).length,
          overflow: document.documentElement.scrollWidth - window.innerWidth,
          banner: visible(document.querySelector('.banner')) && !document.querySelector('.banner').hidden,
          errors: [...document.querySelectorAll('.notice-error, .toast-error, .dialog-error:not(:empty)')].filter(visible).map((e) => e.textContent),
          dialog: !!document.querySelector('.dialog'),
        };
      }, name);
      if (state.text < 100) problems.push(`${name}: only ${state.text} characters of text`);
      if (state.visibleChildren < 2) problems.push(`${name}: ${state.visibleChildren} visible children in the page`);
      if (state.overflow > 0) problems.push(`${name}: horizontal overflow of ${state.overflow}px`);
      if (state.banner) problems.push(`${name}: the connection banner shows`);
      if (state.errors.length) problems.push(`${name}: errors shown: ${state.errors.join(' | ')}`);
      if (state.dialog) problems.push(`${name}: a dialog is left open`);
      for (const v of await axeSerious(page)) problems.push(`${name}: axe ${v}`);

      if (name === 'live') {
        // Every chart in view has a line on it, not only its axes.
        const charts = await page.locator('.page-live figure.chart canvas').evaluateAll((cs) =>
          cs
            .filter((c) => c.getBoundingClientRect().top < window.innerHeight)
            .map((c) => {
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const seen = new Set();
              for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
              return seen.size;
            }),
        );
        if (!charts.length) problems.push('live: no chart in view');
        charts.forEach((n, i) => n < 8 && problems.push(`live: chart ${i + 1} is blank (${n} colours)`));
      }
    }
    assert.deepEqual(problems, []);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
}
