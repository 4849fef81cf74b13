// Tests of HttpEngine against a mocked fetch and EventSource: routes, the token held in
// memory only and asked for once, errors mapped to EngineError, the reconnecting stream.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EngineError } from '../src/engine/errors';
import { HttpEngine } from '../src/engine/http';
import type { StreamEvent } from '../src/engine/types';
import { defaultStrategy } from '../src/draft';
import { FakeEventSource, stats } from './fixtures';

const TOKEN = 'sekrit-token-4242';

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A fake engine: answers by route, records every request. */
function fakeFetch(route: (c: Call) => [number, unknown]) {
  const calls: Call[] = [];
  const f = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
    const c: Call = {
      url: String(url),
      method: init?.method ?? 'GET',
      headers: (init?.headers ?? {}) as Record<string, string>,
      body: init?.body ? JSON.parse(String(init.body)) : undefined,
    };
    calls.push(c);
    const [status, body] = route(c);
    return new Response(typeof body === 'string' ? body : JSON.stringify(body), {
      status,
      headers: { 'content-type': typeof body === 'string' ? 'text/html' : 'application/json' },
    });
  });
  return { f, calls };
}

const version = { version: 4, created_ms: 1, note: 'set', author: 'admin', message: 'm', based_on: 3, strategy: defaultStrategy() };

function storageHolds(s: string): boolean {
  const all: string[] = [document.cookie];
  for (const st of [localStorage, sessionStorage]) {
    for (let i = 0; i < st.length; i++) {
      const k = st.key(i)!;
      all.push(k, st.getItem(k) ?? '');
    }
  }
  return all.some((x) => x.includes(s));
}

describe('HttpEngine requests', () => {
  beforeEach(() => {
    localStorage.clear();
    sessionStorage.clear();
  });

  it('calls public routes without a token and returns the body', async () => {
    const { f, calls } = fakeFetch(() => [200, { name: 'attune', environment: 'demo' }]);
    const prompt = vi.fn(async () => TOKEN);
    const e = new HttpEngine({ baseUrl: 'http://engine:8080', prompt, fetch: f as typeof fetch });
    const info = await e.info();
    expect(info.environment).toBe('demo');
    expect(calls[0].url).toBe('http://engine:8080/v1/info');
    expect(calls[0].headers.authorization).toBeUndefined();
    expect(prompt).not.toHaveBeenCalled();
  });

  it('asks for the token once, sends it as a bearer, and keeps it out of storage', async () => {
    const { f, calls } = fakeFetch((c) => {
      if (c.headers.authorization !== `Bearer ${TOKEN}`) return [401, { error: { code: 'unauthorized', message: 'no token' } }];
      return [200, c.url.endsWith('/rollback') ? version : { ...version, version: 5 }];
    });
    const prompt = vi.fn(async () => TOKEN);
    const e = new HttpEngine({ prompt, fetch: f as typeof fetch });
    const v = await e.publish({ strategy: defaultStrategy(), message: 'why', base_version: 3 });
    expect(v.version).toBe(5);
    await e.rollback(2, 'back', 5);
    await e.abortGuard().catch(() => undefined);
    expect(prompt).toHaveBeenCalledTimes(1);
    expect(calls[0]).toMatchObject({ method: 'PUT', url: '/v1/strategy', body: { message: 'why', base_version: 3 } });
    expect(calls[1]).toMatchObject({ method: 'POST', url: '/v1/strategy/rollback', body: { version: 2, message: 'back', base_version: 5 } });
    expect(calls[2]).toMatchObject({ method: 'DELETE', url: '/v1/strategy/guard' });
    expect(calls.every((c) => c.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(storageHolds(TOKEN)).toBe(false);
  });

  it('shares one prompt between concurrent admin calls', async () => {
    const { f } = fakeFetch(() => [200, {}]);
    let release: (t: string) => void = () => undefined;
    const prompt = vi.fn(() => new Promise<string | null>((r) => (release = r)));
    const e = new HttpEngine({ prompt, fetch: f as typeof fetch });
    const a = e.forget('u1');
    const b = e.activateModel('ckpt');
    await Promise.resolve();
    release(TOKEN);
    await Promise.all([a, b]);
    expect(prompt).toHaveBeenCalledTimes(1);
    expect(f).toHaveBeenCalledTimes(2);
  });

  it('maps 401 to an EngineError and forgets the refused token, so the next action asks again', async () => {
    const { f } = fakeFetch(() => [401, { error: { code: 'unauthorized', message: 'unknown token' } }]);
    const prompt = vi.fn(async () => 'wrong');
    const e = new HttpEngine({ prompt, fetch: f as typeof fetch });
    const err = await e.forget('u1').catch((x) => x);
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ status: 401, code: 'unauthorized' });
    expect(err.message).toMatch(/unknown token/);
    await e.forget('u1').catch(() => undefined);
    expect(prompt).toHaveBeenCalledTimes(2);
  });

  it('maps 403 to "this token is read-only"', async () => {
    const { f } = fakeFetch(() => [403, { error: { code: 'forbidden', message: 'admin only' } }]);
    const e = new HttpEngine({ prompt: async () => 'reader', fetch: f as typeof fetch });
    const err = await e.activateModel('m').catch((x) => x);
    expect(err).toMatchObject({ status: 403, code: 'forbidden' });
    expect(err.message).toMatch(/this token is read-only/);
  });

  it('maps 409 to a conflict', async () => {
    const { f } = fakeFetch(() => [409, { error: { code: 'conflict', message: 'base_version 3 is not the live version 4' } }]);
    const e = new HttpEngine({ prompt: async () => TOKEN, fetch: f as typeof fetch });
    const err = await e.publish({ strategy: defaultStrategy(), message: 'x', base_version: 3 }).catch((x) => x);
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ status: 409, code: 'conflict' });
  });

  it('names the field of a 400 from validation', async () => {
    const { f } = fakeFetch(() => [400, { error: { code: 'bad_request', message: 'invalid weights.pop: 6 is outside its bounds [0, 5]' } }]);
    const e = new HttpEngine({ prompt: async () => null, fetch: f as typeof fetch });
    const err = await e.validateStrategy(defaultStrategy()).catch((x) => x);
    expect(err.status).toBe(400);
    expect(err.field).toBe('weights.pop');
  });

  it('does not call the engine when the token prompt is cancelled', async () => {
    const { f } = fakeFetch(() => [200, {}]);
    const e = new HttpEngine({ prompt: async () => null, fetch: f as typeof fetch });
    const err = await e.forget('u1').catch((x) => x);
    expect(err).toMatchObject({ status: 401, code: 'no_token' });
    expect(f).not.toHaveBeenCalled();
  });

  it('reports a network failure as unreachable (status 0)', async () => {
    const f = vi.fn(async () => {
      throw new TypeError('Failed to fetch');
    });
    const e = new HttpEngine({ prompt: async () => null, fetch: f as unknown as typeof fetch });
    const err = await e.info().catch((x) => x);
    expect(err).toMatchObject({ status: 0, code: 'unreachable' });
    expect(err.unreachable).toBe(true);
  });

  it('builds the remaining routes as the contract says', async () => {
    const { f, calls } = fakeFetch(() => [200, {}]);
    const e = new HttpEngine({ prompt: async () => TOKEN, fetch: f as typeof fetch });
    await e.history(100000);
    await e.audit(200, 17);
    await e.explain('a b', 10);
    await e.preview('u1', 5, { strategy: defaultStrategy() });
    await e.preview('u1', 5, { version: 2 });
    await e.user('u/1');
    await e.whoami();
    await e.startReplay({ strategies: [defaultStrategy()], k: 10, seed: 42 });
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      'GET /v1/history?range_s=86400',
      'GET /v1/audit?limit=200&before=17',
      'GET /v1/users/a%20b/explain?k=10',
      'POST /v1/recommend/preview',
      'POST /v1/recommend/preview',
      'GET /v1/users/u%2F1',
      'GET /v1/whoami',
      'POST /v1/replay',
    ]);
    expect(calls[3].body).toMatchObject({ user: 'u1', k: 5, strategy: { name: 'default' } });
    expect(calls[4].body).toEqual({ user: 'u1', k: 5, version: 2 });
    expect(calls[6].headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(await e.replayReport(7)).toEqual({ kind: 'url', url: '/v1/replay/7/report.html' });
  });
});

describe('HttpEngine stream', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeEventSource.instances = [];
  });
  afterEach(() => vi.useRealTimers());

  function open() {
    const got: StreamEvent[] = [];
    const e = new HttpEngine({ prompt: async () => null, eventSource: (u) => new FakeEventSource(u) as unknown as EventSource });
    const stop = e.subscribe((m) => got.push(m));
    return { got, stop };
  }

  it('passes named events on with parsed data and reports the connection', () => {
    const { got, stop } = open();
    const es = FakeEventSource.instances[0];
    expect(es.url).toBe('/v1/stream');
    es.open();
    es.send('stats', stats(1));
    es.send('marker', { ts_ms: 1, kind: 'publish', label: 'v2', version: 2 });
    expect(got.map((m) => m.event)).toEqual(['connection', 'connection', 'stats', 'marker']);
    expect(got[1].data).toMatchObject({ state: 'connected' });
    expect((got[2].data as { recommendations_per_s: number }).recommendations_per_s).toBe(101);
    stop();
    expect(es.closed).toBe(true);
  });

  it('reconnects with backoff after an error, without a reload', () => {
    const { got } = open();
    const first = FakeEventSource.instances[0];
    first.open();
    first.fail();
    expect(first.closed).toBe(true);
    expect(got.at(-1)).toMatchObject({ event: 'connection', data: { state: 'disconnected', retry_ms: 500 } });
    vi.advanceTimersByTime(499);
    expect(FakeEventSource.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(FakeEventSource.instances).toHaveLength(2);
    FakeEventSource.instances[1].fail();
    expect(got.at(-1)).toMatchObject({ data: { retry_ms: 1000 } });
    vi.advanceTimersByTime(1000);
    FakeEventSource.instances[2].fail();
    vi.advanceTimersByTime(2000);
    FakeEventSource.instances[3].fail();
    expect(got.at(-1)).toMatchObject({ data: { retry_ms: 2000 } });
    vi.advanceTimersByTime(2000);
    const last = FakeEventSource.instances[4];
    last.open();
    last.send('stats', stats(2));
    expect(got.at(-1)?.event).toBe('stats');
  });

  it('drops a stream that goes silent for 5 s and opens a new one', () => {
    open();
    const es = FakeEventSource.instances[0];
    es.open();
    vi.advanceTimersByTime(4000);
    es.send('stats', stats(1));
    vi.advanceTimersByTime(4000);
    expect(es.closed).toBe(false);
    vi.advanceTimersByTime(2000);
    expect(es.closed).toBe(true);
    vi.advanceTimersByTime(600);
    expect(FakeEventSource.instances).toHaveLength(2);
  });
});
