// Number and time formatting for the whole console: one place decides how a rate, a latency,
// a share or a UTC time reads (`12,345 /s`, `1.23 ms`, `45.6 %`, `2026-12-06 20:47:03Z`).

const DASH = '–';

function ok(v: number | null | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A count with thousands separators: `12,345`. */
export function fmtInt(v: number | null | undefined): string {
  return ok(v) ? grouped.format(Math.round(v)) : DASH;
}

/** A plain number with about three significant digits: `0.123`, `1.23`, `12.3`, `1,234`. */
export function fmtNum(v: number | null | undefined, digits = 3): string {
  if (!ok(v)) return DASH;
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1000) return fmtInt(v);
  if (a < 1e-3) return v.toExponential(1);
  const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(a)));
  return trimZeros(v.toFixed(Math.min(decimals, 6)));
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** A rate per second: `12,345 /s` (large), `3.21 /s` (small). */
export function fmtRate(v: number | null | undefined): string {
  if (!ok(v)) return DASH;
  return `${Math.abs(v) >= 100 ? fmtInt(v) : fmtNum(v)} /s`;
}

/** A latency in milliseconds: `1.23 ms`, `0.045 ms`, `1,234 ms`. */
export function fmtMs(v: number | null | undefined): string {
  if (!ok(v)) return DASH;
  return `${Math.abs(v) >= 100 ? fmtInt(v) : v.toFixed(Math.abs(v) < 0.1 ? 3 : 2)} ms`;
}

/** A latency in microseconds, shown in the unit that reads best. */
export function fmtUs(v: number | null | undefined): string {
  if (!ok(v)) return DASH;
  return Math.abs(v) >= 1000 ? fmtMs(v / 1000) : `${fmtNum(v)} µs`;
}

/** A share (0..1) as a percentage: `45.6 %`. */
export function fmtPct(v: number | null | undefined, decimals = 1): string {
  return ok(v) ? `${(v * 100).toFixed(decimals)} %` : DASH;
}

/** Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`. */
export function fmtBytes(v: number | null | undefined): string {
  if (!ok(v)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let x = v;
  let u = 0;
  while (Math.abs(x) >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(x)} B` : `${fmtNum(x)} ${units[u]}`;
}

/** A duration in seconds: `45 s`, `9 min 58 s`, `3 h 02 min`, `2 d 4 h`. */
export function fmtDuration(seconds: number | null | undefined): string {
  if (!ok(seconds)) return DASH;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A UTC time: `2026-12-06 20:47:03Z`. */
export function fmtUtc(ms: number | null | undefined): string {
  if (!ok(ms)) return DASH;
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z`;
}

/** The time of day in UTC for chart axes: `20:47:03`, or `20:47` when `seconds` is false. */
export function fmtUtcClock(ms: number, seconds = true): string {
  const iso = new Date(ms).toISOString();
  return seconds ? iso.slice(11, 19) : iso.slice(11, 16);
}

/** A weight or score: signed, three decimals. */
export function fmtWeight(v: number | null | undefined): string {
  return ok(v) ? v.toFixed(3) : DASH;
}

/** Value for a `datetime-local` input from a UTC time, and back. */
export function toUtcInput(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16);
}
export function fromUtcInput(v: string): number | null {
  if (!v) return null;
  const ms = Date.parse(v.length === 16 ? `${v}:00Z` : `${v}Z`);
  return Number.isFinite(ms) ? ms : null;
}
