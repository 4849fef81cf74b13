// The world of one test file: a real `attune serve` (optionally under traffic from this
// process) and one Chromium, started before the file's tests and stopped after them,
// even when a test fails.

import { after, before } from 'node:test';
import { launch } from './browser.mjs';
import { Engine, traffic } from './engine.mjs';

/**
 * Registers the file's setup and teardown. `start` goes to `Engine.start`; `rate` > 0 drives
 * the engine at that many requests a second for at most `maxMs`. `ready` gets
 * `{ engine, browser }` once both run.
 */
export function world({ start = {}, rate = 0, maxMs = 150_000 } = {}, ready = () => {}) {
  let engine;
  let browser;
  let load;
  before(async () => {
    engine = await Engine.start(start);
    if (rate > 0) load = traffic(engine, { rate, maxMs });
    browser = await launch();
    ready({ engine, browser });
  });
  after(async () => {
    await load?.stop();
    await browser?.close();
    await engine?.stop();
  });
}
