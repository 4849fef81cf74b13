// The score-by-source bar: one horizontal SVG bar per item, a segment per source
// (weights[s] × breakdown[s]), positive contributions right of zero and negative ones left
// of it, on a scale shared by the whole slate so bars compare.

import { SOURCES, type RecItem, type Weights } from '../engine/types';
import { fmtWeight } from '../format';
import { h, svg } from './dom';
import { SOURCE_COLORS } from './theme';

const W = 200;
const H = 14;

export interface BarScale {
  /** Largest sum of negative contributions (as a positive number). */
  neg: number;
  /** Largest sum of positive contributions. */
  pos: number;
}

export function contributions(item: RecItem, weights: Weights): number[] {
  return SOURCES.map((s) => (weights[s] ?? 0) * (item.breakdown?.[s] ?? 0));
}

/** The scale fitting every item of a slate (or of several slates shown together). */
export function barScale(items: RecItem[], weights: Weights): BarScale {
  let neg = 0;
  let pos = 0;
  for (const it of items) {
    let n = 0;
    let p = 0;
    for (const c of contributions(it, weights)) {
      if (c < 0) n -= c;
      else p += c;
    }
    neg = Math.max(neg, n);
    pos = Math.max(pos, p);
  }
  return { neg, pos: pos || 1 };
}

export function stackBar(item: RecItem, weights: Weights, scale: BarScale): SVGSVGElement {
  const total = scale.neg + scale.pos || 1;
  const zero = (scale.neg / total) * W;
  const px = (v: number) => (v / total) * W;
  const parts = contributions(item, weights);
  const rects: SVGElement[] = [];
  let right = zero;
  let left = zero;
  SOURCES.forEach((s, i) => {
    const c = parts[i];
    if (c === 0 || !Number.isFinite(c)) return;
    const w = px(Math.abs(c));
    const x = c > 0 ? right : left - w;
    if (c > 0) right += w;
    else left -= w;
    rects.push(
      svg(
        'rect',
        { x: x.toFixed(2), y: 1, width: Math.max(0.5, w).toFixed(2), height: H - 2, fill: SOURCE_COLORS[s], opacity: c < 0 ? 0.55 : 1 },
        svg('title', null, `${s}: ${fmtWeight(weights[s])} × ${fmtWeight(item.breakdown?.[s])} = ${fmtWeight(c)}`),
      ),
    );
  });
  const label = SOURCES.map((s, i) => `${s} ${fmtWeight(parts[i])}`).join(', ');
  return svg(
    'svg',
    { class: 'stackbar', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `score by source: ${label}` },
    svg('line', { x1: zero, x2: zero, y1: 0, y2: H, stroke: '#aab3c0', 'stroke-width': 1 }),
    rects,
  );
}

/** The colour key of the sources. */
export function sourceLegend(): HTMLElement {
  return h(
    'div',
    { class: 'source-legend', 'aria-label': 'Source colours' },
    SOURCES.map((s) => h('span', null, h('span', { class: 'swatch', style: { background: SOURCE_COLORS[s] } }), s)),
    h('span', null, 'negative contributions: left of the zero line, faded'),
  );
}
