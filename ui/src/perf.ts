// Tick timing of the Live page: each update's main-thread time (ms), the last 600 kept in
// `window.__attunePerf.ticks` where tests and operators can read them.

const KEEP = 600;

declare global {
  interface Window {
    __attunePerf?: { ticks: number[] };
  }
}

function ticks(): number[] {
  window.__attunePerf ??= { ticks: [] };
  return window.__attunePerf.ticks;
}

/** Records one tick's duration. */
export function recordTick(ms: number): void {
  const t = ticks();
  t.push(ms);
  if (t.length > KEEP) t.splice(0, t.length - KEEP);
}

/** The median of the recorded ticks (NaN when none). */
export function medianTick(): number {
  const t = [...ticks()].sort((a, b) => a - b);
  if (!t.length) return NaN;
  const m = t.length >> 1;
  return t.length % 2 ? t[m] : (t[m - 1] + t[m]) / 2;
}
