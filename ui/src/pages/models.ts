// The Models page: the model serving now (ModelInfo) and the checkpoints available, each a
// card with its config and metrics tables; Activate (confirmed) swaps one in, and the swap
// shows up as a marker on the Live charts.

import type { Page, PageContext } from '../app-state';
import { describe } from '../engine/errors';
import type { Checkpoint, ModelInfo, Models } from '../engine/types';
import { fmtInt, fmtNum } from '../format';
import { confirmDialog } from '../ui/dialog';
import { h, notice, replace } from '../ui/dom';
import { failureNotice } from '../ui/failure';
import { toast } from '../ui/toast';

function value(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? fmtInt(v) : fmtNum(v, 4);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (v === null || v === undefined) return '–';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * Nested records as dotted rows (`test.hr`, `train.model.dim`): one wide JSON cell would
 * widen the table past its card and push every value out of sight.
 */
export function flatten(obj: Record<string, unknown>, prefix = '', depth = 0): [string, unknown][] {
  return Object.entries(obj).flatMap(([k, v]): [string, unknown][] => {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && depth < 3) return flatten(v as Record<string, unknown>, key, depth + 1);
    if (Array.isArray(v) && v.every((x) => x === null || typeof x !== 'object')) return [[key, v.map((x) => value(x)).join(', ')]];
    return [[key, v]];
  });
}

function kvTable(caption: string, obj: Record<string, unknown> | null | undefined, empty: string): HTMLElement {
  const entries = obj && typeof obj === 'object' ? flatten(obj) : [];
  if (!entries.length) return h('p', { class: 'muted' }, empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      null,
      h('caption', { class: 'sr-only' }, caption),
      h('tbody', null, entries.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', { class: typeof v === 'number' ? 'num' : 'kv-text' }, value(v))))),
    ),
  );
}

function servingCard(m: ModelInfo | null): HTMLElement {
  if (!m) return notice('empty', 'No model is serving: recommendations come from the baselines only. Activate a checkpoint below.');
  return h(
    'dl',
    { class: 'kv' },
    ...[
      ['version', `v${m.version}`],
      ['checkpoint', m.dir],
      ['weights', m.weights ?? '–'],
      ['fine-tuned', value(m.fine_tuned)],
      ['items', value(m.items)],
      ['embedding width', value(m.dim)],
      ['blocks', value(m.layers)],
      ['heads', value(m.heads)],
      ['window', m.max_len === undefined ? '–' : `${fmtInt(m.max_len)} items`],
      [
        'score dtype',
        m.score_dtype === undefined
          ? '–'
          : `${m.score_dtype}${m.scoring_bytes_per_item === undefined ? '' : ` · ${fmtInt(m.scoring_bytes_per_item)} bytes/item`}`,
      ],
    ].flatMap(([k, v]) => [h('dt', null, k), h('dd', { class: k === 'checkpoint' || k === 'weights' ? 'mono' : undefined }, v)]),
  );
}

export function modelsPage(ctx: PageContext): Page {
  const { engine, app, store } = ctx;
  const serving = h('div');
  const list = h('div');
  const dirNote = h('span', { class: 'muted' });
  let models: Models | null = null;
  let shown = false;

  const isServing = (c: Checkpoint) => {
    const dir = models?.serving?.dir ?? app.info?.model?.dir;
    return !!dir && (dir === c.dir || dir.replace(/\/$/, '').endsWith(`/${c.name}`));
  };

  async function activate(c: Checkpoint): Promise<void> {
    const ok = await confirmDialog({
      title: `Activate ${c.name}?`,
      message: `The engine loads ${c.dir} and swaps it in atomically for the next request; the current model stops serving. The choice is kept across restarts.`,
      confirm: 'Activate',
    });
    if (!ok) return;
    try {
      const a = await engine.activateModel(c.name);
      app.applyModel(a.model, c.name);
      toast(`Model v${a.version} (${c.name}) is serving.`);
      await load();
    } catch (e) {
      toast(`Could not activate ${c.name}: ${describe(e)}`, 'error');
    }
  }

  function render(): void {
    const m = models;
    if (!m) return;
    replace(serving, servingCard(m.serving));
    dirNote.textContent = m.models_dir ? `from ${m.models_dir}` : '';
    if (!m.models_dir) {
      replace(list, notice('empty', 'The engine was started without --models, so there are no checkpoints to choose from.'));
      return;
    }
    if (!m.available.length) {
      replace(list, notice('empty', `No checkpoints in ${m.models_dir}: train one (attune train) into that directory.`));
      return;
    }
    replace(
      list,
      h(
        'div',
        { class: 'card-grid' },
        m.available.map((c) => {
          const live = isServing(c);
          const btn = h('button', { type: 'button', class: 'btn btn-primary btn-small', disabled: live }, live ? 'Serving' : 'Activate…');
          btn.addEventListener('click', () => void activate(c));
          return h(
            'article',
            { class: 'panel', 'aria-label': `checkpoint ${c.name}` },
            h('div', { class: 'panel-head' }, h('h3', { style: { margin: '0' } }, c.name), live ? h('span', { class: 'tag tag-ok' }, 'serving') : null, h('span', { class: 'spacer' }), btn),
            h('p', { class: 'muted mono' }, c.dir, c.items != null ? ` · ${fmtInt(c.items)} items` : ''),
            h('h3', null, 'Metrics'),
            kvTable(`${c.name} metrics`, c.metrics, 'No metrics.json in this checkpoint.'),
            h('h3', { style: { marginTop: '8px' } }, 'Config'),
            kvTable(`${c.name} config`, c.config, 'No config.json in this checkpoint.'),
          );
        }),
      ),
    );
  }

  async function load(): Promise<void> {
    try {
      models = await engine.models();
      render();
    } catch (e) {
      replace(serving, failureNotice('The serving model is not loaded', e));
      replace(list, h('span'));
    }
  }

  store.on('event', (e) => {
    if (e?.event === 'model' && shown) void load();
  });
  store.on('connection', () => {
    if (shown && store.connection.state === 'connected' && !models) void load();
  });
  app.on('info', () => {
    if (models && shown) {
      models.serving = app.info?.model ?? models.serving;
      render();
    }
  });

  replace(serving, notice('loading', 'Loading the serving model…'));
  replace(list, notice('loading', 'Loading the checkpoints…'));

  return {
    el: h(
      'section',
      { class: 'page page-models', 'aria-labelledby': 'models-h' },
      h('div', { class: 'page-head' }, h('h1', { id: 'models-h' }, 'Models')),
      h('section', { class: 'panel', 'aria-labelledby': 'serving-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'serving-h' }, 'Serving now')), serving),
      h('section', { class: 'panel', 'aria-labelledby': 'ckpt-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'ckpt-h' }, 'Checkpoints'), dirNote), list),
    ),
    show() {
      shown = true;
      void load();
    },
    hide() {
      shown = false;
    },
  };
}
