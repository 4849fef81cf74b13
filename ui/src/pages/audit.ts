// The Audit page: who did what and when (newest first), live from `audit` stream events,
// filtered by action and actor, paged back with `before`; each entry's detail folds out as
// JSON, or as a field diff when it holds two strategies.

import type { Page, PageContext } from '../app-state';
import { diffStrategies, showValue } from '../draft';
import { EngineError, describe } from '../engine/errors';
import { AUDIT_ACTIONS, type AuditEntry, type Strategy } from '../engine/types';
import { fmtUtc } from '../format';
import { field, h, notice, replace } from '../ui/dom';
import { failureText } from '../ui/failure';

const PAGE = 100;

/** A field diff when the detail carries a before and an after strategy, else null. */
function detailDiff(d: unknown): { path: string; old: unknown; new: unknown }[] | null {
  if (!d || typeof d !== 'object') return null;
  const o = d as Record<string, unknown>;
  const pairs: [unknown, unknown][] = [
    [o.before, o.after],
    [o.old, o.new],
    [o.from, o.to],
  ];
  for (const [a, b] of pairs) {
    if (a && b && typeof a === 'object' && typeof b === 'object' && 'weights' in a && 'weights' in b) {
      return diffStrategies(a as Strategy, b as Strategy);
    }
  }
  return null;
}

function detailCell(e: AuditEntry): HTMLElement {
  if (e.detail === null || e.detail === undefined || (typeof e.detail === 'object' && !Object.keys(e.detail as object).length)) {
    return h('span', { class: 'muted' }, '—');
  }
  const diff = detailDiff(e.detail);
  const summary = typeof e.detail === 'object' ? Object.keys(e.detail as object).slice(0, 4).join(', ') : String(e.detail).slice(0, 40);
  return h(
    'details',
    null,
    h('summary', null, diff ? `${diff.length} field change${diff.length === 1 ? '' : 's'}` : summary),
    diff
      ? h('ul', null, diff.map((c) => h('li', null, h('code', null, c.path), `: ${showValue(c.old)} → ${showValue(c.new)}`)))
      : null,
    h('pre', null, JSON.stringify(e.detail, null, 2)),
  );
}

export function auditPage(ctx: PageContext): Page {
  const { engine, store } = ctx;
  const action = h('select', { id: 'audit-action' }, h('option', { value: '' }, 'all actions'), AUDIT_ACTIONS.map((a) => h('option', { value: a }, a)));
  const actor = h('input', { type: 'search', id: 'audit-actor', placeholder: 'any actor' });
  const body = h('div');
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load older entries');
  const count = h('span', { class: 'muted', 'aria-live': 'polite' });
  let entries: AuditEntry[] = [];
  let loaded = false;
  let exhausted = false;
  let shown = false;
  let error: unknown = null;

  const matches = (e: AuditEntry) =>
    (!action.value || e.action === action.value) && (!actor.value.trim() || (e.actor ?? '').toLowerCase().includes(actor.value.trim().toLowerCase()));

  function render(): void {
    if (error) {
      const needToken = error instanceof EngineError && (error.status === 401 || error.status === 403);
      const retry = h('button', { type: 'button', class: 'btn btn-primary' }, needToken ? 'Enter token…' : 'Retry');
      retry.addEventListener('click', async () => {
        if (needToken && engine.signIn && !(await engine.signIn())) return;
        void reload();
      });
      const noToken = error instanceof EngineError && error.code === 'no_token';
      replace(
        body,
        noToken
          ? notice('empty', 'The audit log needs a read or admin token — enter one to see who changed what.', retry)
          : notice('error', needToken ? `${describe(error)} The audit log needs a read or admin token.` : failureText('The audit log is not loaded', error), retry),
      );
      more.hidden = true;
      return;
    }
    if (!loaded) return replace(body, notice('loading', 'Loading the audit log…'));
    const rows = entries.filter(matches);
    count.textContent = `${rows.length} of ${entries.length} loaded entries`;
    more.hidden = exhausted;
    if (!rows.length) {
      replace(body, notice('empty', entries.length ? 'No entry matches the filters — clear them or load older entries.' : 'The audit log is empty: nothing has been changed or looked up yet.'));
      return;
    }
    replace(
      body,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          null,
          h('caption', { class: 'sr-only' }, 'Audit entries, newest first'),
          h('thead', null, h('tr', null, ['#', 'time (UTC)', 'actor', 'action', 'target', 'detail'].map((t) => h('th', null, t)))),
          h(
            'tbody',
            null,
            rows.map((e) =>
              h(
                'tr',
                null,
                h('td', { class: 'num' }, e.seq),
                h('td', { class: 'mono' }, fmtUtc(e.ts_ms)),
                h('td', null, e.actor ?? '—'),
                h('td', null, h('code', null, e.action)),
                h('td', { class: 'mono' }, e.target ?? '—'),
                h('td', null, detailCell(e)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function reload(): Promise<void> {
    error = null;
    if (!engine.hasToken()) {
      // Ask only when the operator chooses to, not on navigating here.
      error = new EngineError(401, 'no_token', 'No token given yet.');
      render();
      return;
    }
    try {
      entries = await engine.audit(PAGE);
      exhausted = entries.length < PAGE;
      loaded = true;
    } catch (e) {
      error = e;
    }
    render();
  }

  async function older(): Promise<void> {
    const last = entries[entries.length - 1];
    if (!last) return;
    try {
      const page = await engine.audit(PAGE, last.seq);
      entries = [...entries, ...page.filter((e) => e.seq < last.seq)];
      exhausted = page.length < PAGE;
    } catch (e) {
      error = e;
    }
    render();
  }

  more.addEventListener('click', () => void older());
  store.on('connection', () => {
    if (shown && store.connection.state === 'connected' && error instanceof EngineError && error.unreachable) void reload();
  });
  action.addEventListener('change', render);
  actor.addEventListener('input', render);
  store.on('event', (e) => {
    if (e?.event !== 'audit' || !loaded) return;
    if (entries.some((x) => x.seq === e.data.seq)) return;
    entries = [e.data, ...entries].sort((a, b) => b.seq - a.seq);
    if (shown) render();
  });

  return {
    el: h(
      'section',
      { class: 'page page-audit', 'aria-labelledby': 'audit-h' },
      h('div', { class: 'page-head' }, h('h1', { id: 'audit-h' }, 'Audit'), count),
      h('div', { class: 'toolbar' }, field('Action', action).wrap, field('Actor', actor).wrap),
      h('section', { class: 'panel', 'aria-label': 'Audit entries' }, body, h('div', { class: 'toolbar', style: { marginTop: '10px' } }, more)),
    ),
    show() {
      shown = true;
      if (!loaded || error) void reload();
      else render();
    },
    hide() {
      shown = false;
    },
  };
}
