// A KPI tile's sparkline: one SVG polyline over the last N values, updated by rewriting a
// single `points` attribute (no DOM nodes created per tick).

import { svg } from './dom';

// Integer coordinates in a 10x viewBox: cheaper to write than decimals.
const W = 1200;
const H = 280;

export class Sparkline {
  readonly el: SVGSVGElement;
  private readonly line: SVGPolylineElement;
  private readonly n: number;

  constructor(color: string, n = 90) {
    this.n = n;
    this.line = svg('polyline', { fill: 'none', stroke: color, 'stroke-width': 1.5, 'vector-effect': 'non-scaling-stroke' });
    this.el = svg('svg', { class: 'spark', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' }, this.line);
  }

  /** Draws the last `n` values of `values` up to index `end` (exclusive). */
  update(values: ArrayLike<number>, end = values.length): void {
    const start = Math.max(0, end - this.n);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = start; i < end; i++) {
      const v = values[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!(hi >= lo)) {
      this.line.setAttribute('points', '');
      return;
    }
    const span = hi - lo || 1;
    const step = W / (this.n - 1);
    const x0 = W - (end - start - 1) * step;
    let pts = '';
    for (let i = start; i < end; i++) {
      const v = values[i];
      if (v !== v) continue; // NaN: a missing figure
      const y = (H - 20 - ((v - lo) / span) * (H - 40)) | 0;
      pts += `${(x0 + (i - start) * step) | 0},${y} `;
    }
    this.line.setAttribute('points', pts);
  }
}
