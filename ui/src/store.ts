// The live store: the last 30 minutes of `stats` (1,800 points) kept client-side, the change
// markers, the connection state (with a stall watchdog), and the pause / scrub view of the
// Live page. Pages read it and subscribe to its topics; only the app shell feeds it.

import type { ConnectionState, LiveStats, Marker, StreamEvent } from './engine/types';
import { COLUMNS, StatsRing, toPoint, type Column, type Point } from './ring';

/** 30 minutes of one point a second. */
export const LIVE_CAPACITY = 1800;
/** No stats for this long while connected counts as a dead stream. */
export const STALE_MS = 5000;
const MAX_MARKERS = 500;

/** `reconnecting`: the stream died and is being retried (the banner shows). */
export type LinkState = ConnectionState | 'reconnecting';

export interface Connection {
  state: LinkState;
  /** When this state began (ms). */
  since: number;
  /** The next retry's delay, when known. */
  retryMs: number | null;
  url: string | null;
  /** Why the link is down, for the banner. */
  reason: string | null;
}

type Topic = 'stats' | 'markers' | 'connection' | 'view' | 'event';
type Listener = (e?: StreamEvent) => void;

export class LiveStore {
  readonly ring = new StatsRing(LIVE_CAPACITY);
  markers: Marker[] = [];
  latest: LiveStats | null = null;
  lastStatsAt = 0;
  connection: Connection = { state: 'connecting', since: Date.now(), retryMs: null, url: null, reason: null };
  shuttingDown = false;

  private paused = false;
  private frozen: Record<Column, Float64Array> | null = null;
  private scrubIndex: number | null = null;
  private readonly listeners = new Map<Topic, Set<Listener>>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
    this.connection.since = now();
  }

  on(topic: Topic, fn: Listener): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  private emit(topic: Topic, e?: StreamEvent): void {
    for (const fn of this.listeners.get(topic) ?? []) {
      try {
        fn(e);
      } catch (err) {
        console.error(`store listener (${topic}) failed`, err);
      }
    }
  }

  /** Feeds one stream message in. */
  ingest(e: StreamEvent): void {
    switch (e.event) {
      case 'stats':
        this.addStats(e.data);
        break;
      case 'marker':
        this.addMarkers([e.data]);
        break;
      case 'connection':
        this.setConnection(e.data.state, e.data.url ?? null, e.data.retry_ms ?? null);
        break;
      case 'shutdown':
        this.shuttingDown = true;
        this.emit('connection');
        break;
      default:
        break;
    }
    this.emit('event', e);
  }

  addStats(s: LiveStats): void {
    this.latest = s;
    this.lastStatsAt = this.now();
    this.shuttingDown = false;
    if (this.connection.state !== 'connected') this.setConnection('connected', this.connection.url, null);
    this.ring.push(toPoint(s));
    this.emit('stats');
  }

  /** Server history (e.g. to fill the start of the buffer, or a gap after a reconnect). */
  addHistory(points: LiveStats[], markers: Marker[] = []): void {
    if (points.length) {
      this.ring.merge(points.map(toPoint));
      if (!this.latest) this.latest = points[points.length - 1];
    }
    this.addMarkers(markers);
    this.emit('stats');
  }

  addMarkers(ms: Marker[]): void {
    if (!ms.length) return;
    const key = (m: Marker) => `${m.ts_ms}|${m.kind}|${m.version}`;
    const seen = new Set(this.markers.map(key));
    let added = false;
    for (const m of ms) {
      if (m && Number.isFinite(m.ts_ms) && !seen.has(key(m))) {
        this.markers.push(m);
        seen.add(key(m));
        added = true;
      }
    }
    if (!added) return;
    this.markers.sort((a, b) => a.ts_ms - b.ts_ms);
    if (this.markers.length > MAX_MARKERS) this.markers.splice(0, this.markers.length - MAX_MARKERS);
    this.emit('markers');
  }

  setConnection(state: ConnectionState, url: string | null, retryMs: number | null, reason: string | null = null): void {
    const prev = this.connection.state;
    let next: LinkState = state;
    // Once down, the link reads "reconnecting" until it is connected again.
    if (state === 'disconnected' || (state === 'connecting' && (prev === 'reconnecting' || prev === 'disconnected'))) {
      next = 'reconnecting';
    }
    const changed = next !== prev;
    this.connection = {
      state: next,
      since: changed ? this.now() : this.connection.since,
      retryMs: retryMs ?? (next === 'reconnecting' ? this.connection.retryMs : null),
      url: url ?? this.connection.url,
      reason: next === 'connected' ? null : (reason ?? this.connection.reason ?? 'the live stream closed'),
    };
    if (next === 'connected') this.lastStatsAt = Math.max(this.lastStatsAt, this.now());
    this.emit('connection');
  }

  /** Called once a second: a connected stream silent for 5 s is marked down. */
  checkStale(): void {
    const c = this.connection;
    const quietSince = Math.max(this.lastStatsAt, c.since);
    if (c.state === 'connected' && this.now() - quietSince > STALE_MS) {
      this.setConnection('disconnected', null, null, 'no live figures for 5 s');
    } else if (c.state === 'connecting' && this.now() - c.since > STALE_MS) {
      this.setConnection('disconnected', null, null, 'no answer from the engine');
    }
  }

  /** Whether the link is down (the banner shows). */
  get down(): boolean {
    return this.connection.state === 'reconnecting';
  }

  // --- the Live page's view: pause and scrub ------------------------------------------

  get isPaused(): boolean {
    return this.paused;
  }

  /** Freezes the view; the buffer keeps filling underneath. */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.frozen = this.ring.snapshot();
    this.emit('view');
  }

  /** Back to live: the view follows the buffer again, the scrub is cleared. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.frozen = null;
    this.scrubIndex = null;
    this.emit('view');
  }

  /** Points in the view (frozen while paused). */
  get viewLength(): number {
    return this.frozen ? this.frozen.ts.length : this.ring.length;
  }

  /** One figure of the view, time-ordered. */
  view(c: Column): Float64Array {
    return this.frozen ? this.frozen[c] : this.ring.view(c);
  }

  /** Selects a point of the view (pausing it); null goes back to the newest point. */
  scrub(index: number | null): void {
    if (index === null) {
      this.scrubIndex = null;
    } else {
      this.pause();
      const n = this.viewLength;
      this.scrubIndex = n ? Math.max(0, Math.min(n - 1, Math.round(index))) : null;
    }
    this.emit('view');
  }

  get scrubbed(): number | null {
    return this.scrubIndex;
  }

  /** The point the KPI tiles show: the scrubbed one, or the newest of the view. */
  selectedPoint(): Point | null {
    const n = this.viewLength;
    if (!n) return null;
    const i = this.scrubIndex ?? n - 1;
    return Object.fromEntries(COLUMNS.map((c) => [c, this.view(c)[i]])) as Point;
  }
}
