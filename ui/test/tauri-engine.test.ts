// Tests of TauriEngine with mockIPC: every route goes through `api_call`, errors map to
// EngineError, the live stream arrives on a Channel, `connect` re-subscribes.
import { clearMocks, mockIPC } from '@tauri-apps/api/mocks';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineError } from '../src/engine/errors';
import { TauriEngine, inTauri } from '../src/engine/tauri';
import type { StreamEvent } from '../src/engine/types';
import { defaultStrategy } from '../src/draft';
import { stats } from './fixtures';

interface Invoked {
  cmd: string;
  args: Record<string, unknown>;
}

type Internals = { runCallback: (id: number, data: unknown) => void };
const internals = () => (window as unknown as { __TAURI_INTERNALS__: Internals }).__TAURI_INTERNALS__;

/** Sends a message down a channel as the Rust side would (ordered by index). */
function send(channel: { id: number }, index: number, message: StreamEvent) {
  internals().runCallback(channel.id, { index, message });
}

afterEach(() => clearMocks());

describe('TauriEngine', () => {
  it('is detected by __TAURI_INTERNALS__', () => {
    mockIPC(() => null);
    expect(inTauri()).toBe(true);
  });

  it('forwards REST calls to api_call and returns the body', async () => {
    const seen: Invoked[] = [];
    mockIPC((cmd, args) => {
      seen.push({ cmd, args: args as Record<string, unknown> });
      return { status: 200, body: { version: 4, strategy: defaultStrategy(), weights: {} } };
    });
    const e = new TauriEngine();
    const v = await e.strategy();
    expect(v.version).toBe(4);
    await e.publish({ strategy: defaultStrategy(), message: 'why', base_version: 4 });
    await e.audit(50);
    expect(seen[0]).toEqual({ cmd: 'api_call', args: { method: 'GET', path: '/v1/strategy', body: null } });
    expect(seen[1].args).toMatchObject({ method: 'PUT', path: '/v1/strategy', body: { message: 'why', base_version: 4 } });
    expect(seen[2].args).toMatchObject({ method: 'GET', path: '/v1/audit?limit=50' });
    // The page never holds a token: nothing like one is sent.
    expect(JSON.stringify(seen)).not.toMatch(/authorization|token/i);
  });

  it('maps error answers and IPC failures to EngineError', async () => {
    mockIPC((_cmd, args) => {
      const path = (args as { path: string }).path;
      if (path === '/v1/strategy') return { status: 409, body: { error: { code: 'conflict', message: 'moved' } } };
      if (path === '/v1/models/activate') return { status: 403, body: { error: { code: 'forbidden', message: 'x' } } };
      throw 'connection refused';
    });
    const e = new TauriEngine();
    const conflict = await e.publish({ strategy: defaultStrategy(), message: 'm', base_version: 1 }).catch((x) => x);
    expect(conflict).toBeInstanceOf(EngineError);
    expect(conflict).toMatchObject({ status: 409, code: 'conflict', message: 'moved' });
    const forbidden = await e.activateModel('m').catch((x) => x);
    expect(forbidden.message).toMatch(/this token is read-only/);
    const down = await e.info().catch((x) => x);
    expect(down).toMatchObject({ status: 0, code: 'unreachable' });
    expect(down.message).toMatch(/connection refused/);
  });

  it('delivers channel messages in order, including connection events', async () => {
    let channel: { id: number } | null = null;
    mockIPC((cmd, args) => {
      if (cmd === 'stream_subscribe') channel = (args as { onEvent: { id: number } }).onEvent;
      return null;
    });
    const e = new TauriEngine();
    const got: StreamEvent[] = [];
    const stop = e.subscribe((m) => got.push(m));
    await Promise.resolve();
    expect(channel).not.toBeNull();
    send(channel!, 0, { event: 'connection', data: { state: 'connected', url: 'http://x' } });
    send(channel!, 2, { event: 'marker', data: { ts_ms: 1, kind: 'model', label: 'model v2', version: 2 } });
    send(channel!, 1, { event: 'stats', data: stats(1) });
    expect(got.map((m) => m.event)).toEqual(['connection', 'stats', 'marker']);
    stop();
    send(channel!, 3, { event: 'stats', data: stats(2) });
    expect(got).toHaveLength(3);
  });

  it('connects elsewhere, re-subscribes, and ignores the old channel', async () => {
    const channels: { id: number }[] = [];
    const connects: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'stream_subscribe') channels.push((args as { onEvent: { id: number } }).onEvent);
      if (cmd === 'connect') connects.push(args);
      if (cmd === 'connection_info') return { url: 'http://other:8080', mode: 'remote' };
      return null;
    });
    const e = new TauriEngine();
    const got: StreamEvent[] = [];
    e.subscribe((m) => got.push(m));
    const info = await e.connect('http://other:8080', '/tmp/tokens');
    expect(connects).toEqual([{ url: 'http://other:8080', tokenFile: '/tmp/tokens' }]);
    expect(info).toEqual({ url: 'http://other:8080', mode: 'remote' });
    expect(channels).toHaveLength(2);
    send(channels[0], 0, { event: 'stats', data: stats(1) });
    send(channels[1], 0, { event: 'stats', data: stats(2) });
    expect(got).toHaveLength(1);
    expect((got[0].data as { ts_ms: number }).ts_ms).toBe(stats(2).ts_ms);
  });

  it('offers the replay report as a Blob fetched through api_call', async () => {
    mockIPC((_cmd, args) => {
      expect(args).toMatchObject({ method: 'GET', path: '/v1/replay/3/report.html' });
      return { status: 200, body: '<html>report</html>' };
    });
    const link = await new TauriEngine().replayReport(3);
    expect(link.kind).toBe('blob');
    if (link.kind === 'blob') expect(await link.blob.text()).toBe('<html>report</html>');
  });
});
