// A KPI tile's sparkline: the last N values as one canvas stroke (a clear and a path per
// tick; no DOM nodes or attributes rewritten), sized to its box on resize.

import { h } from './dom';

const HEIGHT = 28;

let observer: ResizeObserver | null = null;
const onResize = new WeakMap<Element, () => void>();

export class Sparkline {
  readonly el: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D | null;
  private readonly color: string;
  private readonly n: number;
  private w = 0;
  private h = 0;
  private last: { values: ArrayLike<number>; end: number } | null = null;

  constructor(color: string, n = 90) {
    this.n = n;
    this.color = color;
    this.el = h('canvas', { class: 'spark', height: String(HEIGHT), 'aria-hidden': 'true' });
    this.ctx = this.el.getContext?.('2d') ?? null;
    if (typeof ResizeObserver !== 'undefined') {
      observer ??= new ResizeObserver((entries) => entries.forEach((e) => onResize.get(e.target)?.()));
      onResize.set(this.el, () => this.fit());
      observer.observe(this.el);
    }
  }

  private fit(): void {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(this.el.clientWidth * dpr);
    const h = Math.round(HEIGHT * dpr);
    if (!w || (w === this.w && h === this.h)) return;
    this.w = this.el.width = w;
    this.h = this.el.height = h;
    if (this.last) this.update(this.last.values, this.last.end);
  }

  /** Draws the last `n` values of `values` up to index `end` (exclusive). */
  update(values: ArrayLike<number>, end = values.length): void {
    this.last = { values, end };
    const ctx = this.ctx;
    if (!ctx || !this.w) return;
    const { w, h } = this;
    ctx.clearRect(0, 0, w, h);
    const start = Math.max(0, end - this.n);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = start; i < end; i++) {
      const v = values[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!(hi >= lo)) return;
    const span = hi - lo || 1;
    const pad = 2 * (h / HEIGHT);
    const step = w / (this.n - 1);
    const x0 = w - (end - start - 1) * step;
    ctx.beginPath();
    let moved = false;
    for (let i = start; i < end; i++) {
      const v = values[i];
      if (v !== v) continue; // NaN: a missing figure
      const x = x0 + (i - start) * step;
      const y = h - pad - ((v - lo) / span) * (h - 2 * pad);
      if (moved) ctx.lineTo(x, y);
      else {
        ctx.moveTo(x, y);
        moved = true;
      }
    }
    ctx.strokeStyle = this.color;
    ctx.lineWidth = 1.5 * (h / HEIGHT);
    ctx.stroke();
  }
}
