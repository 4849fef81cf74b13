// What the Live page shows: the KPI tiles and the twelve charts, each as the figures
// (ring columns) it plots and how to format them.

import { SOURCES } from '../../engine/types';
import { fmtInt, fmtMs, fmtNum, fmtPct, fmtRate } from '../../format';
import type { Column } from '../../ring';
import type { ChartSpec } from '../../ui/chart';
import { SOURCE_COLORS } from '../../ui/theme';

export interface KpiSpec {
  label: string;
  col: Column;
  fmt: (v: number) => string;
  /** A higher value is bad (drawn red when above zero). */
  alarm?: boolean;
}

export const KPIS: KpiSpec[] = [
  { label: 'Recommendations', col: 'rps', fmt: fmtRate },
  { label: 'Events', col: 'eps', fmt: fmtRate },
  { label: 'Latency p50', col: 'p50', fmt: fmtMs },
  { label: 'Latency p99', col: 'p99', fmt: fmtMs },
  { label: 'Errors / interval', col: 'errors', fmt: fmtInt, alarm: true },
  { label: 'Overloaded / interval', col: 'overloaded', fmt: fmtInt, alarm: true },
  { label: 'Queue depth', col: 'queue', fmt: fmtInt },
  { label: 'Batch size (mean)', col: 'batch', fmt: (v) => fmtNum(v) },
  { label: 'Active sessions', col: 'sessions', fmt: fmtInt },
  { label: 'Reward', col: 'reward_ps', fmt: fmtRate },
  { label: 'CTR', col: 'ctr', fmt: (v) => fmtPct(v) },
];

export interface LiveChartDef {
  spec: ChartSpec;
  cols: Column[];
}

const rate = (v: number) => fmtNum(v);
const C = { blue: '#6ea8fe', amber: '#fcbf49', green: '#7bd88f', red: '#ff6b6b', purple: '#c792ea', teal: '#5fd7d7', grey: '#aab3c0' };

export const CHARTS: LiveChartDef[] = [
  {
    spec: {
      title: 'Throughput',
      unit: '/s',
      fmt: rate,
      zero: true,
      series: [
        { label: 'recommendations/s', color: C.blue },
        { label: 'events/s', color: C.green },
      ],
    },
    cols: ['rps', 'eps'],
  },
  {
    spec: {
      title: 'Recommend latency',
      unit: 'ms',
      fmt: (v) => fmtNum(v),
      zero: true,
      band: [3, 2],
      series: [
        { label: 'p50', color: C.blue, width: 2 },
        { label: 'p95', color: C.amber, width: 1, faint: true },
        { label: 'p99', color: C.red, width: 1 },
      ],
    },
    cols: ['p50', 'p95', 'p99'],
  },
  {
    spec: { title: 'HTTP requests', unit: '/s', fmt: rate, zero: true, series: [{ label: 'requests/s', color: C.teal }] },
    cols: ['http'],
  },
  {
    spec: { title: 'Batch size (mean)', unit: 'requests', fmt: (v) => fmtNum(v), zero: true, series: [{ label: 'batch', color: C.purple }] },
    cols: ['batch'],
  },
  {
    spec: { title: 'Inference queue depth', unit: 'requests', fmt: (v) => fmtNum(v), zero: true, series: [{ label: 'queue', color: C.amber }] },
    cols: ['queue'],
  },
  {
    spec: {
      title: 'Blend weights',
      unit: 'weight',
      fmt: (v) => fmtNum(v),
      series: SOURCES.map((s) => ({ label: s, color: SOURCE_COLORS[s], step: true })),
    },
    cols: SOURCES.map((s) => `w_${s}` as Column),
  },
  {
    spec: {
      title: 'Errors and overloaded',
      unit: 'per interval',
      fmt: (v) => fmtNum(v),
      zero: true,
      series: [
        { label: 'errors', color: C.red },
        { label: 'overloaded', color: C.amber },
      ],
    },
    cols: ['errors', 'overloaded'],
  },
  {
    spec: { title: 'Reward', unit: '/s', fmt: rate, zero: true, series: [{ label: 'reward/s', color: C.green }] },
    cols: ['reward_ps'],
  },
  {
    spec: { title: 'Click-through rate', unit: '%', fmt: (v) => fmtPct(v), zero: true, series: [{ label: 'CTR', color: C.blue }] },
    cols: ['ctr'],
  },
  {
    spec: { title: 'Reward per recommendation', unit: 'reward', fmt: (v) => fmtNum(v), zero: true, series: [{ label: 'reward/rec', color: C.teal }] },
    cols: ['reward_per_rec'],
  },
  {
    spec: { title: 'Active sessions', unit: 'sessions', fmt: (v) => fmtNum(v), zero: true, series: [{ label: 'sessions', color: C.purple }] },
    cols: ['sessions'],
  },
  {
    spec: {
      title: 'Strategy and model versions',
      unit: 'version',
      fmt: (v) => (Number.isInteger(v) ? `v${v}` : ''),
      zero: true,
      series: [
        { label: 'strategy', color: C.blue, step: true, width: 2 },
        { label: 'model', color: C.purple, step: true, width: 2, dash: [5, 3] },
      ],
    },
    cols: ['strategy_version', 'model_version'],
  },
];

/** Time ranges: the client buffer (30 min, 15 min incl. history) or the server's history. */
export interface RangeSpec {
  id: string;
  label: string;
  seconds: number;
  /** Drawn from the server's history (10 s points) rather than the live buffer. */
  server: boolean;
}

export const RANGES: RangeSpec[] = [
  { id: '15m', label: '15 min', seconds: 900, server: false },
  { id: '30m', label: '30 min (live)', seconds: 1800, server: false },
  { id: '1h', label: '1 h', seconds: 3600, server: true },
  { id: '6h', label: '6 h', seconds: 21600, server: true },
  { id: '24h', label: '24 h', seconds: 86400, server: true },
];
