// A slate as a list (rank, item, score, bar by source) and what moved between two slates
// (↑n, ↓n, new, dropped); shared by the strategy preview and the Sessions page.

import type { Recommendation } from '../engine/types';
import { fmtWeight } from '../format';
import { h, notice } from './dom';
import { stackBar, type BarScale } from './stackbar';

export type Move = { kind: 'up' | 'down'; by: number } | { kind: 'new' } | { kind: 'same' };

/** Where each item of `after` went compared with `before`, and what `after` dropped. */
export function moves(before: string[], after: string[]): { moves: Move[]; dropped: string[] } {
  const was = new Map(before.map((it, i) => [it, i]));
  const now = new Set(after);
  return {
    moves: after.map((it, i) => {
      const j = was.get(it);
      if (j === undefined) return { kind: 'new' };
      if (j === i) return { kind: 'same' };
      return j > i ? { kind: 'up', by: j - i } : { kind: 'down', by: i - j };
    }),
    dropped: before.filter((it) => !now.has(it)),
  };
}

function moveTag(m: Move | undefined): HTMLElement {
  if (!m || m.kind === 'same') return h('span', { class: 'moved' });
  if (m.kind === 'new') return h('span', { class: 'moved new' }, 'new');
  return h('span', { class: `moved ${m.kind}`, 'aria-label': `${m.kind} ${m.by}` }, `${m.kind === 'up' ? '↑' : '↓'}${m.by}`);
}

/** A slate as a list: rank, item, score, bar by source, and (optionally) its move. */
export function slateList(rec: Recommendation, scale: BarScale, mv?: Move[]): HTMLElement {
  if (!rec.items.length) return notice('empty', 'An empty slate: no candidate passed the filters.');
  return h(
    'ol',
    { class: 'slate' },
    rec.items.map((it, i) =>
      h(
        'li',
        null,
        h('span', { class: 'rank' }, i + 1),
        h('span', { class: 'item', title: it.item }, it.item, it.explored ? h('span', { class: 'muted' }, ' (explored)') : null),
        h('span', { class: 'score' }, fmtWeight(it.score)),
        stackBar(it, rec.weights, scale),
        mv ? moveTag(mv[i]) : h('span'),
      ),
    ),
  );
}

