// StatsRing: the last N `stats` points as one Float64Array per figure, kept contiguous and in
// time order (a sliding window over twice the capacity), so a chart's data is a zero-copy
// `subarray` and a push is a handful of stores, never an allocation.

import { SOURCES, type LiveStats } from './engine/types';

/** The figures kept per point; `ts` is in seconds (uPlot's x unit). */
export const COLUMNS = [
  'ts',
  'rps',
  'eps',
  'http',
  'p50',
  'p95',
  'p99',
  'batch',
  'queue',
  'sessions',
  'reward',
  'reward_ps',
  'reward_per_rec',
  'ctr',
  'overloaded',
  'errors',
  'w_seq',
  'w_like',
  'w_purchase',
  'w_itemknn',
  'w_markov',
  'w_pop',
  'w_text',
  'strategy_version',
  'model_version',
] as const;
export type Column = (typeof COLUMNS)[number];
export type Point = Record<Column, number>;

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);

/** One stats message as a row of figures (missing figures are NaN). */
export function toPoint(s: LiveStats): Point {
  const rps = num(s.recommendations_per_s);
  const rewardPs = num(s.reward_per_s);
  const p: Point = {
    ts: num(s.ts_ms) / 1000,
    rps,
    eps: num(s.events_per_s),
    http: num(s.http_requests_per_s),
    p50: num(s.recommend_p50_ms),
    p95: num(s.recommend_p95_ms),
    p99: num(s.recommend_p99_ms),
    batch: num(s.batch_mean),
    queue: num(s.queue_depth),
    sessions: num(s.active_sessions),
    reward: num(s.reward),
    reward_ps: rewardPs,
    // 0 rather than NaN for a quiet second: charts treat NaN at an edge as their range.
    reward_per_rec: rps > 0 && Number.isFinite(rewardPs) ? rewardPs / rps : 0,
    ctr: num(s.ctr),
    overloaded: num(s.overloaded),
    errors: num(s.errors),
    w_seq: NaN,
    w_like: NaN,
    w_purchase: NaN,
    w_itemknn: NaN,
    w_markov: NaN,
    w_pop: NaN,
    w_text: NaN,
    strategy_version: num(s.strategy_version),
    model_version: s.model_version == null ? 0 : num(s.model_version),
  };
  for (const src of SOURCES) p[`w_${src}`] = num(s.weights?.[src]);
  return p;
}

export class StatsRing {
  readonly capacity: number;
  private readonly cols: Record<Column, Float64Array>;
  private start = 0;
  private end = 0;
  /** Bumped on every change, so readers can tell whether to redraw. */
  revision = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.cols = Object.fromEntries(COLUMNS.map((c) => [c, new Float64Array(capacity * 2)])) as Record<
      Column,
      Float64Array
    >;
  }

  get length(): number {
    return this.end - this.start;
  }

  /** Appends a point (dropping the oldest when full). Points older than the last are merged. */
  push(p: Point): void {
    if (this.length > 0 && !(p.ts > this.lastTs())) {
      if (p.ts === this.lastTs()) this.writeAt(this.end - 1, p);
      else this.merge([p]);
      this.revision++;
      return;
    }
    if (this.length === this.capacity) this.start++;
    if (this.end === this.capacity * 2) {
      for (const c of COLUMNS) this.cols[c].copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    this.writeAt(this.end, p);
    this.end++;
    this.revision++;
  }

  private writeAt(i: number, p: Point): void {
    for (const c of COLUMNS) this.cols[c][i] = p[c];
  }

  /** Merges points in time order (history filling a gap); the newest `capacity` stay. */
  merge(points: Point[]): void {
    const all = new Map<number, Point>();
    for (let i = 0; i < this.length; i++) all.set(this.cols.ts[this.start + i], this.at(i));
    for (const p of points) if (Number.isFinite(p.ts)) all.set(p.ts, p);
    const sorted = [...all.values()].sort((a, b) => a.ts - b.ts).slice(-this.capacity);
    this.start = 0;
    this.end = 0;
    for (const p of sorted) this.writeAt(this.end++, p);
    this.revision++;
  }

  /** Time-ordered view of one figure; valid until the next push. */
  view(c: Column): Float64Array {
    return this.cols[c].subarray(this.start, this.end);
  }

  /** The point at time-ordered index `i` (0 = oldest). */
  at(i: number): Point {
    const j = this.start + i;
    return Object.fromEntries(COLUMNS.map((c) => [c, this.cols[c][j]])) as Point;
  }

  lastTs(): number {
    return this.length ? this.cols.ts[this.end - 1] : -Infinity;
  }

  clear(): void {
    this.start = 0;
    this.end = 0;
    this.revision++;
  }

  /** A frozen copy of every figure (for a paused view). */
  snapshot(): Record<Column, Float64Array> {
    return Object.fromEntries(COLUMNS.map((c) => [c, this.view(c).slice()])) as Record<Column, Float64Array>;
  }
}
