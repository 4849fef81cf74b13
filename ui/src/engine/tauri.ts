// TauriEngine: the desktop app's engine. Every REST route goes through the `api_call`
// command (the Rust side adds the token, which never reaches this page), the live stream
// through `stream_subscribe` and a Channel, and `connect` switches the engine.

import { Channel, invoke } from '@tauri-apps/api/core';
import { EngineError } from './errors';
import { RestEngine, type Answer, type Auth, type Method, type Transport } from './rest';
import type { ConnectionInfo, ReportLink, StreamEvent, StreamHandler } from './types';

function ipcError(e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  const msg = typeof e === 'string' ? e : e instanceof Error ? e.message : JSON.stringify(e);
  return new EngineError(0, 'unreachable', `The engine is unreachable (${msg}).`);
}

class IpcTransport implements Transport {
  async call(method: Method, path: string, body: unknown, _auth: Auth): Promise<Answer> {
    try {
      const a = await invoke<Answer>('api_call', { method, path, body: body ?? null });
      return { status: Number(a?.status ?? 0), body: a?.body ?? null };
    } catch (e) {
      throw ipcError(e);
    }
  }
}

export class TauriEngine extends RestEngine {
  readonly kind = 'tauri' as const;
  protected readonly transport: Transport = new IpcTransport();
  /** Bumped on each subscribe/connect so an old channel's late messages are dropped. */
  private generation = 0;
  private handler: StreamHandler | null = null;

  /** The app holds the token; the page never needs one. */
  hasToken(): boolean {
    return true;
  }

  async connectionInfo(): Promise<ConnectionInfo> {
    try {
      return await invoke<ConnectionInfo>('connection_info');
    } catch (e) {
      throw ipcError(e);
    }
  }

  subscribe(handler: StreamHandler): () => void {
    this.handler = handler;
    this.openChannel();
    return () => {
      this.handler = null;
      this.generation++;
    };
  }

  private openChannel(): void {
    const gen = ++this.generation;
    const channel = new Channel<StreamEvent>();
    channel.onmessage = (m) => {
      if (gen !== this.generation || !this.handler) return;
      try {
        this.handler(m);
      } catch (err) {
        console.error('stream handler failed', err);
      }
    };
    invoke('stream_subscribe', { onEvent: channel }).catch((e) => {
      if (gen !== this.generation || !this.handler) return;
      this.handler({
        event: 'connection',
        data: { state: 'disconnected', url: ipcError(e).message },
      });
    });
  }

  /** Switches the app to another engine and re-subscribes the live stream there. */
  async connect(url: string, tokenFile: string | null): Promise<ConnectionInfo> {
    try {
      await invoke('connect', { url, tokenFile });
    } catch (e) {
      throw ipcError(e);
    }
    if (this.handler) this.openChannel();
    return this.connectionInfo();
  }

  /** The page cannot open the engine's URL itself: fetch the HTML and hand over a Blob. */
  async replayReport(id: number): Promise<ReportLink> {
    const html = await this.req<unknown>('GET', `/v1/replay/${id}/report.html`, 'none', undefined, 'text');
    const text = typeof html === 'string' ? html : JSON.stringify(html);
    return { kind: 'blob', blob: new Blob([text], { type: 'text/html' }) };
  }
}

/** Whether this page runs inside the desktop app. */
export function inTauri(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}
