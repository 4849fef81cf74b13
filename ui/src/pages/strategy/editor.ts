// The strategy editor: one control for every field of Strategy, built once; edits write into
// the draft by field path and call back; errors appear beside their field.

import type { FieldError } from '../../draft';
import { errorsByField, getPath, setPath } from '../../draft';
import { SOURCES, type Strategy, type Weights } from '../../engine/types';
import { fmtWeight } from '../../format';
import { field, h } from '../../ui/dom';
import { SOURCE_COLORS } from '../../ui/theme';

export interface Editor {
  el: HTMLElement;
  /** Shows a strategy in every control (a new or rebased draft). */
  load(s: Strategy): void;
  /** Shows errors beside their fields (client or engine), clears the others; returns those with no field. */
  showErrors(errs: FieldError[]): string[];
  /** The learned weights in force, shown beside the set ones. */
  showLearned(w: Weights | null): void;
}

const idOf = (path: string) => `w-${path.replace(/\./g, '-')}`;

type Control = { path: string; input: HTMLInputElement | HTMLSelectElement; kind: 'num' | 'int' | 'bool' | 'text' | 'tags' };

export function strategyEditor(getDraft: () => Strategy | null, onChange: (path: string) => void): Editor {
  const controls: Control[] = [];
  const errorSlots = new Map<string, HTMLElement>();

  const bind = (c: Control) => {
    controls.push(c);
    c.input.id = idOf(c.path);
    c.input.addEventListener(c.kind === 'bool' ? 'change' : 'input', () => {
      const s = getDraft();
      if (!s) return;
      setPath(s, c.path, read(c));
      onChange(c.path);
    });
    return c.input;
  };
  const num = (path: string, step = 'any', kind: 'num' | 'int' = 'num') =>
    bind({ path, kind, input: h('input', { type: 'number', step: kind === 'int' ? '1' : step, inputmode: 'decimal' }) });
  const labelled = (label: string, input: HTMLInputElement | HTMLSelectElement, unit?: string, hint?: string) => {
    const f = field(label, input, { unit, hint });
    errorSlots.set(pathOfId(input.id), f.error);
    return f.wrap;
  };
  const check = (path: string, label: string) => {
    const input = bind({ path, kind: 'bool', input: h('input', { type: 'checkbox' }) });
    const err = h('div', { class: 'field-error', id: `${input.id}-err` });
    input.setAttribute('aria-describedby', err.id);
    errorSlots.set(path, err);
    return h('div', null, h('label', { class: 'check', for: input.id }, input, label), err);
  };

  // --- weights, bounds, pinned -----------------------------------------------------------
  const learnedCells = new Map<string, HTMLElement>();
  const pinnedBoxes = new Map<string, HTMLInputElement>();
  const weightRows = SOURCES.map((src) => {
    const cell = (path: string, label: string) => {
      const input = num(path, '0.05');
      input.setAttribute('aria-label', label);
      input.setAttribute('aria-describedby', `w-row-${src}-err`);
      return h('td', null, input);
    };
    const pin = h('input', { type: 'checkbox', id: `w-pinned-${src}`, 'aria-label': `pin ${src}` });
    pin.addEventListener('change', () => {
      const s = getDraft();
      if (!s) return;
      const set = new Set(s.pinned);
      if (pin.checked) set.add(src);
      else set.delete(src);
      s.pinned = SOURCES.filter((x) => set.has(x));
      onChange('pinned');
    });
    pinnedBoxes.set(src, pin);
    const err = h('td', { class: 'field-error', id: `w-row-${src}-err`, colspan: '6' });
    for (const p of ['weights', 'min_weights', 'max_weights']) errorSlots.set(`${p}.${src}`, err);
    const learned = h('td', { class: 'num muted' }, '–');
    learnedCells.set(src, learned);
    return [
      h(
        'tr',
        null,
        h('th', { scope: 'row' }, h('span', { class: 'swatch', style: { background: SOURCE_COLORS[src] } }), src),
        cell(`weights.${src}`, `${src} weight`),
        cell(`min_weights.${src}`, `${src} minimum weight`),
        cell(`max_weights.${src}`, `${src} maximum weight`),
        h('td', null, pin),
        learned,
      ),
      h('tr', { class: 'err-row', hidden: true }, err),
    ];
  });
  const pinnedErr = h('div', { class: 'field-error' });
  errorSlots.set('pinned', pinnedErr);
  const weightsTable = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'weights-table' },
      h('caption', { class: 'sr-only' }, 'Blend weights per source, their bounds for the learner, and pinning'),
      h(
        'thead',
        null,
        h('tr', null, h('th', null, 'source'), h('th', null, 'weight'), h('th', null, 'min'), h('th', null, 'max'), h('th', null, 'pinned'), h('th', { class: 'num' }, 'learned now')),
      ),
      h('tbody', null, weightRows),
    ),
    pinnedErr,
  );

  // --- the other sections ----------------------------------------------------------------
  const name = bind({ path: 'name', kind: 'text', input: h('input', { type: 'text', maxlength: '200' }) });
  const modeSelect = h(
    'select',
    { id: 'w-exploration-mode' },
    h('option', { value: 'none' }, 'none (always the best items)'),
    h('option', { value: 'epsilon' }, 'epsilon (random slot with probability ε)'),
    h('option', { value: 'thompson' }, 'thompson (weights drawn around the learned ones)'),
  );
  const param = h('input', { type: 'number', step: '0.01', id: 'w-exploration-param' });
  const paramField = field('ε (0–1)', param);
  modeSelect.addEventListener('change', () => {
    const s = getDraft();
    if (!s) return;
    const v = Number.isFinite(param.valueAsNumber) ? param.valueAsNumber : 0.1;
    s.exploration =
      modeSelect.value === 'epsilon' ? { mode: 'epsilon', epsilon: Math.min(1, v) } : modeSelect.value === 'thompson' ? { mode: 'thompson', scale: v } : { mode: 'none' };
    syncExploration(s);
    onChange('exploration.mode');
  });
  param.addEventListener('input', () => {
    const s = getDraft();
    if (!s) return;
    const x = s.exploration;
    if (x.mode === 'epsilon') x.epsilon = param.valueAsNumber;
    else if (x.mode === 'thompson') x.scale = param.valueAsNumber;
    onChange(`exploration.${x.mode === 'epsilon' ? 'epsilon' : 'scale'}`);
  });
  const modeField = field('Mode', modeSelect);
  errorSlots.set('exploration.mode', modeField.error);
  const syncExploration = (s: Strategy) => {
    const x = s.exploration;
    modeSelect.value = x.mode;
    paramField.wrap.hidden = x.mode === 'none';
    const label = paramField.wrap.querySelector('label')!;
    label.textContent = x.mode === 'epsilon' ? 'ε, share of random slots (0–1)' : 'Scale, spread of drawn weights (0–10)';
    param.value = x.mode === 'epsilon' ? String(x.epsilon) : x.mode === 'thompson' ? String(x.scale) : '';
  };
  errorSlots.set('exploration.epsilon', paramField.error);
  errorSlots.set('exploration.scale', paramField.error);

  const tags = (path: string) => bind({ path, kind: 'tags', input: h('input', { type: 'text', placeholder: 'comma-separated, e.g. sale, new' }) });

  const sections = h(
    'div',
    { class: 'editor-sections' },
    h('fieldset', null, h('legend', null, 'General'), labelled('Name', name, undefined, 'A label for people, at most 200 bytes.'), labelled('Candidates per source', num('candidates', '1', 'int'), 'items', '1–10,000, drawn before blending.')),
    h(
      'fieldset',
      null,
      h('legend', null, 'Learning'),
      check('learning.adaptive', 'Learn the blend weights online'),
      labelled('Learning rate (FTRL α)', num('learning.learning_rate', '0.1'), undefined, '0.0001–10'),
      labelled('Update every', num('learning.update_every', '1', 'int'), 'samples', '1–100,000'),
    ),
    h('fieldset', null, h('legend', null, 'Exploration'), modeField.wrap, paramField.wrap),
    h(
      'fieldset',
      null,
      h('legend', null, 'Filters'),
      check('filters.exclude_seen', 'Leave out items the user has seen'),
      labelled('Only items tagged', tags('filters.include_tags'), undefined, 'Empty: every item.'),
      labelled('Never items tagged', tags('filters.exclude_tags')),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Reward of feedback'),
      h('div', { class: 'hint' }, 'Business value of each feedback, −1,000–1,000; the learner maximises it.'),
      h('div', { class: 'compact-grid' }, (['click', 'cart', 'purchase', 'like', 'skip'] as const).map((k) => labelled(k, num(`reward.${k}`, '0.5')))),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Batching'),
      labelled('Max batch', num('batching.max_batch', '1', 'int'), 'requests', '1–4,096 (1 disables batching)'),
      labelled('Max queue delay', num('batching.max_queue_delay_us', '10', 'int'), 'µs', '0–1,000,000'),
    ),
  );

  const el = h('div', { class: 'editor' }, h('h3', null, 'Blend weights'), weightsTable, sections);

  function write(c: Control, v: unknown) {
    if (c.kind === 'bool') (c.input as HTMLInputElement).checked = !!v;
    else if (c.kind === 'tags') c.input.value = Array.isArray(v) ? v.join(', ') : '';
    else if (c.kind === 'num' || c.kind === 'int') c.input.value = typeof v === 'number' && Number.isFinite(v) ? String(v) : '';
    else c.input.value = v == null ? '' : String(v);
  }

  return {
    el,
    load(s) {
      for (const c of controls) write(c, getPath(s, c.path));
      for (const src of SOURCES) pinnedBoxes.get(src)!.checked = s.pinned.includes(src);
      syncExploration(s);
    },
    showErrors(errs) {
      const by = errorsByField(errs);
      const text = new Map<HTMLElement, string[]>([...errorSlots.values()].map((slot) => [slot, []]));
      const unplaced: string[] = [];
      for (const [path, msg] of by) {
        const slot = errorSlots.get(path);
        if (slot) text.get(slot)!.push(msg);
        else unplaced.push(msg);
      }
      for (const [slot, msgs] of text) {
        slot.textContent = msgs.join(' ');
        if (slot.parentElement?.classList.contains('err-row')) slot.parentElement.hidden = !msgs.length;
      }
      for (const c of controls) c.input.setAttribute('aria-invalid', String(by.has(c.path)));
      param.setAttribute('aria-invalid', String(by.has('exploration.epsilon') || by.has('exploration.scale')));
      return unplaced;
    },
    showLearned(w) {
      for (const src of SOURCES) learnedCells.get(src)!.textContent = w ? fmtWeight(w[src]) : '–';
    },
  };
}

function read(c: Control): unknown {
  const i = c.input as HTMLInputElement;
  switch (c.kind) {
    case 'bool':
      return i.checked;
    case 'num':
    case 'int':
      return i.value.trim() === '' ? NaN : i.valueAsNumber;
    case 'tags':
      return i.value
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean);
    default:
      return i.value;
  }
}

function pathOfId(id: string): string {
  return id.replace(/^w-/, '').replace(/-/g, '.');
}
