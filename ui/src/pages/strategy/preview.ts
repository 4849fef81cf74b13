// Preview as a user: the slate under the live strategy and under the draft side by side
// (two `POST /v1/recommend/preview` calls), each item with its score and a bar by source,
// and what moved between them (↑n, ↓n, new, dropped).

import type { PageContext } from '../../app-state';
import type { Strategy } from '../../engine/types';
import { field, h, notice, replace } from '../../ui/dom';
import { failureNotice } from '../../ui/failure';
import { moves, slateList } from '../../ui/slate';
import { barScale, sourceLegend } from '../../ui/stackbar';

export function previewPanel(ctx: PageContext, draft: () => { strategy: Strategy; changed: boolean } | null): { el: HTMLElement; rerun(): void } {
  const { engine, app } = ctx;
  const user = h('input', { type: 'text', id: 'preview-user', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. u42' });
  const k = h('input', { type: 'number', id: 'preview-k', min: '1', max: '100', value: '10' });
  const run = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Preview');
  const out = h('div', null, notice('empty', 'No user selected — type a user id above to see their slate under the live strategy and under the draft.'));
  const form = h(
    'form',
    { class: 'toolbar', onsubmit: (e: Event) => (e.preventDefault(), void go()) },
    field('User id', user).wrap,
    field('Slate size', k, { unit: 'items' }).wrap,
    run,
  );
  let last = '';

  async function go(): Promise<void> {
    const id = user.value.trim();
    if (!id) {
      replace(out, notice('empty', 'No user selected — type a user id above.'));
      user.focus();
      return;
    }
    last = id;
    const n = Math.max(1, Math.min(100, Math.round(k.valueAsNumber || 10)));
    const d = draft();
    replace(out, notice('loading', `Scoring ${id}’s slate…`));
    try {
      const [live, drafted] = await Promise.all([
        engine.preview(id, n, {}),
        d?.changed ? engine.preview(id, n, { strategy: d.strategy }) : Promise.resolve(null),
      ]);
      const all = [...live.items, ...(drafted?.items ?? [])];
      const scale = barScale(all, live.weights);
      if (drafted) {
        const s2 = barScale(all, drafted.weights);
        scale.neg = Math.max(scale.neg, s2.neg);
        scale.pos = Math.max(scale.pos, s2.pos);
      }
      const mv = drafted ? moves(live.items.map((i) => i.item), drafted.items.map((i) => i.item)) : null;
      replace(
        out,
        sourceLegend(),
        h(
          'div',
          { class: 'cols-2' },
          h('div', null, h('h3', null, `Live v${live.strategy_version ?? app.live?.version ?? '?'}`), slateList(live, scale)),
          h(
            'div',
            null,
            h('h3', null, 'Draft'),
            drafted
              ? [
                  slateList(drafted, scale, mv!.moves),
                  mv!.dropped.length ? h('p', { class: 'muted' }, `Dropped from the live slate: ${mv!.dropped.join(', ')}`) : h('p', { class: 'muted' }, 'Nothing dropped.'),
                ]
              : notice('empty', 'The draft has no changes: it would serve the live slate. Edit a field to compare.'),
          ),
        ),
      );
    } catch (e) {
      replace(out, failureNotice(`${id}’s preview failed`, e));
    }
  }

  const el = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'preview-h' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'preview-h' }, 'Preview as a user'), h('span', { class: 'muted' }, 'Scores without recording anything (admin).')),
    form,
    out,
  );
  return { el, rerun: () => last && void go() };
}
