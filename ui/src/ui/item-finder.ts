// Find items by text: a free-text query (or "items like this one") answered by the engine's
// text encoder (`GET /v1/items/search`, `/v1/items/{id}/similar`), listed with title, tags
// and cosine. The Sessions page uses it to look at the catalogue beside a user; the Strategy
// page adds tag actions that put a found item's tag into the draft's filters.

import { EngineError } from '../engine/errors';
import type { Engine, TextMatches } from '../engine/types';
import { failureNotice } from './failure';
import { field, h, notice, replace } from './dom';

export interface TagAction {
  /** Button text, e.g. `only` or `never`. */
  label: string;
  /** Tooltip and accessible name, given the tag. */
  title: (tag: string) => string;
  run: (tag: string) => void;
}

export interface FinderOptions {
  /** Prefix of the element ids (two finders may share a page). */
  id: string;
  /** Actions offered beside each tag of a found item. */
  tagActions?: TagAction[];
}

export interface ItemFinder {
  el: HTMLElement;
  /** Lists the items whose text is nearest `item`'s. */
  similarTo(item: string): Promise<void>;
}

/** Results per query unless the operator asks for more. */
const DEFAULT_K = 10;

export function itemFinder(engine: Engine, opts: FinderOptions): ItemFinder {
  const q = h('input', { type: 'search', id: `${opts.id}-q`, autocomplete: 'off', placeholder: 'e.g. space adventure for kids', maxlength: '1000', style: { width: '340px' } });
  const k = h('input', { type: 'number', id: `${opts.id}-k`, min: '1', max: '100', value: String(DEFAULT_K) });
  const findBtn = h('button', { type: 'submit', class: 'btn' }, 'Find');
  const results = h('div', { class: 'finder-results', 'aria-live': 'polite' });
  replace(results, notice('empty', 'Type a description to find items by their text (title, tags, attributes).'));
  let seq = 0;

  const size = () => Math.max(1, Math.min(100, Math.round(k.valueAsNumber || DEFAULT_K)));

  function offNotice(what: string, e: unknown): HTMLElement {
    if (e instanceof EngineError && e.status === 503) {
      return notice('error', `${what}: ${e.message} — start the engine with a sentence encoder (scripts/fetch-encoder.sh, then attune serve --encoder DIR).`);
    }
    if (e instanceof EngineError && e.status === 404) return notice('error', `${what}: ${e.message}`);
    return failureNotice(what, e);
  }

  function render(heading: string, found: TextMatches): void {
    if (!found.items.length) {
      replace(results, notice('empty', `${heading}: nothing found — no item has a text vector yet.`));
      return;
    }
    const rows = found.items.map((m, i) =>
      h(
        'tr',
        { 'data-item': m.item },
        h('td', { class: 'num' }, i + 1),
        h('td', { class: 'mono' }, m.item),
        h('td', null, m.title || h('span', { class: 'muted' }, '(no title)')),
        h(
          'td',
          { class: 'finder-tags' },
          m.tags.map((t) =>
            h(
              'span',
              { class: 'tag', 'data-tag': t },
              t,
              (opts.tagActions ?? []).map((a) =>
                h('button', { type: 'button', class: 'tag-action', title: a.title(t), 'aria-label': a.title(t), onclick: () => a.run(t) }, a.label),
              ),
            ),
          ),
        ),
        h('td', { class: 'num' }, m.score.toFixed(3)),
        h('td', null, h('button', { type: 'button', class: 'btn btn-small', title: `Items whose text is like ${m.item}’s`, onclick: () => void similarTo(m.item) }, 'Similar')),
      ),
    );
    replace(
      results,
      h('p', { class: 'muted finder-heading' }, `${heading} · cosine of the text vectors · ${found.encoder}`),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'finder-table' },
          h('thead', null, h('tr', null, h('th', { class: 'num' }, '#'), h('th', null, 'item'), h('th', null, 'title'), h('th', null, 'tags'), h('th', { class: 'num' }, 'cosine'), h('th', null, ''))),
          h('tbody', null, rows),
        ),
      ),
    );
  }

  /** Asks the engine; the newest question's answer (or failure) is the one shown. */
  async function ask(loading: string, call: () => Promise<TextMatches>, heading: string, failure: string): Promise<void> {
    const mine = ++seq;
    replace(results, notice('loading', loading));
    try {
      const found = await call();
      if (mine === seq) render(heading, found);
    } catch (e) {
      if (mine === seq) replace(results, offNotice(failure, e));
    }
  }

  async function search(): Promise<void> {
    const text = q.value.trim();
    if (!text) {
      replace(results, notice('empty', 'Type a description first.'));
      q.focus();
      return;
    }
    await ask(`Finding items like “${text}”…`, () => engine.searchItems(text, size()), `Nearest to “${text}”`, 'Could not search by text');
  }

  function similarTo(item: string): Promise<void> {
    return ask(`Finding items like ${item}…`, () => engine.similarItems(item, size()), `Items like ${item}`, `Could not find items like ${item}`);
  }

  const el = h(
    'div',
    { class: 'item-finder' },
    h(
      'form',
      { class: 'toolbar', onsubmit: (e: Event) => (e.preventDefault(), void search()) },
      field('Description', q).wrap,
      field('Show', k, { unit: 'items' }).wrap,
      findBtn,
    ),
    results,
  );
  return { el, similarTo };
}
