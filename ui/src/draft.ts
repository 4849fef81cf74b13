// Strategy drafts as pure functions: a draft is a deep copy of a live version; the diff lists
// changed field paths (`weights.pop: 0.2 → 0.5`); validation mirrors the engine's
// `Strategy::validate` ranges and names the field; rebase replays a draft's edits on a newer
// live version; import reads a strategy file.

import { SOURCES, type Strategy, type Weights } from './engine/types';

export interface FieldError {
  path: string;
  message: string;
}

export interface Change {
  path: string;
  old: unknown;
  new: unknown;
}

/** A draft of a live version: what it started from and the edited copy. */
export interface Draft {
  baseVersion: number;
  base: Strategy;
  strategy: Strategy;
}

const splat = (v: number): Weights =>
  Object.fromEntries(SOURCES.map((s) => [s, v])) as Weights;

/** The engine's `Strategy::default()`, used to fill fields an imported file leaves out. */
export function defaultStrategy(): Strategy {
  return {
    name: 'default',
    weights: { seq: 1, like: 0.2, purchase: 0.2, itemknn: 0.5, markov: 0.5, pop: 0.2, text: 0.5 },
    min_weights: splat(0),
    max_weights: splat(5),
    pinned: [],
    learning: { adaptive: true, learning_rate: 1, update_every: 32 },
    exploration: { mode: 'none' },
    filters: { exclude_seen: true, include_tags: [], exclude_tags: [] },
    reward: { click: 1, cart: 2, purchase: 5, like: 1, skip: 0 },
    candidates: 50,
    batching: { max_batch: 16, max_queue_delay_us: 100 },
  };
}

export function cloneStrategy(s: Strategy): Strategy {
  return structuredClone(s);
}

export function createDraft(baseVersion: number, live: Strategy): Draft {
  return { baseVersion, base: cloneStrategy(live), strategy: cloneStrategy(live) };
}

/** Field paths to leaf values; arrays are leaves (tag lists, pinned sources). */
export function flatten(v: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      flatten(x, prefix ? `${prefix}.${k}` : k, out);
    }
  } else if (prefix) {
    out.set(prefix, v);
  }
  return out;
}

function same(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => same(x, b[i]));
  }
  if (typeof a === 'number' && typeof b === 'number') return a === b || (Number.isNaN(a) && Number.isNaN(b));
  return a === b;
}

/** Every field that differs between `from` and `to`, in field order. */
export function diffStrategies(from: Strategy, to: Strategy): Change[] {
  const a = flatten(from);
  const b = flatten(to);
  const paths = [...a.keys(), ...[...b.keys()].filter((k) => !a.has(k))];
  const out: Change[] = [];
  for (const path of paths) {
    const o = a.get(path);
    const n = b.get(path);
    if (!same(o, n)) out.push({ path, old: o, new: n });
  }
  return out;
}

export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

/** Sets (or, with `undefined`, removes) a field by path, creating objects on the way. */
export function setPath(obj: object, path: string, value: unknown): void {
  const keys = path.split('.');
  let cur = obj as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) {
    if (cur[k] === null || typeof cur[k] !== 'object') cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  const last = keys[keys.length - 1];
  if (value === undefined) delete cur[last];
  else cur[last] = Array.isArray(value) ? [...value] : value;
}

/**
 * The draft's edits (base → draft) replayed on `live`. `conflicts` are the fields that live
 * also changed since the base, to a value other than the draft's: the draft's value wins.
 */
export function rebase(base: Strategy, draft: Strategy, live: Strategy): { strategy: Strategy; conflicts: string[] } {
  const edits = diffStrategies(base, draft);
  const liveMoves = new Map(diffStrategies(base, live).map((c) => [c.path, c]));
  const out = cloneStrategy(live);
  const conflicts: string[] = [];
  for (const e of edits) {
    const moved = liveMoves.get(e.path);
    if (moved && !same(moved.new, e.new)) conflicts.push(e.path);
    setPath(out, e.path, e.new);
  }
  return { strategy: out, conflicts };
}

/** Client-side ranges of the engine's `Strategy::validate`. */
export const RANGES = {
  weight: [-1000, 1000],
  learning_rate: [1e-4, 10],
  update_every: [1, 100000],
  epsilon: [0, 1],
  scale: [0, 10],
  reward: [-1000, 1000],
  candidates: [1, 10000],
  max_batch: [1, 4096],
  max_queue_delay_us: [0, 1000000],
  name_bytes: 200,
} as const;

const REWARD_KEYS = ['click', 'cart', 'purchase', 'like', 'skip'] as const;

/** Every problem of a strategy, each naming its field (empty: valid). */
export function validateStrategy(s: Strategy): FieldError[] {
  const errs: FieldError[] = [];
  const err = (path: string, message: string) => errs.push({ path, message: `${path}: ${message}` });
  const finite = (path: string, v: unknown): v is number => {
    if (typeof v === 'number' && Number.isFinite(v)) return true;
    err(path, 'must be a finite number');
    return false;
  };
  const inRange = (path: string, v: unknown, [lo, hi]: readonly [number, number], whole = false) => {
    if (!finite(path, v)) return;
    if (whole && !Number.isInteger(v)) err(path, `must be a whole number, got ${v}`);
    else if (v < lo || v > hi) err(path, `must be in [${lo}, ${hi}], got ${v}`);
  };

  for (const src of SOURCES) {
    const w = s.weights?.[src];
    const lo = s.min_weights?.[src];
    const hi = s.max_weights?.[src];
    const okW = finite(`weights.${src}`, w);
    const okLo = finite(`min_weights.${src}`, lo);
    const okHi = finite(`max_weights.${src}`, hi);
    if (okLo && okHi && lo > hi) {
      err(`min_weights.${src}`, `${lo} is above max_weights.${src} = ${hi}`);
    } else if (okW && okLo && okHi && (w < lo || w > hi)) {
      err(`weights.${src}`, `${w} is outside its bounds [${lo}, ${hi}]`);
    }
    if (okW && Math.abs(w) > RANGES.weight[1]) err(`weights.${src}`, 'must be within [-1000, 1000]');
  }
  for (const p of s.pinned ?? []) {
    if (!(SOURCES as readonly string[]).includes(p)) {
      err('pinned', `unknown source \`${p}\`; sources are ${SOURCES.join(', ')}`);
    }
  }
  inRange('learning.learning_rate', s.learning?.learning_rate, RANGES.learning_rate);
  inRange('learning.update_every', s.learning?.update_every, RANGES.update_every, true);
  const x = s.exploration;
  if (x?.mode === 'epsilon') inRange('exploration.epsilon', x.epsilon, RANGES.epsilon);
  else if (x?.mode === 'thompson') inRange('exploration.scale', x.scale, RANGES.scale);
  else if (x?.mode !== 'none') err('exploration.mode', 'must be none, epsilon or thompson');
  for (const k of REWARD_KEYS) inRange(`reward.${k}`, s.reward?.[k], RANGES.reward);
  inRange('candidates', s.candidates, RANGES.candidates, true);
  inRange('batching.max_batch', s.batching?.max_batch, RANGES.max_batch, true);
  inRange('batching.max_queue_delay_us', s.batching?.max_queue_delay_us, RANGES.max_queue_delay_us, true);
  if (new TextEncoder().encode(s.name ?? '').length > RANGES.name_bytes) {
    err('name', 'must be at most 200 bytes');
  }
  return errs;
}

/** Errors keyed by field path (the first of each field). */
export function errorsByField(errs: FieldError[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of errs) if (!m.has(e.path)) m.set(e.path, e.message);
  return m;
}

const TOP_KEYS = Object.keys(defaultStrategy());

/**
 * A strategy from an imported file: a bare Strategy, or a wrapper holding one under
 * `strategy` (an exported StrategyVersion or StrategyView). Missing fields take the engine's
 * defaults, as the engine does; unknown top-level fields are refused, as the engine does.
 */
export function parseStrategyFile(text: string): Strategy {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (v && typeof v === 'object' && 'strategy' in v && typeof (v as { strategy: unknown }).strategy === 'object') {
    v = (v as { strategy: unknown }).strategy;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a strategy object');
  const unknown = Object.keys(v).filter((k) => !TOP_KEYS.includes(k));
  if (unknown.length) throw new Error(`unknown field ${unknown.map((k) => `\`${k}\``).join(', ')}`);
  const d = defaultStrategy() as unknown as Record<string, unknown>;
  const src = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of TOP_KEYS) {
    const dv = d[k];
    const sv = src[k];
    if (sv === undefined) out[k] = dv;
    else if (dv && typeof dv === 'object' && !Array.isArray(dv) && sv && typeof sv === 'object' && k !== 'exploration') {
      out[k] = { ...(dv as object), ...(sv as object) };
    } else out[k] = sv;
  }
  return out as unknown as Strategy;
}

/** A field's value as text for the diff view. */
export function showValue(v: unknown): string {
  if (v === undefined) return '—';
  if (Array.isArray(v)) return v.length ? v.join(', ') : '(none)';
  if (typeof v === 'string') return v === '' ? '""' : v;
  return String(v);
}
