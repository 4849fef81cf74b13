// Browser checks with Debian's chromium through playwright-core (no browser download):
// screenshots of every page, the Live page's tick timing, axe-core's serious/critical
// violations, horizontal overflow, and that the token never reaches browser storage.
//
//   node scripts/fake-engine.mjs --port 8799 &   # or any engine serving dist/ at /ui/
//   node scripts/check.mjs --url http://127.0.0.1:8799/ui/ [--out /tmp/shots] [--perf 60]

import { chromium } from 'playwright-core';
import { readFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const URL_ = args.url ?? 'http://127.0.0.1:8799/ui/';
const OUT = args.out ?? '/tmp/attune-shots';
const PERF_S = Number(args.perf ?? 0);
const PAGES = (args.pages ?? 'live,strategy,sessions,replay,models,audit').split(',');
const SIZES = (args.sizes ?? '1280x800').split(',').map((s) => s.split('x').map(Number));
const TOKEN = args.token ?? 'admin-token';

await mkdir(OUT, { recursive: true });
const require = createRequire(import.meta.url);
const axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');

const browser = await chromium.launch({
  executablePath: args.chromium ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = false;

for (const [width, height] of SIZES) {
  const page = await browser.newPage({ viewport: { width, height } });
  page.on('pageerror', (e) => {
    console.log(`PAGE ERROR: ${e.message}`);
    failed = true;
  });
  page.on('console', (m) => m.type() === 'error' && console.log(`console.error: ${m.text()}`));
  await page.goto(`${URL_}#/live`);
  await page.waitForTimeout(2500);

  for (const p of PAGES) {
    await page.evaluate((h) => (location.hash = h), `#/${p}`);
    await page.waitForTimeout(900);
    if (args.interact) await interact(page, p);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 0) {
      console.log(`${width}x${height} ${p}: horizontal overflow ${overflow}px`);
      failed = true;
    }
    const file = `${OUT}/${p}-${width}x${height}.png`;
    await page.screenshot({ path: file, fullPage: !!args.full });
    await page.addScriptTag({ content: axeSource });
    const res = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length}) e.g. ${v.nodes[0]?.target?.join(' ')}`);
    });
    console.log(`${width}x${height} ${p}: ${file}; axe serious/critical: ${res.length ? `\n  ${res.join('\n  ')}` : 'none'}`);
    if (res.length) failed = true;
  }

  if (PERF_S > 0) {
    await page.evaluate(() => (location.hash = '#/live'));
    await page.evaluate(() => window.__attunePerf && (window.__attunePerf.ticks.length = 0));
    await page.waitForTimeout(PERF_S * 1000);
    const ticks = await page.evaluate(() => window.__attunePerf?.ticks ?? []);
    const s = [...ticks].sort((a, b) => a - b);
    const q = (f) => s[Math.min(s.length - 1, Math.floor(f * s.length))];
    const points = await page.evaluate(() => document.querySelectorAll('.chart').length);
    console.log(`perf ${width}x${height}: ${ticks.length} ticks, ${points} charts, median ${q(0.5)?.toFixed(2)} ms, p90 ${q(0.9)?.toFixed(2)} ms, max ${s.at(-1)?.toFixed(2)} ms`);
  }

  if (args.interact) {
    const stored = await page.evaluate(async (tok) => {
      const all = [document.cookie];
      for (const st of [localStorage, sessionStorage]) for (let i = 0; i < st.length; i++) all.push(st.key(i), st.getItem(st.key(i)));
      const dbs = indexedDB.databases ? await indexedDB.databases() : [];
      return { inStorage: all.some((x) => x && x.includes(tok)), dbs: dbs.length };
    }, TOKEN);
    console.log(`token in storage: ${stored.inStorage}; indexedDB databases: ${stored.dbs}`);
    if (stored.inStorage) failed = true;
  }
  await page.close();
}

async function interact(page, p) {
  const answerToken = async () => {
    const input = page.locator('.dialog input[type=password]');
    if (await input.count()) {
      await input.fill(TOKEN);
      await page.keyboard.press('Enter');
      await page.waitForTimeout(500);
    }
  };
  if (p === 'strategy') {
    const pop = page.locator('#w-weights-pop');
    if (await pop.count()) {
      await pop.fill('0.9');
      await page.locator('#w-max_weights-seq').fill('0.5');
      await page.locator('#preview-user').fill('u42');
      await page.locator('#preview-user').press('Enter');
      await page.waitForTimeout(300);
      await answerToken();
      await page.waitForTimeout(800);
    }
  } else if (p === 'sessions') {
    await page.locator('#session-user').fill('u42');
    await page.locator('#session-user').press('Enter');
    await page.waitForTimeout(300);
    await answerToken();
    await page.waitForTimeout(800);
  } else if (p === 'audit') {
    await answerToken();
    await page.waitForTimeout(800);
  }
}

await browser.close();
process.exit(failed ? 1 : 0);
