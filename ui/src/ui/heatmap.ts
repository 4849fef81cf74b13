// The attention heatmap: one SVG row per attention row (the heads' mean, then each head on
// demand), one cell per history item labelled with its id, a colour scale with a legend, and
// each cell's weight in its tooltip.

import { fmtNum } from '../format';
import { h, svg } from './dom';

const CELL_W = 26;
const CELL_H = 22;
const LABEL_W = 64;
const TOP = 58;

/** A dark-to-bright blue-yellow ramp for 0..1. */
export function heatColor(t: number): string {
  const x = Math.max(0, Math.min(1, t));
  // From #1b2a4a (low) through #2d7dd2 to #ffd166 (high).
  const stops: [number, number, number][] = [
    [27, 42, 74],
    [45, 125, 210],
    [255, 209, 102],
  ];
  const seg = x < 0.5 ? 0 : 1;
  const f = x < 0.5 ? x / 0.5 : (x - 0.5) / 0.5;
  const [a, b] = [stops[seg], stops[seg + 1]];
  const c = a.map((v, i) => Math.round(v + (b[i] - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

export interface HeatRow {
  label: string;
  values: number[];
}

export function heatmap(items: string[], rows: HeatRow[]): HTMLElement {
  const max = Math.max(1e-9, ...rows.flatMap((r) => r.values.filter(Number.isFinite)));
  const width = LABEL_W + items.length * CELL_W + 4;
  const height = TOP + rows.length * CELL_H + 4;
  const labels = items.map((it, i) =>
    svg(
      'text',
      { x: 0, y: 0, transform: `translate(${LABEL_W + i * CELL_W + CELL_W / 2 + 3}, ${TOP - 6}) rotate(-55)` },
      it.length > 9 ? `${it.slice(0, 8)}…` : it,
    ),
  );
  const cells = rows.flatMap((r, ri) => [
    svg('text', { class: 'row-label', x: LABEL_W - 6, y: TOP + ri * CELL_H + CELL_H / 2 + 4, 'text-anchor': 'end' }, r.label),
    ...r.values.map((v, ci) =>
      svg(
        'rect',
        {
          x: LABEL_W + ci * CELL_W,
          y: TOP + ri * CELL_H,
          width: CELL_W - 2,
          height: CELL_H - 2,
          rx: 2,
          fill: heatColor(v / max),
        },
        svg('title', null, `${r.label} → ${items[ci]} (position ${ci + 1}): weight ${fmtNum(v)}`),
      ),
    ),
  ]);
  const legend = h(
    'div',
    { class: 'legend-bar' },
    h('span', null, '0'),
    h('span', {
      style: { display: 'inline-block', width: '140px', height: '10px', borderRadius: '2px', background: `linear-gradient(90deg, ${heatColor(0)}, ${heatColor(0.5)}, ${heatColor(1)})` },
      'aria-hidden': 'true',
    }),
    h('span', null, fmtNum(max)),
    h('span', null, '· attention weight of the latest position over each history item (oldest left); each row sums to 1'),
  );
  return h(
    'div',
    null,
    h(
      'div',
      { class: 'heatmap-wrap' },
      svg(
        'svg',
        { class: 'heatmap', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `Attention over ${items.length} history items, ${rows.length} row${rows.length === 1 ? '' : 's'}` },
        labels,
        cells,
      ),
    ),
    legend,
  );
}
