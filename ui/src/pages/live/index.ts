// The Live page: KPI tiles with sparklines and twelve synced uPlot charts with change markers,
// fed once a second from the live store (or the server's history for ranges past 30 min),
// with pause, scrub and a time-range picker. Each update is timed (src/perf.ts).

import type { PageContext, Page } from '../../app-state';
import { describe } from '../../engine/errors';
import type { Marker } from '../../engine/types';
import { fmtUtc, fmtUtcClock } from '../../format';
import { recordTick } from '../../perf';
import { StatsRing, toPoint, type Column } from '../../ring';
import { TimeChart } from '../../ui/chart';
import { h, replace } from '../../ui/dom';
import { Sparkline } from '../../ui/sparkline';
import { MARKER_COLORS } from '../../ui/theme';
import { CHARTS, KPIS, RANGES, type RangeSpec } from './specs';

/** Server history: 24 h of 10 s points, with room. */
const HISTORY_CAPACITY = 9000;
/** How often the server-history view fetches its newest points. */
const HISTORY_POLL_MS = 10_000;

interface Tile {
  value: HTMLElement;
  spark: Sparkline;
}

interface Slot {
  chart: TimeChart;
  cols: Column[];
  visible: boolean;
  dirty: boolean;
}

export function livePage(ctx: PageContext): Page {
  const { engine, store } = ctx;
  let shown = false;
  let range: RangeSpec = RANGES[1];
  const history = new StatsRing(HISTORY_CAPACITY);
  let historyTimer: ReturnType<typeof setInterval> | null = null;
  const historyNote = h('p', { class: 'range-note muted', 'aria-live': 'polite' });

  // --- toolbar ------------------------------------------------------------------------
  const rangeInputs = RANGES.map((r) => {
    const input = h('input', { type: 'radio', name: 'live-range', value: r.id, checked: r === range, id: `range-${r.id}` });
    input.addEventListener('change', () => input.checked && setRange(r));
    return h('span', { class: 'seg' }, input, h('label', { for: input.id }, r.label));
  });
  const pauseBtn = h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false' }, 'Pause');
  pauseBtn.addEventListener('click', () => (store.isPaused ? store.resume() : store.pause()));
  const scrub = h('input', { type: 'range', id: 'live-scrub', min: '0', max: '0', step: '1', value: '0' });
  const scrubTime = h('output', { for: 'live-scrub', class: 'scrub-time' }, 'live');
  scrub.addEventListener('input', () => {
    store.scrub(Number(scrub.value));
    placeCursor();
  });
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    h('fieldset', { class: 'segmented' }, h('legend', { class: 'sr-only' }, 'Time range'), rangeInputs),
    pauseBtn,
    h('div', { class: 'scrub' }, h('label', { for: 'live-scrub' }, 'Scrub (last 30 min)'), scrub, scrubTime),
    h(
      'div',
      { class: 'marker-legend', 'aria-label': 'Marker colours' },
      Object.entries(MARKER_COLORS).map(([k, c]) => h('span', { class: 'marker-key' }, h('i', { style: { background: c } }), k)),
    ),
  );

  // --- KPI tiles ----------------------------------------------------------------------
  const tiles: Tile[] = [];
  const tileGrid = h(
    'div',
    { class: 'kpis' },
    KPIS.map((k) => {
      const value = h('div', { class: 'kpi-value' }, '–');
      const spark = new Sparkline('#6ea8fe');
      tiles.push({ value, spark });
      return h('div', { class: 'kpi', role: 'group', 'aria-label': k.label }, h('div', { class: 'kpi-label' }, k.label), value, spark.el);
    }),
  );

  // --- charts -------------------------------------------------------------------------
  const markers = () => store.markers;
  const slots: Slot[] = CHARTS.map((d) => ({
    chart: new TimeChart(d.spec, { sync: 'attune-live', markers }),
    cols: d.cols,
    visible: true,
    dirty: true,
  }));
  const grid = h('div', { class: 'charts' }, slots.map((s) => s.chart.el));
  const io =
    typeof IntersectionObserver === 'undefined'
      ? null
      : new IntersectionObserver(
          (entries) => {
            for (const e of entries) {
              const slot = slots.find((s) => s.chart.el === e.target);
              if (!slot) continue;
              slot.visible = e.isIntersecting;
              if (slot.visible && slot.dirty && shown) drawSlot(slot);
            }
          },
          { rootMargin: '200px' },
        );
  for (const s of slots) io?.observe(s.chart.el);

  // The changes drawn on the charts, as text: the canvas lines are invisible to assistive
  // technology and too thin to hover, and this list names each one (newest first).
  const MARKERS_LISTED = 8;
  const markerList = h('ol', { class: 'marker-list', 'aria-label': 'Changes in view, newest first' });
  const markerBox = h('div', { class: 'marker-box', hidden: true }, h('span', { class: 'marker-list-h muted' }, 'Changes'), markerList);
  let markerKey = '';
  function renderMarkers(): void {
    const inView = store.markers.filter((m) => m.ts_ms / 1000 >= xMin && m.ts_ms / 1000 <= xMax + 5);
    const key = `${store.markers.length}|${inView.length}|${inView[inView.length - 1]?.ts_ms ?? ''}|${inView[0]?.ts_ms ?? ''}`;
    if (key === markerKey) return;
    markerKey = key;
    markerBox.hidden = inView.length === 0;
    const shown: Marker[] = inView.slice(-MARKERS_LISTED).reverse();
    replace(
      markerList,
      shown.map((m) =>
        h(
          'li',
          { class: `marker-item marker-${m.kind}`, 'data-kind': m.kind, 'data-version': m.version ?? '', title: `${fmtUtc(m.ts_ms)} · ${m.label}` },
          h('i', { style: { background: MARKER_COLORS[m.kind] ?? '#ccc' }, 'aria-hidden': 'true' }),
          h('time', { datetime: new Date(m.ts_ms).toISOString() }, fmtUtcClock(m.ts_ms, true)),
          ' ',
          m.label,
        ),
      ),
      inView.length > MARKERS_LISTED ? h('li', { class: 'muted' }, `and ${inView.length - MARKERS_LISTED} earlier`) : null,
    );
  }

  const emptyNote = h('div', { class: 'live-empty' });
  const el = h(
    'section',
    { class: 'page page-live', 'aria-labelledby': 'live-h' },
    h('div', { class: 'page-head' }, h('h1', { id: 'live-h' }, 'Live'), historyNote),
    toolbar,
    markerBox,
    emptyNote,
    tileGrid,
    grid,
  );

  // --- data ---------------------------------------------------------------------------
  /** The arrays the charts draw: the store's view, or the server history. */
  function source(c: Column): Float64Array {
    return range.server ? history.view(c) : store.view(c);
  }
  function sourceLength(): number {
    return range.server ? history.length : store.viewLength;
  }

  let data: Map<Column, Float64Array> = new Map();
  let xMin = 0;
  let xMax = 0;

  function prepare(): void {
    data = new Map();
    const n = sourceLength();
    const ts = source('ts');
    xMax = n ? ts[n - 1] : Date.now() / 1000;
    if (!range.server && !store.isPaused) xMax = Math.max(xMax, Date.now() / 1000 - 1);
    xMin = xMax - range.seconds;
  }

  function col(c: Column): Float64Array {
    let a = data.get(c);
    if (!a) data.set(c, (a = source(c)));
    return a;
  }

  function drawSlot(s: Slot): void {
    s.chart.setSeries(col('ts'), s.cols.map(col), xMin, xMax);
    s.dirty = false;
  }

  function updateTiles(): void {
    const n = store.viewLength;
    const p = store.selectedPoint();
    const end = store.scrubbed === null ? n : store.scrubbed + 1;
    KPIS.forEach((k, i) => {
      const t = tiles[i];
      const v = p ? p[k.col] : NaN;
      const text = k.fmt(v);
      if (t.value.textContent !== text) t.value.textContent = text;
      t.value.classList.toggle('alarm', !!k.alarm && v > 0);
      t.spark.update(store.view(k.col), end);
    });
    scrub.max = String(Math.max(0, n - 1));
    scrub.value = String(store.scrubbed ?? Math.max(0, n - 1));
    const sel = store.scrubbed === null ? null : store.view('ts')[store.scrubbed];
    scrubTime.textContent = sel === null ? (store.isPaused ? 'paused' : 'live') : fmtUtc(sel * 1000);
  }

  function update(): void {
    if (!shown) return;
    const t0 = performance.now();
    prepare();
    for (const s of slots) {
      if (s.visible) drawSlot(s);
      else s.dirty = true;
    }
    updateTiles();
    renderMarkers();
    const empty = sourceLength() === 0;
    emptyNote.hidden = !empty;
    if (empty) {
      replace(
        emptyNote,
        h(
          'p',
          { class: 'notice notice-empty' },
          store.down
            ? 'No figures yet: the engine is unreachable. The charts fill in once it answers.'
            : 'Waiting for the first live figures (one a second)…',
        ),
      );
    }
    recordTick(performance.now() - t0);
  }

  function placeCursor(): void {
    const i = store.scrubbed;
    const u = slots[0].chart.plot;
    if (i === null) {
      u.setCursor({ left: -10, top: -10 });
      return;
    }
    const x = store.view('ts')[i];
    u.setCursor({ left: u.valToPos(x, 'x'), top: u.bbox.height / (2 * devicePixelRatio) });
  }

  async function loadHistory(): Promise<void> {
    historyNote.textContent = `Loading ${range.label} of server history…`;
    try {
      const hst = await engine.history(range.seconds);
      history.clear();
      history.merge(hst.points.map(toPoint));
      store.addMarkers(hst.markers);
      historyNote.textContent = `Server history: ${range.label}, one point per ${hst.step_s} s, times in UTC.`;
    } catch (e) {
      historyNote.textContent = `Could not load the history: ${describe(e)}`;
    }
    update();
  }

  async function pollHistory(): Promise<void> {
    if (!range.server || !shown) return;
    try {
      const hst = await engine.history(60);
      for (const p of hst.points) history.push(toPoint(p));
      store.addMarkers(hst.markers);
      update();
    } catch {
      // The connection banner tells the story; the next poll retries.
    }
  }

  function setRange(r: RangeSpec): void {
    range = r;
    if (historyTimer) clearInterval(historyTimer);
    historyTimer = null;
    if (r.server) {
      store.resume();
      void loadHistory();
      historyTimer = setInterval(() => void pollHistory(), HISTORY_POLL_MS);
    } else {
      historyNote.textContent =
        r.id === '15m'
          ? 'Last 15 min: server history before this tab opened, live points since.'
          : 'Live: the last 30 min kept in this tab, one point a second.';
      update();
    }
    scrub.disabled = r.server;
    pauseBtn.disabled = r.server;
  }

  store.on('stats', () => {
    if (!shown) return;
    if (range.server) {
      // The charts follow the 10 s history; the tiles follow the stream.
      const t0 = performance.now();
      updateTiles();
      recordTick(performance.now() - t0);
    } else if (!store.isPaused) {
      update();
    }
  });
  store.on('view', () => {
    pauseBtn.textContent = store.isPaused ? 'Resume' : 'Pause';
    pauseBtn.setAttribute('aria-pressed', String(store.isPaused));
    if (!range.server) update();
  });
  store.on('markers', () => {
    if (!shown) return;
    for (const s of slots) s.chart.redraw();
    renderMarkers();
  });
  store.on('connection', () => shown && sourceLength() === 0 && update());

  setRange(range);

  return {
    el,
    show() {
      shown = true;
      for (const s of slots) s.dirty = true;
      // Sizes are known only once the page is in the layout.
      requestAnimationFrame(() => {
        for (const s of slots) s.chart.resize(s.chart.el.querySelector('.chart-plot')!.clientWidth);
        update();
      });
      update();
    },
    hide() {
      shown = false;
    },
  };
}
