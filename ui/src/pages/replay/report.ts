// A replay report (src-core/src/replay/figures.rs `ReplayReport`): the verdict if there is one,
// each strategy's figures as a table, confidence intervals if present, per-window charts of
// HR / NDCG / MRR and each strategy's blend weights over the replay.

import type { ReplayComparison, ReplayReport, StrategyReport } from '../../engine/types';
import { SOURCES } from '../../engine/types';
import { fmtDuration, fmtInt, fmtNum, fmtPct, fmtUs, fmtUtc } from '../../format';
import { TimeChart } from '../../ui/chart';
import { h, notice } from '../../ui/dom';
import { PALETTE, SOURCE_COLORS } from '../../ui/theme';

type Col = { label: string; get: (s: StrategyReport) => number | null | undefined; fmt: (v: number) => string; best?: 'max' | 'min' };

const COLUMNS: Col[] = [
  { label: 'HR@k', get: (s) => s.hr, fmt: (v) => fmtPct(v, 2), best: 'max' },
  { label: 'NDCG@k', get: (s) => s.ndcg, fmt: (v) => fmtNum(v, 4), best: 'max' },
  { label: 'MRR', get: (s) => s.mrr, fmt: (v) => fmtNum(v, 4), best: 'max' },
  { label: 'coverage', get: (s) => s.coverage, fmt: (v) => fmtPct(v), best: 'max' },
  { label: 'rankings', get: (s) => s.rankings, fmt: fmtInt },
  { label: 'reward', get: (s) => s.reward, fmt: (v) => fmtNum(v), best: 'max' },
  { label: 'latency p50', get: (s) => s.latency_p50_us, fmt: fmtUs, best: 'min' },
  { label: 'latency p99', get: (s) => s.latency_p99_us, fmt: fmtUs, best: 'min' },
  { label: 'served agreement', get: (s) => s.served_agreement, fmt: (v) => fmtPct(v) },
  { label: 'time', get: (s) => s.seconds, fmt: (v) => fmtDuration(v) },
];

function figuresTable(r: ReplayReport): HTMLElement {
  const best = COLUMNS.map((c) => {
    const vals = r.strategies.map(c.get).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    if (!c.best || vals.length < 2) return null;
    return c.best === 'max' ? Math.max(...vals) : Math.min(...vals);
  });
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      null,
      h('caption', { class: 'sr-only' }, 'Figures per strategy; the best of each column in bold'),
      h('thead', null, h('tr', null, h('th', null, 'strategy'), COLUMNS.map((c) => h('th', { class: 'num' }, c.label)))),
      h(
        'tbody',
        null,
        r.strategies.map((s, i) =>
          h(
            'tr',
            null,
            h('th', { scope: 'row' }, h('span', { class: 'swatch', style: { background: PALETTE[i % PALETTE.length] } }), s.name),
            COLUMNS.map((c, j) => {
              const v = c.get(s);
              const text = typeof v === 'number' && Number.isFinite(v) ? c.fmt(v) : '–';
              return h('td', { class: 'num' }, v === best[j] && best[j] !== null ? h('strong', null, text) : text);
            }),
          ),
        ),
      ),
    ),
  );
}

function isComparisons(c: unknown): c is ReplayComparison[] {
  return (
    Array.isArray(c) &&
    c.length > 0 &&
    c.every((x) => x && typeof x === 'object' && typeof x.strategy === 'string' && Array.isArray(x.differences))
  );
}

const METRIC_LABELS: Record<string, (k: number | undefined) => string> = {
  hr: (k) => `HR@${k ?? 'k'}`,
  ndcg: (k) => `NDCG@${k ?? 'k'}`,
  mrr: () => 'MRR',
  reward_per_ranking: () => 'reward per ranking',
};

/** A signed figure: `+0.0123`, `−0.0045`, `0.0000`. */
function signed(v: number): string {
  const t = Math.abs(v).toFixed(4);
  return v > 0 && Number(t) !== 0 ? `+${t}` : v < 0 && Number(t) !== 0 ? `−${t}` : t;
}

/** Each strategy against the baseline: per metric the two figures, the difference and its 95% CI. */
function comparisonTables(cs: ReplayComparison[], k: number | undefined): HTMLElement {
  return h(
    'div',
    { class: 'comparisons' },
    cs.map((c) =>
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'comparison', 'data-strategy': c.strategy, 'data-baseline': c.baseline },
          h('caption', null, `${c.strategy} against ${c.baseline}, paired over ${fmtInt(c.users)} users`),
          h(
            'thead',
            null,
            h('tr', null, h('th', null, 'metric'), h('th', { class: 'num' }, c.strategy), h('th', { class: 'num' }, c.baseline), h('th', { class: 'num' }, 'difference'), h('th', { class: 'num' }, '95% CI'), h('th', null, 'beyond noise')),
          ),
          h(
            'tbody',
            null,
            c.differences.map((d) =>
              h(
                'tr',
                { 'data-metric': d.metric },
                h('th', { scope: 'row' }, (METRIC_LABELS[d.metric] ?? (() => d.metric))(k)),
                h('td', { class: 'num' }, fmtNum(d.value, 4)),
                h('td', { class: 'num' }, fmtNum(d.baseline, 4)),
                h('td', { class: 'num diff' }, signed(d.diff)),
                h('td', { class: 'num ci' }, `[${signed(d.ci_low)}, ${signed(d.ci_high)}]`),
                h('td', null, d.significant ? h('span', { class: `tag ${d.diff > 0 ? 'tag-ok' : 'tag-err'}` }, d.diff > 0 ? 'better' : 'worse') : h('span', { class: 'muted' }, 'no')),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Renders `comparisons` whatever its shape: a list of records as a table, else key/values. */
function comparisons(c: unknown, k?: number): HTMLElement | null {
  if (c == null || (Array.isArray(c) && !c.length)) return null;
  if (isComparisons(c)) return comparisonTables(c, k);
  const cell = (v: unknown): string =>
    typeof v === 'number' ? fmtNum(v, 4) : Array.isArray(v) ? `[${v.map(cell).join(', ')}]` : v && typeof v === 'object' ? JSON.stringify(v) : String(v);
  if (Array.isArray(c) && c.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
    const keys = [...new Set(c.flatMap((x) => Object.keys(x as object)))];
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        null,
        h('caption', { class: 'sr-only' }, 'Comparisons with confidence intervals'),
        h('thead', null, h('tr', null, keys.map((k) => h('th', null, k)))),
        h('tbody', null, c.map((row) => h('tr', null, keys.map((k) => h('td', null, cell((row as Record<string, unknown>)[k])))))),
      ),
    );
  }
  if (typeof c === 'object') {
    return h('dl', { class: 'kv' }, Object.entries(c as object).flatMap(([k, v]) => [h('dt', null, k), h('dd', null, cell(v))]));
  }
  return h('p', null, cell(c));
}

/** A rendered report; `destroy` frees its charts. */
export function renderReport(r: ReplayReport, download: HTMLElement | null): { el: HTMLElement; destroy(): void } {
  const charts: TimeChart[] = [];
  const strategies = r.strategies ?? [];
  if (!strategies.length) {
    return { el: notice('empty', 'The report has no strategies: nothing was replayed (is the log empty in that time range?).'), destroy() {} };
  }

  // Per-window figures: x is the windows' time when they have one, else the events replayed.
  const ref = strategies.reduce((a, s) => ((s.windows?.length ?? 0) > (a.windows?.length ?? 0) ? s : a), strategies[0]);
  const wins = ref.windows ?? [];
  const timed = wins.length > 1 && wins.every((w, i) => w.ts_to > 0 && (i === 0 || w.ts_to > wins[i - 1].ts_to));
  const windowCharts = (['hr', 'ndcg', 'mrr'] as const).map((m) => {
    const chart = new TimeChart(
      {
        title: `${m.toUpperCase()} per window`,
        unit: m === 'hr' ? '%' : '',
        fmt: (v) => (m === 'hr' ? fmtPct(v) : fmtNum(v, 3)),
        xTime: timed,
        xLabel: 'events',
        series: strategies.map((s, i) => ({ label: s.name, color: PALETTE[i % PALETTE.length] })),
        height: 180,
      },
      { sync: 'attune-replay' },
    );
    const xs = wins.map((w) => (timed ? w.ts_to / 1000 : w.events_to));
    const ys = strategies.map((s) => wins.map((w) => s.windows?.find((x) => x.events_to === w.events_to)?.[m] ?? null));
    chart.setData([xs, ...ys] as never);
    charts.push(chart);
    return chart.el;
  });

  const weightCharts = strategies
    .filter((s) => (s.weights?.length ?? 0) > 0)
    .map((s) => {
      const chart = new TimeChart({
        title: `Blend weights: ${s.name}`,
        unit: 'weight',
        fmt: (v) => fmtNum(v),
        xTime: false,
        xLabel: 'events',
        series: SOURCES.map((src) => ({ label: src, color: SOURCE_COLORS[src], step: true })),
        height: 160,
      });
      const w = s.weights!;
      chart.setData([w.map((x) => x.events), ...SOURCES.map((src) => w.map((x) => x.weights?.[src] ?? null))] as never);
      charts.push(chart);
      return chart.el;
    });

  const comp = comparisons(r.comparisons, r.k);
  const el = h(
    'div',
    { class: 'report' },
    r.verdict ? h('p', { class: 'verdict', role: 'status' }, r.verdict) : null,
    h(
      'div',
      { class: 'panel-head' },
      h('span', null, `${fmtInt(r.events)} events per strategy · k = ${r.k ?? '?'} · ${fmtDuration(r.seconds)}`),
      r.partial ? h('span', { class: 'tag tag-warn' }, 'partial: stopped before the end') : null,
      h('span', { class: 'muted' }, r.source ?? ''),
      h('span', { class: 'spacer' }),
      download,
    ),
    figuresTable(r),
    comp ? h('div', null, h('h3', null, 'Comparisons (confidence intervals)'), comp) : null,
    wins.length ? h('div', { class: 'charts' }, windowCharts) : notice('empty', 'No per-window figures in this report.'),
    weightCharts.length ? h('div', null, h('h3', null, 'Blend weights over the replay'), h('div', { class: 'charts' }, weightCharts)) : null,
    timed ? h('p', { class: 'muted' }, `Windows from ${fmtUtc(wins[0].ts_to)} to ${fmtUtc(wins[wins.length - 1].ts_to)} (UTC).`) : null,
  );
  return { el, destroy: () => charts.forEach((c) => c.destroy()) };
}
