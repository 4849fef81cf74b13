// The Replay page: start a replay of the live log (time range, k, seed, strategies: live,
// the draft, past versions), follow its progress (polled every second and from `replay`
// stream events), then show its report and offer the HTML report for download.

import type { Page, PageContext } from '../../app-state';
import { cloneStrategy, diffStrategies } from '../../draft';
import { describe } from '../../engine/errors';
import type { ReplayJob, ReplayRequest, Strategy } from '../../engine/types';
import { fmtInt, fmtPct, fromUtcInput } from '../../format';
import { confirmDialog } from '../../ui/dialog';
import { download, field, h, notice, replace } from '../../ui/dom';
import { toast } from '../../ui/toast';
import { renderReport } from './report';

const POLL_MS = 1000;

interface Choice {
  label: string;
  strategy: () => Strategy | null;
}

/** The strategies a replay may compare; at least two, unless only the live one. */
export function checkChoice(picked: string[]): string | null {
  if (!picked.length) return 'Pick the strategies to replay: at least the live one.';
  if (picked.length === 1 && picked[0] !== 'live') return 'Compare at least two strategies (or replay the live one alone).';
  return null;
}

export function replayPage(ctx: PageContext): Page {
  const { engine, app, store } = ctx;
  const from = h('input', { type: 'datetime-local', step: '60' });
  const to = h('input', { type: 'datetime-local', step: '60' });
  const k = h('input', { type: 'number', min: '1', max: '100', value: '10' });
  const seed = h('input', { type: 'number', min: '0', step: '1', value: '42' });
  const choices = h('div', { class: 'form-grid' });
  const formError = h('div', { class: 'field-error', role: 'alert' });
  const startBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Start replay…');
  const jobBox = h('div', null, notice('empty', 'No replay yet — pick strategies above and start one. Replays run on the engine over its stored log; it keeps serving meanwhile.'));
  const openId = h('input', { type: 'number', min: '1', id: 'replay-open', style: { width: '90px' } });

  const boxes = new Map<string, { input: HTMLInputElement; choice: Choice }>();
  let jobId: number | null = null;
  let job: ReplayJob | null = null;
  let poll: ReturnType<typeof setInterval> | null = null;
  let report: { destroy(): void } | null = null;
  let reportFor: number | null = null;

  function renderChoices(): void {
    const was = new Map([...boxes].map(([k2, b]) => [k2, b.input.checked]));
    boxes.clear();
    const list: [string, Choice, boolean][] = [];
    const live = app.live;
    startBtn.disabled = !live;
    if (!live) {
      replace(choices, notice(store.down ? 'error' : 'loading', store.down ? 'The strategies are not loaded: the engine is unreachable — retrying every 2 s.' : 'Loading the strategies…'));
      return;
    }
    if (live) list.push(['live', { label: `Live (v${live.version})`, strategy: () => app.live?.strategy ?? null }, true]);
    const d = app.draft;
    const draftChanged = !!(d && live && diffStrategies(live.strategy, d.strategy).length);
    list.push(['draft', { label: draftChanged ? `Draft (from v${d!.baseVersion})` : 'Draft (no changes on the Strategy page)', strategy: () => app.draft?.strategy ?? null }, draftChanged]);
    for (const v of [...app.versions].sort((a, b) => b.version - a.version)) {
      if (v.version === live?.version) continue;
      list.push([`v${v.version}`, { label: `v${v.version}${v.message ? ` — ${v.message}` : ` (${v.note})`}`, strategy: () => v.strategy }, true]);
    }
    replace(
      choices,
      list.map(([key, choice, enabled]) => {
        const input = h('input', { type: 'checkbox', id: `replay-s-${key}`, disabled: !enabled, checked: enabled && (was.get(key) ?? key === 'live') });
        boxes.set(key, { input, choice });
        return h('label', { class: 'check', for: input.id }, input, choice.label);
      }),
    );
  }

  async function start(): Promise<void> {
    const picked = [...boxes].filter(([, b]) => b.input.checked).map(([key]) => key);
    const problem = checkChoice(picked);
    formError.textContent = problem ?? '';
    if (problem) return;
    const fromMs = fromUtcInput(from.value);
    const toMs = fromUtcInput(to.value);
    if (fromMs !== null && toMs !== null && fromMs >= toMs) {
      formError.textContent = 'The start of the time range must be before its end.';
      return;
    }
    const strategies: Strategy[] = [];
    for (const key of picked) {
      const s = boxes.get(key)!.choice.strategy();
      if (!s) continue;
      // Names tell the report's rows apart (several versions may share a name).
      const named = cloneStrategy(s);
      named.name = key === 'live' ? `live v${app.live?.version}` : key;
      strategies.push(named);
    }
    const req: ReplayRequest = { strategies, k: Math.round(k.valueAsNumber || 10), seed: Math.round(seed.valueAsNumber || 42) };
    if (fromMs !== null) req.from_ms = fromMs;
    if (toMs !== null) req.to_ms = toMs;
    const ok = await confirmDialog({
      title: 'Start a replay?',
      message: `Replays ${strategies.map((s) => s.name).join(', ')} over the stored log${fromMs || toMs ? ' in the chosen range' : ''} with k = ${req.k}. One replay runs at a time.`,
      confirm: 'Start replay',
    });
    if (!ok) return;
    try {
      const j = await engine.startReplay(req);
      toast(`Replay ${j.id} started.`);
      track(j.id, j);
    } catch (e) {
      toast(`Could not start the replay: ${describe(e)}`, 'error');
      formError.textContent = describe(e);
    }
  }

  function track(id: number, initial?: ReplayJob): void {
    jobId = id;
    job = initial ?? null;
    render();
    if (poll) clearInterval(poll);
    poll = setInterval(() => void fetchJob(), POLL_MS);
    void fetchJob();
  }

  async function fetchJob(): Promise<void> {
    if (jobId === null) return;
    try {
      job = await engine.replayJob(jobId);
      if (job.status !== 'running' && poll) {
        clearInterval(poll);
        poll = null;
      }
      render();
    } catch (e) {
      replace(jobBox, notice('error', `Could not load replay ${jobId}: ${describe(e)} Retrying every second.`));
    }
  }

  function render(): void {
    if (jobId === null) return;
    const j = job;
    if (!j || j.status === 'running') {
      const done = j?.done ?? 0;
      const total = j?.total ?? 0;
      const share = total > 0 ? done / total : 0;
      report?.destroy();
      report = null;
      reportFor = null;
      replace(
        jobBox,
        h('p', null, `Replay ${jobId}: running — ${fmtInt(done)} of ${total ? fmtInt(total) : '?'} events (${fmtPct(share, 0)}).`),
        h('div', { class: 'progress', role: 'progressbar', 'aria-label': `Replay ${jobId} progress`, 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(share * 100)) }, h('div', { style: { width: `${(share * 100).toFixed(1)}%` } })),
      );
      return;
    }
    if (j.status === 'failed') {
      replace(jobBox, notice('error', `Replay ${jobId} failed: ${j.error ?? 'no reason given'}. Check the time range and try again.`));
      return;
    }
    if (!j.report) {
      replace(jobBox, notice('empty', `Replay ${jobId} is ${j.status}, without a report.`));
      return;
    }
    if (reportFor === jobId) return;
    report?.destroy();
    const dl = h('button', { type: 'button', class: 'btn btn-small' }, 'Download HTML report');
    const id = jobId;
    dl.addEventListener('click', async () => {
      try {
        const link = await engine.replayReport(id);
        if (link.kind === 'url') {
          const a = h('a', { href: link.url, download: `replay-${id}.html`, hidden: true });
          document.body.append(a);
          a.click();
          a.remove();
        } else download(link.blob, `replay-${id}.html`);
      } catch (e) {
        toast(`Could not get the report: ${describe(e)}`, 'error');
      }
    });
    const r = renderReport(j.report, dl);
    report = r;
    reportFor = jobId;
    replace(jobBox, h('h3', null, `Replay ${jobId}: ${j.status}`), r.el);
  }

  store.on('event', (e) => {
    if (e?.event !== 'replay') return;
    const d = e.data;
    if (jobId === null || d.id > jobId) {
      if (d.status === 'running') track(d.id, d);
      return;
    }
    if (d.id !== jobId) return;
    if (d.status === 'running') {
      job = { ...(job ?? d), ...d };
      render();
    } else void fetchJob();
  });
  app.on('versions', renderChoices);
  app.on('strategy', renderChoices);
  app.on('draft', renderChoices);
  store.on('connection', () => !app.live && renderChoices());
  renderChoices();

  const el = h(
    'section',
    { class: 'page page-replay', 'aria-labelledby': 'replay-h' },
    h('div', { class: 'page-head' }, h('h1', { id: 'replay-h' }, 'Replay')),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'replay-form-h' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'replay-form-h' }, 'New replay')),
      h(
        'form',
        { onsubmit: (e: Event) => (e.preventDefault(), void start()), novalidate: true },
        h(
          'div',
          { class: 'form-grid' },
          field('From (UTC, optional)', from, { hint: 'Empty: from the log’s start.' }).wrap,
          field('To (UTC, optional)', to, { hint: 'Empty: to the log’s end.' }).wrap,
          field('Slate size k', k, { unit: 'items' }).wrap,
          field('Seed', seed).wrap,
        ),
        h('fieldset', { style: { border: 'none', padding: '0', margin: '12px 0 0' } }, h('legend', null, h('h3', null, 'Strategies to compare')), choices),
        formError,
        h('div', { class: 'toolbar', style: { marginTop: '10px' } }, startBtn),
      ),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'replay-job-h' },
      h(
        'div',
        { class: 'panel-head' },
        h('h2', { id: 'replay-job-h' }, 'Progress and report'),
        h('span', { class: 'spacer' }),
        h(
          'form',
          { class: 'toolbar', onsubmit: (e: Event) => (e.preventDefault(), openId.valueAsNumber > 0 && track(openId.valueAsNumber)) },
          h('label', { for: openId.id, class: 'muted' }, 'Open replay #'),
          openId,
          h('button', { type: 'submit', class: 'btn btn-small' }, 'Open'),
        ),
      ),
      jobBox,
    ),
  );

  return {
    el,
    show() {
      renderChoices();
    },
    hide() {},
  };
}
