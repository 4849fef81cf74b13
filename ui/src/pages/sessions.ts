// The Sessions page: look a user up — their recent items, session state, the slate the
// engine would serve with each item's score by source, and the attention over their history
// (mean, and per head on demand) — and forget them (admin, typed confirmation). Beside it,
// find items by text (a description, or items like one of the user's recent items).

import type { Page, PageContext } from '../app-state';
import { EngineError, describe } from '../engine/errors';
import type { Explanation, SessionInfo } from '../engine/types';
import { fmtBytes, fmtInt } from '../format';
import { typedConfirm } from '../ui/dialog';
import { field, h, notice, replace } from '../ui/dom';
import { heatmap } from '../ui/heatmap';
import { barScale, sourceLegend } from '../ui/stackbar';
import { failureNotice } from '../ui/failure';
import { toast } from '../ui/toast';
import { slateList } from '../ui/slate';
import { itemFinder } from '../ui/item-finder';

/** How often the shown session's state is refreshed (public route, not audited). */
const SESSION_POLL_MS = 3000;

export function sessionsPage(ctx: PageContext): Page {
  const { engine } = ctx;
  const user = h('input', { type: 'text', id: 'session-user', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. u42' });
  const k = h('input', { type: 'number', id: 'session-k', min: '1', max: '100', value: '10' });
  const lookBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Look up');
  const forgetBtn = h('button', { type: 'button', class: 'btn btn-danger', disabled: true }, 'Forget user…');
  const heads = h('input', { type: 'checkbox', id: 'session-heads' });
  const sessionBox = h('div');
  const slateBox = h('div');
  const attentionBox = h('div');
  const moved = h('div', { class: 'status-line', role: 'status' });
  const finder = itemFinder(engine, { id: 'session-find' });

  let current: string | null = null;
  let session: SessionInfo | null = null;
  let explanation: Explanation | null = null;
  let explainedAt = 0;
  let poll: ReturnType<typeof setInterval> | null = null;
  let shown = false;

  const empty = () => {
    replace(sessionBox, notice('empty', 'No user selected — type a user id above.'));
    replace(slateBox, notice('empty', 'The slate and its score by source appear here.'));
    replace(attentionBox, notice('empty', 'The attention over the user’s history appears here.'));
  };
  empty();

  function renderSession(): void {
    const s = session;
    if (!s) return;
    replace(
      sessionBox,
      h(
        'dl',
        { class: 'kv' },
        h('dt', null, 'user'),
        h('dd', { class: 'mono' }, s.user),
        h('dt', null, 'interactions'),
        h('dd', null, fmtInt(s.interactions)),
        h('dt', null, 'model state'),
        h('dd', null, s.has_state ? `${fmtInt(s.state_len)} positions, ${fmtBytes(s.bytes)}` : 'none (cold user or no model)'),
      ),
      h('h3', { style: { marginTop: '10px' } }, `Recent items (${s.recent.length}, oldest first)`),
      s.recent.length
        ? h(
            'ol',
            { class: 'timeline' },
            s.recent.map((it, i) =>
              h(
                'li',
                null,
                h('span', { class: 'n' }, i + 1),
                it,
                ' ',
                h('button', { type: 'button', class: 'tag-action', title: `Find items whose text is like ${it}’s`, onclick: () => void finder.similarTo(it) }, 'similar'),
              ),
            ),
          )
        : notice('empty', 'No recent items: this user has no events yet.'),
    );
    if (explanation && s.interactions !== explainedAt) {
      moved.textContent = `The session moved on: ${s.interactions - explainedAt} new interaction(s) since the explanation — look up again to refresh it.`;
    } else moved.textContent = '';
  }

  function renderExplanation(): void {
    const x = explanation;
    if (!x) return;
    const rec = x.recommendation;
    const scale = barScale(rec.items, rec.weights);
    replace(
      slateBox,
      h('p', { class: 'muted' }, `Strategy v${rec.strategy_version}, model ${rec.model_version == null ? 'none' : `v${rec.model_version}`}${rec.fallback ? ` · fallback: ${String(rec.fallback)}` : ''}. Each segment is weight × source score; they sum to the item’s score.`),
      sourceLegend(),
      slateList(rec, scale),
    );
    if (!x.attention) {
      replace(attentionBox, notice('empty', 'No attention: the engine serves without a model, so there is nothing to show. Activate a model on the Models page.'));
      return;
    }
    if (!x.history.length) {
      replace(attentionBox, notice('empty', 'The model window is empty: this user has no history yet.'));
      return;
    }
    const rows = [{ label: 'mean', values: x.attention.mean }];
    if (heads.checked) x.attention.heads.forEach((v, i) => rows.push({ label: `head ${i + 1}`, values: v }));
    replace(attentionBox, heatmap(x.history, rows));
  }

  async function refreshSession(): Promise<void> {
    if (!current || !shown) return;
    try {
      session = await engine.user(current);
      renderSession();
    } catch {
      // The banner covers an unreachable engine; the next poll retries.
    }
  }

  async function lookUp(): Promise<void> {
    const id = user.value.trim();
    if (!id) {
      current = null;
      forgetBtn.disabled = true;
      empty();
      user.focus();
      return;
    }
    current = id;
    forgetBtn.disabled = false;
    const n = Math.max(1, Math.min(100, Math.round(k.valueAsNumber || 10)));
    replace(sessionBox, notice('loading', `Loading ${id}…`));
    replace(slateBox, notice('loading', 'Explaining the slate…'));
    replace(attentionBox, h('span'));
    try {
      session = await engine.user(id);
      renderSession();
    } catch (e) {
      replace(sessionBox, e instanceof EngineError && e.status === 404 ? notice('error', `No user “${id}” — check the id.`) : failureNotice(`${id} is not loaded`, e));
    }
    try {
      explanation = await engine.explain(id, n);
      explainedAt = session?.interactions ?? 0;
      renderExplanation();
      renderSession();
    } catch (e) {
      explanation = null;
      replace(slateBox, failureNotice(`${id}’s slate is not explained`, e));
      replace(attentionBox, h('span'));
    }
    if (poll) clearInterval(poll);
    poll = setInterval(() => void refreshSession(), SESSION_POLL_MS);
  }

  forgetBtn.addEventListener('click', async () => {
    const id = current;
    if (!id) return;
    const ok = await typedConfirm({
      title: `Forget ${id}?`,
      message: 'This deletes the user’s events, index entries and session snapshot for good. It cannot be undone.',
      expected: id,
      confirm: 'Forget user',
    });
    if (!ok) return;
    try {
      const f = await engine.forget(id);
      toast(`Forgot ${f.user}: ${fmtInt(f.events)} events, ${fmtInt(f.index_chunks)} index chunks${f.session_snapshot ? ', the session snapshot' : ''}.`);
      current = null;
      session = null;
      explanation = null;
      forgetBtn.disabled = true;
      if (poll) clearInterval(poll);
      empty();
    } catch (e) {
      toast(`Could not forget ${id}: ${describe(e)}`, 'error');
    }
  });
  heads.addEventListener('change', renderExplanation);

  const el = h(
    'section',
    { class: 'page page-sessions', 'aria-labelledby': 'sessions-h' },
    h('div', { class: 'page-head' }, h('h1', { id: 'sessions-h' }, 'Sessions')),
    h(
      'form',
      { class: 'toolbar', onsubmit: (e: Event) => (e.preventDefault(), void lookUp()) },
      field('User id', user).wrap,
      field('Slate size', k, { unit: 'items' }).wrap,
      lookBtn,
      forgetBtn,
    ),
    moved,
    h(
      'div',
      { class: 'cols-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'sess-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'sess-h' }, 'Session')), sessionBox),
      h('section', { class: 'panel', 'aria-labelledby': 'slate-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'slate-h' }, 'Slate, score by source')), slateBox),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'att-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'att-h' }, 'Attention over the history'), h('span', { class: 'spacer' }), h('label', { class: 'check', for: heads.id }, heads, 'Show each head')),
      attentionBox,
    ),
    h('section', { class: 'panel', 'aria-labelledby': 'find-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'find-h' }, 'Find items by text')), finder.el),
  );

  return {
    el,
    show() {
      shown = true;
      void refreshSession();
    },
    hide() {
      shown = false;
    },
  };
}
