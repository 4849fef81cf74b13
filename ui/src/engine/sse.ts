// The web console's live stream: an EventSource on /v1/stream that reconnects with backoff
// (0.5 s, 1 s, then every 2 s), notices a stalled stream (no message for 5 s), and reports
// its state as `connection` events like the desktop app's channel does.

import type { StreamEvent, StreamHandler } from './types';

/** The stream's named events (docs/console-api.md). */
export const EVENT_NAMES = ['stats', 'strategy', 'model', 'marker', 'guard', 'audit', 'replay', 'shutdown'];

/** Reconnect delays; the last one repeats. */
export const BACKOFF_MS = [500, 1000, 2000];
/** A stream quiet this long is taken as dead (stats come once a second). */
export const STALL_MS = 5000;

export type EventSourceFactory = (url: string) => EventSource;

export function openStream(
  url: string,
  handler: StreamHandler,
  make: EventSourceFactory = (u) => new EventSource(u),
): () => void {
  let es: EventSource | null = null;
  let attempt = 0;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let lastMessage = Date.now();
  let stopped = false;

  const emit = (e: StreamEvent) => {
    try {
      handler(e);
    } catch (err) {
      // A page's bug must not kill the stream.
      console.error('stream handler failed', err);
    }
  };

  const down = () => {
    if (stopped) return;
    es?.close();
    es = null;
    const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt++;
    emit({ event: 'connection', data: { state: 'disconnected', url, retry_ms: delay } });
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = setTimeout(open, delay);
  };

  const onMessage = (name: string) => (m: MessageEvent) => {
    lastMessage = Date.now();
    let data: unknown = null;
    try {
      data = m.data ? JSON.parse(m.data as string) : null;
    } catch {
      data = m.data;
    }
    emit({ event: name, data } as StreamEvent);
  };

  function open() {
    retryTimer = null;
    if (stopped) return;
    emit({ event: 'connection', data: { state: 'connecting', url } });
    const s = make(url);
    es = s;
    lastMessage = Date.now();
    s.onopen = () => {
      if (es !== s) return;
      attempt = 0;
      lastMessage = Date.now();
      emit({ event: 'connection', data: { state: 'connected', url } });
    };
    s.onerror = () => {
      if (es === s) down();
    };
    for (const name of EVENT_NAMES) s.addEventListener(name, onMessage(name) as EventListener);
  }

  const watchdog = setInterval(() => {
    if (es && Date.now() - lastMessage > STALL_MS) down();
  }, 1000);

  open();

  return () => {
    stopped = true;
    clearInterval(watchdog);
    if (retryTimer) clearTimeout(retryTimer);
    es?.close();
    es = null;
  };
}
