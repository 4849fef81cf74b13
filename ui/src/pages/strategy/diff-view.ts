// The diff of two strategies as a table of changed fields (path, old → new), used for
// draft vs live and for comparing two versions from the history.

import { diffStrategies, showValue } from '../../draft';
import type { Strategy } from '../../engine/types';
import { h } from '../../ui/dom';

export function diffTable(from: Strategy, to: Strategy, labels: [string, string], empty: string): HTMLElement {
  const changes = diffStrategies(from, to);
  if (!changes.length) return h('p', { class: 'notice notice-empty' }, empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'diff-table' },
      h('caption', { class: 'sr-only' }, `${changes.length} changed fields, ${labels[0]} to ${labels[1]}`),
      h('thead', null, h('tr', null, h('th', null, 'field'), h('th', null, labels[0]), h('th', { 'aria-hidden': 'true' }), h('th', null, labels[1]))),
      h(
        'tbody',
        null,
        changes.map((c) =>
          h(
            'tr',
            null,
            h('td', null, h('code', null, c.path)),
            h('td', { class: 'old' }, showValue(c.old)),
            h('td', { 'aria-hidden': 'true' }, '→'),
            h('td', { class: 'new' }, showValue(c.new)),
          ),
        ),
      ),
    ),
  );
}
