// The version history: every version (newest first) with its time, author, message and
// note; pick two to compare; roll back to one (a new version, confirmed); or start a draft
// from one.

import type { PageContext } from '../../app-state';
import { describe } from '../../engine/errors';
import type { StrategyVersion } from '../../engine/types';
import { fmtUtc } from '../../format';
import { openDialog } from '../../ui/dialog';
import { field, h, keepFocus, notice, replace } from '../../ui/dom';
import { toast } from '../../ui/toast';
import { diffTable } from './diff-view';

export function historyPanel(ctx: PageContext, onDraftFrom: (v: StrategyVersion) => void): { el: HTMLElement } {
  const { engine, app } = ctx;
  const picked = new Set<number>();
  const table = h('div', { class: 'table-wrap' });
  const compare = h('div');
  const heading = h('h2', { id: 'history-h' }, 'Version history');

  const render = () => {
    const versions = [...app.versions].sort((a, b) => b.version - a.version);
    const liveV = app.live?.version;
    if (!versions.length) {
      replace(table, notice('empty', 'No versions loaded yet — they appear once the engine answers.'));
      return;
    }
    const rows = versions.map((v) => {
      const box = h('input', { type: 'checkbox', checked: picked.has(v.version), 'aria-label': `compare v${v.version}` });
      box.addEventListener('change', () => {
        if (box.checked) picked.add(v.version);
        else picked.delete(v.version);
        while (picked.size > 2) picked.delete(picked.values().next().value as number);
        render();
      });
      const rollback = h('button', { type: 'button', class: 'btn btn-small' }, 'Roll back…');
      rollback.addEventListener('click', () => void doRollback(v));
      const draftFrom = h('button', { type: 'button', class: 'btn btn-small', title: `Start a draft with v${v.version}'s fields` }, 'Draft from');
      draftFrom.addEventListener('click', () => onDraftFrom(v));
      return h(
        'tr',
        { class: picked.has(v.version) ? 'selected' : undefined },
        h('td', null, box),
        h('td', { class: 'num' }, `v${v.version}`, v.version === liveV ? h('span', { class: 'tag tag-ok', style: { marginLeft: '6px' } }, 'live') : null),
        h('td', { class: 'mono' }, fmtUtc(v.created_ms)),
        h('td', null, v.author ?? h('span', { class: 'muted' }, '—')),
        h('td', null, v.message ?? h('span', { class: 'muted' }, '—')),
        h('td', null, v.note),
        h('td', null, h('span', { style: { display: 'inline-flex', gap: '6px' } }, v.version === liveV ? null : rollback, draftFrom)),
      );
    });
    replace(
      table,
      h(
        'table',
        null,
        h('caption', { class: 'sr-only' }, 'Strategy versions, newest first'),
        h('thead', null, h('tr', null, h('th', null, 'compare'), h('th', { class: 'num' }, 'version'), h('th', null, 'time (UTC)'), h('th', null, 'author'), h('th', null, 'message'), h('th', null, 'note'), h('th', null, 'actions'))),
        h('tbody', null, rows),
      ),
    );
    const [a, b] = [...picked].sort((x, y) => x - y).map((n) => app.versions.find((v) => v.version === n));
    if (a && b) {
      replace(compare, h('h3', null, `v${a.version} → v${b.version}`), diffTable(a.strategy, b.strategy, [`v${a.version}`, `v${b.version}`], 'These two versions are identical.'));
    } else {
      replace(compare, h('p', { class: 'muted' }, 'Tick two versions to compare them.'));
    }
  };

  async function doRollback(v: StrategyVersion): Promise<void> {
    const base = app.live?.version;
    if (base === undefined) return;
    const message = h('input', { type: 'text', value: `roll back to v${v.version}`, required: true });
    const ok = await openDialog<boolean>({
      title: `Roll back to v${v.version}?`,
      body: [
        h('p', null, `This publishes a new version equal to v${v.version} (the live v${base} stays in the history). It applies to the next request.`),
        diffTable(app.live!.strategy, v.strategy, [`live v${base}`, `v${v.version}`], 'v' + v.version + ' equals the live strategy: the rollback only adds a version.'),
        field('Message', message, { wide: true }).wrap,
      ],
      wide: true,
      actions: [
        { label: 'Cancel', value: false },
        { label: `Roll back to v${v.version}`, value: true, kind: 'danger', submit: true },
      ],
      validate: () => (message.value.trim() ? null : 'A message is required.'),
    });
    if (!ok) return;
    try {
      const nv = await engine.rollback(v.version, message.value.trim(), base);
      app.applyVersion(nv);
      // The table was drawn anew under the focused button: go on from the heading.
      keepFocus(heading);
      toast(`Rolled back: v${nv.version} now serves v${v.version}'s strategy.`);
    } catch (e) {
      toast(`Rollback failed: ${describe(e)}`, 'error');
    }
  }

  app.on('versions', render);
  app.on('strategy', render);
  render();

  return {
    el: h(
      'section',
      { class: 'panel', 'aria-labelledby': 'history-h' },
      h('div', { class: 'panel-head' }, heading),
      table,
      compare,
    ),
  };
}
