// Colours the charts and SVG graphics share (the CSS holds the rest): one colour per blend
// source, per marker kind, and the chart chrome of the dark theme.

import type { MarkerKind, Source } from '../engine/types';

export const SOURCE_COLORS: Record<Source, string> = {
  seq: '#6ea8fe',
  like: '#f78fb3',
  purchase: '#7bd88f',
  itemknn: '#fcbf49',
  markov: '#c792ea',
  pop: '#5fd7d7',
  text: '#ff9e64',
};

export const MARKER_COLORS: Record<MarkerKind, string> = {
  publish: '#6ea8fe',
  rollback: '#fcbf49',
  revert: '#ff6b6b',
  model: '#c792ea',
};

export const CHART = {
  axis: '#aab3c0',
  grid: 'rgba(170, 179, 192, 0.12)',
  font: '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
  labelBg: 'rgba(15, 17, 21, 0.85)',
};

/** Distinct colours for series without a fixed meaning (replay strategies). */
export const PALETTE = ['#6ea8fe', '#fcbf49', '#7bd88f', '#f78fb3', '#c792ea', '#5fd7d7', '#ff9f68', '#a0e85b'];
