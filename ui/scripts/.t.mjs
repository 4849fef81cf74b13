import { chromium } from 'playwright-core';
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox','--disable-gpu'] });
const page = await browser.newPage({ viewport: { width: 1920, height: 3200 } });
await page.goto('http://127.0.0.1:8792/ui/#/live');
await page.waitForTimeout(3000);
await page.evaluate(() => { window.__ct = {}; window.__attunePerf.ticks.length = 0; });
await page.waitForTimeout(20000);
const r = await page.evaluate(() => ({ ct: window.__ct, n: window.__attunePerf.ticks.length, ticks: window.__attunePerf.ticks }));
let sum = 0;
for (const [k, v] of Object.entries(r.ct)) { sum += v / r.n; console.log((v / r.n).toFixed(3).padStart(7), k); }
const s = [...r.ticks].sort((a,b)=>a-b); console.log('sum', sum.toFixed(2), 'median', s[s.length>>1]);
await browser.close();
