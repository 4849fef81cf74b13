// The guard panel: while a guarded publish is watched, each limit's current value against
// its limit, the breaches, the time left, and an Abort button; afterwards, how it ended.

import type { PageContext } from '../../app-state';
import { describe } from '../../engine/errors';
import type { GuardLimit, GuardStatus } from '../../engine/types';
import { fmtDuration, fmtInt, fmtMs, fmtNum, fmtUtc } from '../../format';
import { confirmDialog } from '../../ui/dialog';
import { h, notice, replace } from '../../ui/dom';
import { failureNotice } from '../../ui/failure';
import { toast } from '../../ui/toast';

const STATE_TEXT: Record<string, [string, string]> = {
  watching: ['watching', 'tag-warn'],
  passed: ['passed', 'tag-ok'],
  reverted: ['reverted', 'tag-err'],
  aborted: ['aborted', 'tag'],
};

function fmtLimit(l: GuardLimit, v: number | null): string {
  if (v === null || v === undefined) return '–';
  return l.metric === 'p99_ms' ? fmtMs(v) : `${fmtNum(v)} reward/rec`;
}

export function guardPanel(ctx: PageContext): { el: HTMLElement; refresh(): Promise<void> } {
  const { engine, store } = ctx;
  const body = h('div');
  const el = h('section', { class: 'panel', 'aria-labelledby': 'guard-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'guard-h' }, 'Guard')), body);
  let status: GuardStatus | null = null;

  const render = () => {
    const g = status;
    if (!g) return replace(body, notice('loading', 'Loading the guard’s state…'));
    if (g.state === 'none') {
      return replace(body, notice('empty', 'No guard has run. Publish with a guard to have p99 latency and reward per recommendation watched after a change, and the change reverted if they break their limits.'));
    }
    const [label, cls] = STATE_TEXT[g.state] ?? [g.state, 'tag'];
    const abort = h('button', { type: 'button', class: 'btn btn-danger btn-small' }, 'Abort guard…');
    abort.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: 'Abort the guard?',
        message: `v${g.version} stays live, unwatched: nothing will revert it automatically.`,
        confirm: 'Abort guard',
        danger: true,
      });
      if (!ok) return;
      try {
        status = await engine.abortGuard();
        render();
        toast(`Guard on v${g.version} aborted; v${g.version} stays live.`);
      } catch (e) {
        toast(`Could not abort the guard: ${describe(e)}`, 'error');
      }
    });
    replace(
      body,
      h(
        'div',
        { class: 'panel-head' },
        h('span', { class: `tag ${cls}` }, label),
        h('span', null, `v${g.version ?? '?'} (from v${g.based_on ?? '?'})`),
        g.state === 'watching' ? h('span', null, `${fmtDuration(g.time_left_s)} left`) : null,
        h('span', { class: 'muted' }, `since ${fmtUtc(g.started_ms)}`),
        h('span', { class: 'spacer' }),
        g.state === 'watching' ? abort : null,
      ),
      g.reason ? h('p', null, g.state === 'reverted' ? `Reverted to v${g.reverted_to}: ${g.reason}` : g.reason) : null,
      g.limits?.length
        ? h(
            'div',
            { class: 'table-wrap' },
            h(
              'table',
              { class: 'limits' },
              h('caption', { class: 'sr-only' }, 'Guard limits'),
              h('thead', null, h('tr', null, ['metric', 'current', 'limit', 'samples', 'breaches'].map((t, i) => h('th', { class: i ? 'num' : undefined }, t)))),
              h(
                'tbody',
                null,
                g.limits.map((l) =>
                  h(
                    'tr',
                    null,
                    h('td', null, l.metric === 'p99_ms' ? 'p99 latency (max)' : 'reward per rec (min)'),
                    h('td', { class: `num${l.breached ? ' breached' : ''}` }, fmtLimit(l, l.current), l.breached ? ' ⚠' : ''),
                    h('td', { class: 'num' }, fmtLimit(l, l.limit)),
                    h('td', { class: 'num' }, fmtInt(l.samples)),
                    h('td', { class: 'num' }, `${l.breaches} of ${g.guard?.breach_intervals ?? '?'}`),
                  ),
                ),
              ),
            ),
          )
        : null,
      g.baseline_reward_per_rec != null ? h('p', { class: 'muted' }, `Baseline reward per rec: ${fmtNum(g.baseline_reward_per_rec)}`) : null,
    );
  };

  store.on('event', (e) => {
    if (e?.event === 'guard') {
      status = e.data;
      render();
    }
  });
  render();

  return {
    el,
    async refresh() {
      try {
        status = await engine.guardStatus();
        render();
      } catch (e) {
        replace(body, failureNotice('The guard’s state is not loaded', e));
      }
    },
  };
}
