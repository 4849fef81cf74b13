// A real `attune serve` for the end-to-end tests: a generated store (the shipped model's
// synthetic catalogue), two named tokens, a loopback port; started, SIGKILLed and restarted
// on the same port and store; every child is killed when the test process ends, even on a
// failure. Also the REST helpers and a bounded traffic loop that drives the engine.

import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = process.env.ATTUNE_BIN ?? join(REPO, 'target/debug/attune');
export const SHIPPED_MODEL = join(REPO, 'models/synthetic-default');

/** The operators of every test engine: `alice` (admin) and `wall` (read). */
export const ADMIN = 'alice-admin-e2e-token-7f3c9a1d04';
export const READ = 'wall-read-e2e-token-55be02c7e9';

const children = new Set();
const temps = new Set();
function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
  for (const d of temps) rmSync(d, { recursive: true, force: true });
  temps.clear();
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

/** A temporary directory, removed when the process exits. */
export function tempDir(prefix = 'attune-e2e-') {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.add(d);
  return d;
}

/**
 * A directory of checkpoints: copies of the shipped synthetic model under the given names
 * (our own model; nothing from ../shared/data).
 */
export function modelsDir(names) {
  const dir = join(tempDir('attune-e2e-models-'), 'models');
  mkdirSync(dir, { recursive: true });
  for (const n of names) cpSync(SHIPPED_MODEL, join(dir, n), { recursive: true });
  return dir;
}

export class Engine {
  /** Generates a store with `users` synthetic users and serves it. */
  static async start({ users = 300, models = join(REPO, 'models'), environment = 'e2e' } = {}) {
    const dir = tempDir();
    const store = join(dir, 'store');
    const gen = spawnSync(BIN, ['generate', '--users', String(users), '--store', store], { encoding: 'utf8', timeout: 60_000 });
    if (gen.status !== 0) throw new Error(`attune generate failed: ${gen.stderr || gen.error}`);
    const tokens = join(dir, 'tokens');
    writeFileSync(tokens, `# e2e operators\nalice admin ${ADMIN}\nwall read ${READ}\n`);
    const e = new Engine({ dir, store, models, tokens, environment });
    await e.launch('127.0.0.1:0');
    await e.textReady();
    return e;
  }

  /** Waits until the text source has embedded the catalogue: slates change until then. */
  async textReady(ms = 120_000) {
    await until(
      async () => {
        const t = (await this.ok('GET', '/v1/info')).text;
        return !t || t.state !== 'on' || t.pending === 0;
      },
      { ms, what: 'the catalogue’s text embedded' },
    );
  }

  constructor(o) {
    Object.assign(this, o);
    this.proc = null;
    this.url = null;
    this.port = null;
    this.log = '';
  }

  async launch(bind) {
    const args = ['serve', '--store', this.store, '--models', this.models, '--bind', bind, '--token-file', this.tokens, '--environment', this.environment];
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    proc.on('exit', () => children.delete(proc));
    this.proc = proc;
    const url = await new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`attune serve did not listen in 30 s:\n${this.log}`)), 30_000);
      const onData = (b) => {
        this.log += b.toString();
        if (this.log.length > 200_000) this.log = this.log.slice(-100_000);
        const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(this.log);
        if (m) {
          clearTimeout(timer);
          res(m[1]);
        }
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      proc.on('exit', (code, sig) => {
        clearTimeout(timer);
        rej(new Error(`attune serve exited (${code ?? sig}):\n${this.log}`));
      });
    });
    this.log = '';
    this.url = url;
    this.port = Number(new URL(url).port);
    return url;
  }

  /** SIGKILL: no graceful stop, no `shutdown` event on the stream. */
  async kill() {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }

  /** Serves the same store on the same port again (retrying while the port is still held). */
  async restart() {
    await this.kill();
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        return await this.launch(`127.0.0.1:${this.port}`);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(300);
      }
    }
  }

  async stop() {
    await this.kill();
  }

  get ui() {
    return `${this.url}/ui/`;
  }

  /** One REST call: `{status, body}` (JSON parsed when it is JSON). */
  async call(method, path, { token, body, timeoutMs = 15_000 } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    let payload;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(this.url + path, { method, headers, body: payload, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let parsed = text;
    if ((res.headers.get('content-type') ?? '').includes('json')) {
      try {
        parsed = JSON.parse(text);
      } catch {
        // keep the text
      }
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  /** A call that must answer 200 (or `expect`); its body. */
  async ok(method, path, opts = {}) {
    const r = await this.call(method, path, opts);
    const want = opts.expect ?? 200;
    if (r.status !== want) throw new Error(`${method} ${path}: ${r.status} ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`);
    return r.body;
  }

  /** A counter of `/metrics` (the sum of its series). */
  async metric(name) {
    const text = (await this.call('GET', '/metrics')).body;
    let sum = 0;
    let found = false;
    for (const line of String(text).split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (m && m[1] === name) {
        sum += Number(m[3]);
        found = true;
      }
    }
    if (!found) throw new Error(`no ${name} in /metrics`);
    return sum;
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value (returned) or `ms` pass (throws `what`). */
export async function until(fn, { ms = 10_000, every = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(every);
  }
}

/**
 * Traffic against the engine from this process: `POST /v1/recommend` for the store's users
 * (`u0`…) at about `rate` a second, and a click on a recommended item every `clickEvery`
 * recommendations. Bounded by `maxMs`; errors (an engine that is down) are counted, not thrown.
 */
export function traffic(engine, { rate = 40, users = 300, clickEvery = 3, maxMs = 120_000 } = {}) {
  const stats = { recommendations: 0, clicks: 0, errors: 0 };
  let stopped = false;
  const started = Date.now();
  const period = 1000 / rate;
  const loop = (async () => {
    let n = 0;
    let next = Date.now();
    while (!stopped && Date.now() - started < maxMs) {
      const user = `u${(n * 7) % users}`;
      n++;
      try {
        const r = await fetch(`${engine.url}/v1/recommend`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ user, k: 10 }),
          signal: AbortSignal.timeout(5000),
        });
        const rec = await r.json();
        if (r.ok) {
          stats.recommendations++;
          if (n % clickEvery === 0 && rec.items?.length) {
            const item = rec.items[n % Math.min(3, rec.items.length)].item;
            const ev = await fetch(`${engine.url}/v1/events`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ user, kind: 'click', item, ts: Date.now() / 1000 }),
              signal: AbortSignal.timeout(5000),
            });
            await ev.arrayBuffer();
            if (ev.ok) stats.clicks++;
            else stats.errors++;
          }
        } else stats.errors++;
      } catch {
        stats.errors++;
        await sleep(100);
      }
      next += period;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      else if (wait < -1000) next = Date.now();
    }
  })();
  return {
    stats,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
