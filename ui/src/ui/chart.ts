// uPlot time-series charts: UTC time axis, cursor synced across a group, optional band
// (p95–p99), step lines, change markers drawn as labelled vertical lines (a draw hook), and
// sizing to the container through one shared ResizeObserver.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { Decimator } from '../decimate';
import type { Marker } from '../engine/types';
import { fmtInt, fmtUtc, fmtUtcClock } from '../format';
import { h } from './dom';
import { CHART, MARKER_COLORS } from './theme';

export interface SeriesSpec {
  label: string;
  color: string;
  width?: number;
  step?: boolean;
  dash?: number[];
  /** Drawn only as the edge of a band (no legend value emphasis). */
  faint?: boolean;
}

export interface ChartSpec {
  title: string;
  /** Shown after the title: `ms`, `/s`, `%`. */
  unit: string;
  series: SeriesSpec[];
  /** Indices (1-based, uPlot's) of [upper, lower] series to fill between. */
  band?: [number, number];
  /** Value formatter for the legend and axis. */
  fmt: (v: number) => string;
  /** Keep 0 in the y range (counts, rates). */
  zero?: boolean;
  height?: number;
  /** x is time in seconds (default) or a plain number (events). */
  xTime?: boolean;
  xLabel?: string;
}

/** A time-axis label: seconds for fine steps, the date for steps of a day or more. */
export function fmtTimeTick(ts: number, incr: number): string {
  if (incr >= 86400) return new Date(ts * 1000).toISOString().slice(5, 10);
  return fmtUtcClock(ts * 1000, incr < 60);
}

/** `fmt` with its last few dozen answers kept (cleared by `.clear()` or when full). */
export function memoLabels(fmt: (v: number) => string): ((v: number) => string) & { clear(): void } {
  const seen = new Map<number, string>();
  const f = (v: number) => {
    let s = seen.get(v);
    if (s === undefined) {
      if (seen.size >= 64) seen.clear();
      seen.set(v, (s = fmt(v)));
    }
    return s;
  };
  return Object.assign(f, { clear: () => seen.clear() });
}

/** Round UTC steps for the time axis (seconds). */
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/**
 * Time-axis ticks at round UTC steps, about one per 110 px. Computed here rather than by
 * uPlot's time scale, which formats through Intl time zones on every redraw.
 */
export function timeSplits(min: number, max: number, widthPx: number): { splits: number[]; incr: number } {
  const target = Math.max(2, Math.floor(widthPx / 110));
  const span = Math.max(1e-9, max - min);
  const incr = TIME_INCRS.find((i) => span / i <= target) ?? 86400 * Math.ceil(span / 86400 / target);
  const splits: number[] = [];
  for (let t = Math.ceil(min / incr) * incr; t <= max; t += incr) splits.push(t);
  return { splits, incr };
}

/**
 * A path builder for data already folded to about one point per pixel column
 * (src/decimate.ts): one moveTo/lineTo per point, a gap (NaN) breaks the line, `step` holds
 * each value until the next point. uPlot's own builders fold to pixels again and build gap
 * and band clips on every draw, most of a tick's cost; series that edge a band keep them.
 */
export function foldedPaths(step: boolean): uPlot.Series.PathBuilder {
  return (u, sidx, idx0, idx1) => {
    const xs = u.data[0];
    const ys = u.data[sidx];
    // Both scales are linear: a value's canvas pixel is an offset plus a factor times it.
    const sx = u.scales.x;
    const sy = u.scales[u.series[sidx].scale ?? 'y'];
    const { left, top, width, height } = u.bbox;
    if (sx.min == null || sx.max == null || sy.min == null || sy.max == null) return null;
    const kx = width / (sx.max - sx.min || 1);
    const ky = height / (sy.max - sy.min || 1);
    const x0 = left - sx.min * kx;
    const y0 = top + height + sy.min * ky;
    const path = new Path2D();
    let pen = false;
    let lastY = 0;
    for (let i = idx0; i <= idx1; i++) {
      const v = ys[i];
      if (v == null || Number.isNaN(v)) {
        pen = false;
        continue;
      }
      const x = x0 + (xs[i] as number) * kx;
      const y = y0 - v * ky;
      if (!pen) path.moveTo(x, y);
      else if (step) {
        path.lineTo(x, lastY);
        path.lineTo(x, y);
      } else path.lineTo(x, y);
      pen = true;
      lastY = y;
    }
    return { stroke: path, fill: null, clip: null, band: null, flags: 0 };
  };
}

/**
 * Marker labels drawn once into small canvases and stamped with drawImage after: text on a
 * canvas is shaped and rasterised on every fillText, and the same few labels are drawn on
 * every chart every second. Shared by all charts; keyed by text, colour and pixel ratio.
 */
const labelImages = new Map<string, HTMLCanvasElement | null>();

function labelImage(label: string, color: string, pr: number): HTMLCanvasElement | null {
  const key = `${pr}|${color}|${label}`;
  let img = labelImages.get(key);
  if (img !== undefined) return img;
  if (labelImages.size >= 256) labelImages.clear();
  img = document.createElement('canvas');
  const c = img.getContext('2d');
  if (!c) {
    labelImages.set(key, null);
    return null;
  }
  const font = CHART.font.replace(/^(\d+)px/, (_, n) => `${Number(n) * pr}px`);
  c.font = font;
  img.width = Math.ceil(c.measureText(label).width + 6 * pr);
  img.height = Math.ceil(14 * pr);
  c.font = font; // resizing a canvas resets its state
  c.textBaseline = 'top';
  c.fillStyle = CHART.labelBg;
  c.fillRect(0, 0, img.width, img.height);
  c.fillStyle = color;
  c.fillText(label, 3 * pr, pr);
  labelImages.set(key, img);
  return img;
}

/** Draws markers as vertical lines with a short label at the top. */
function markerPlugin(markers: () => readonly Marker[]): uPlot.Plugin {
  return {
    hooks: {
      draw: (u) => {
        const list = markers();
        if (!list.length) return;
        const { min, max } = u.scales.x;
        if (min == null || max == null) return;
        const ctx = u.ctx;
        const { top, height } = u.bbox;
        const pr = uPlot.pxRatio;
        ctx.save();
        // Lines for every marker in range; labels newest first, each where it does not
        // cover one already drawn (the newest change is the one to read).
        const labels: { x: number; label: string; color: string }[] = [];
        ctx.lineWidth = pr;
        ctx.setLineDash([4 * pr, 3 * pr]);
        for (const m of list) {
          const t = m.ts_ms / 1000;
          if (t < min || t > max) continue;
          const x = Math.round(u.valToPos(t, 'x', true));
          const color = MARKER_COLORS[m.kind] ?? '#ccc';
          ctx.strokeStyle = color;
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
          labels.push({ x, label: m.label.length > 28 ? `${m.label.slice(0, 27)}…` : m.label, color });
        }
        ctx.setLineDash([]);
        const taken: [number, number][] = [];
        for (let i = labels.length - 1; i >= 0; i--) {
          const { x, label, color } = labels[i];
          const img = labelImage(label, color, pr);
          if (!img) continue;
          const w = img.width;
          const lx = Math.round(Math.max(u.bbox.left, Math.min(x + 3 * pr, u.bbox.left + u.bbox.width - w)));
          if (taken.some(([a, b]) => lx < b && lx + w > a)) continue;
          taken.push([lx, lx + w]);
          ctx.drawImage(img, lx, Math.round(top + 2 * pr));
        }
        ctx.restore();
      },
    },
  };
}

let observer: ResizeObserver | null = null;
const resizers = new WeakMap<Element, (w: number) => void>();

function observe(el: Element, fn: (w: number) => void): void {
  if (typeof ResizeObserver === 'undefined') return;
  observer ??= new ResizeObserver((entries) => {
    for (const e of entries) resizers.get(e.target)?.(e.contentRect.width);
  });
  resizers.set(el, fn);
  observer.observe(el);
}

export class TimeChart {
  readonly el: HTMLElement;
  readonly plot: uPlot;
  private readonly holder: HTMLElement;
  private xMin: number | null = null;
  private xMax: number | null = null;
  private width = 0;
  private readonly decimator: Decimator;

  constructor(spec: ChartSpec, opts: { sync?: string; markers?: () => readonly Marker[] } = {}) {
    this.holder = h('div', { class: 'chart-plot' });
    // Our own legend, written only when the cursor moves: uPlot's live legend rewrites
    // every value on every setData, the largest fixed cost of a tick.
    const cursorTime = h('span', { class: 'legend-x' });
    const values = spec.series.map(() => h('b', { class: 'legend-v' }));
    const legend = h(
      'div',
      { class: 'chart-legend' },
      spec.series.map((s, i) =>
        h('span', { class: 'legend-item' }, h('i', { class: 'legend-swatch', style: { background: s.color } }), s.label, values[i]),
      ),
      cursorTime,
    );
    this.el = h(
      'figure',
      { class: 'chart' },
      h('figcaption', null, spec.title, spec.unit ? h('span', { class: 'unit' }, ` (${spec.unit})`) : null),
      this.holder,
      legend,
    );
    const setText = (el: HTMLElement, text: string) => {
      if (el.textContent !== text) el.textContent = text;
    };
    const showCursor = (u: uPlot) => {
      const i = u.cursor.idx;
      const x = i == null ? null : u.data[0][i];
      setText(cursorTime, x == null ? '' : xTime ? fmtUtc(x * 1000) : `${spec.xLabel ?? 'x'} ${x}`);
      values.forEach((v, s) => {
        const y = i == null ? null : u.data[s + 1][i];
        setText(v, y == null ? '' : ` ${spec.fmt(y)}`);
      });
    };
    const xTime = spec.xTime ?? true;
    const height = spec.height ?? 170;
    this.decimator = new Decimator(spec.series.map((s) => (s.step ? 'firstlast' : 'minmax')));
    let timeIncr = 60;
    // Axis labels are formatted on every draw, and mostly the same ones as a second ago.
    const yLabel = memoLabels(spec.fmt);
    const xLabel = memoLabels((v) => fmtTimeTick(v, timeIncr));
    let xLabelIncr = timeIncr;
    const axisFmt = (_u: uPlot, splits: number[]) => splits.map((v) => (v == null ? '' : yLabel(v)));
    const series: uPlot.Series[] = [
      xTime ? { label: 'Time (UTC)', value: (_u, v) => (v == null ? '–' : fmtUtc(v * 1000)) } : { label: spec.xLabel ?? 'x' },
      ...spec.series.map<uPlot.Series>((s, i) => ({
        label: s.label,
        stroke: s.color,
        width: s.width ?? 1.5,
        dash: s.dash,
        paths: spec.band?.includes(i + 1) ? (s.step ? uPlot.paths.stepped!({ align: 1 }) : undefined) : foldedPaths(!!s.step),
        points: { show: false },
        value: (_u, v) => (v == null ? '–' : spec.fmt(v)),
        alpha: s.faint ? 0.6 : 1,
      })),
    ];
    const options: uPlot.Options = {
      width: 400,
      height,
      series,
      cursor: {
        sync: opts.sync ? { key: opts.sync, setSeries: false } : undefined,
        points: { size: 5 },
        drag: { x: false, y: false },
      },
      legend: { show: false },
      bands: spec.band ? [{ series: spec.band, fill: 'rgba(110, 168, 254, 0.16)' }] : undefined,
      scales: {
        x: {
          time: false,
          range: (_u, dmin, dmax) => [this.xMin ?? dmin, this.xMax ?? dmax],
        },
        y: {
          range: (_u, dmin, dmax) => {
            let lo = Number.isFinite(dmin) ? dmin : 0;
            let hi = Number.isFinite(dmax) ? dmax : 1;
            if (spec.zero) lo = Math.min(0, lo);
            if (hi - lo < 1e-9) hi = lo + (Math.abs(lo) || 1);
            const pad = (hi - lo) * 0.08;
            return [spec.zero && lo >= 0 ? lo : lo - pad, hi + pad];
          },
        },
      },
      axes: [
        {
          stroke: CHART.axis,
          grid: { stroke: CHART.grid, width: 1 },
          ticks: { stroke: CHART.grid, width: 1 },
          font: CHART.font,
          splits: xTime
            ? (u, _i, min, max) => {
                const t = timeSplits(min, max, u.bbox.width / uPlot.pxRatio);
                timeIncr = t.incr;
                return t.splits;
              }
            : undefined,
          // A plain x (events replayed) is a count, not the y figure's unit.
          values: xTime
            ? (_u, splits) => {
                if (xLabelIncr !== timeIncr) xLabel.clear();
                xLabelIncr = timeIncr;
                return splits.map((v) => xLabel(v));
              }
            : (_u, splits) => splits.map((v) => (v == null ? '' : fmtInt(v))),
        },
        {
          stroke: CHART.axis,
          grid: { stroke: CHART.grid, width: 1 },
          ticks: { stroke: CHART.grid, width: 1 },
          font: CHART.font,
          size: 56,
          space: 36,
          values: axisFmt,
        },
      ],
      hooks: { setCursor: [showCursor] },
      plugins: opts.markers ? [markerPlugin(opts.markers)] : [],
    };
    const empty: uPlot.AlignedData = [new Float64Array(0), ...spec.series.map(() => new Float64Array(0))];
    this.plot = new uPlot(options, empty, this.holder);
    observe(this.holder, (w) => this.resize(w));
  }

  /** The x range shown (null: the data's). */
  setWindow(min: number | null, max: number | null): void {
    this.xMin = min;
    this.xMax = max;
  }

  /** New data, drawn synchronously (so a tick's timing includes the drawing). */
  setData(data: uPlot.AlignedData): void {
    this.plot.batch(() => this.plot.setData(data));
  }

  /**
   * New data for the window [xMin, xMax], folded to about one point per pixel column
   * (src/decimate.ts) and drawn synchronously.
   */
  setSeries(x: Float64Array, ys: Float64Array[], xMin: number, xMax: number): void {
    // Two points per 4-pixel bucket: one point per 2 px of plot width.
    const buckets = Math.max(16, this.plot.bbox.width / uPlot.pxRatio / 4);
    this.xMin = xMin;
    this.xMax = xMax;
    this.setData(this.decimator.run(x, ys, xMin, xMax, buckets));
  }

  /** Redraws (e.g. new markers) without new data. */
  redraw(): void {
    this.plot.redraw(false, false);
  }

  resize(width: number): void {
    if (width < 10) return; // hidden (page not shown): keep the last size
    const w = Math.max(160, Math.floor(width));
    if (w === this.width) return;
    this.width = w;
    this.plot.setSize({ width: w, height: this.plot.height });
  }

  destroy(): void {
    observer?.unobserve(this.holder);
    this.plot.destroy();
  }
}
