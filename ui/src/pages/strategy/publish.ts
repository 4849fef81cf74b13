// The publish dialog: a required message and an optional guard (limits on p99 latency and
// reward per recommendation, checked every interval for a duration), turned into the
// `PUT /v1/strategy` request with the draft's base version.

import type { Guard } from '../../engine/types';
import { openDialog } from '../../ui/dialog';
import { field, h } from '../../ui/dom';

export interface PublishChoice {
  message: string;
  guard?: Guard;
}

/** Defaults of a guard (docs/console-api.md). */
const DEFAULTS = { interval_s: 10, breach_intervals: 3, min_samples: 100, baseline_s: 60, duration_s: 600 };

export async function publishDialog(changes: number, baseVersion: number): Promise<PublishChoice | null> {
  const message = h('input', { type: 'text', required: true, maxlength: '500', placeholder: 'Why this change, in one line' });
  const useGuard = h('input', { type: 'checkbox', id: 'pub-guard' });
  const num = (value: number | '', step = '1') => h('input', { type: 'number', step, min: '0', value: String(value) });
  const p99 = num(10, '0.1');
  const reward = num(80, '1');
  const interval = num(DEFAULTS.interval_s);
  const breaches = num(DEFAULTS.breach_intervals);
  const samples = num(DEFAULTS.min_samples);
  const baseline = num(DEFAULTS.baseline_s);
  const duration = num(DEFAULTS.duration_s);
  const webhook = h('input', { type: 'url', placeholder: 'https://hooks.example.com/attune (optional)' });
  const guardFields = h(
    'div',
    { class: 'form-grid', hidden: true },
    field('Max p99 latency', p99, { unit: 'ms', hint: 'Empty: not watched.' }).wrap,
    field('Min reward per rec', reward, { unit: '% of baseline', hint: 'Empty: not watched.' }).wrap,
    field('Check every', interval, { unit: 's' }).wrap,
    field('Breaches to revert', breaches, { unit: 'intervals in a row' }).wrap,
    field('Min samples', samples, { unit: 'recs / interval' }).wrap,
    field('Baseline', baseline, { unit: 's before publish' }).wrap,
    field('Watch for', duration, { unit: 's' }).wrap,
    field('Webhook', webhook, { wide: true, hint: 'Called when the guard reverts.' }).wrap,
  );
  useGuard.addEventListener('change', () => (guardFields.hidden = !useGuard.checked));

  const value = (i: HTMLInputElement) => (i.value.trim() === '' ? undefined : i.valueAsNumber);
  const validate = (): string | null => {
    if (!message.value.trim()) return 'A message is required: say why, for the history and the audit log.';
    if (!useGuard.checked) return null;
    if (value(p99) === undefined && value(reward) === undefined) return 'A guard needs at least one limit (p99 or reward).';
    for (const [i, name] of [[p99, 'Max p99'], [reward, 'Min reward']] as const) {
      const v = value(i);
      if (v !== undefined && !(v > 0)) return `${name} must be above 0.`;
    }
    for (const [i, name] of [[interval, 'Check every'], [breaches, 'Breaches'], [duration, 'Watch for']] as const) {
      const v = value(i);
      if (!(v !== undefined && Number.isInteger(v) && v >= 1)) return `${name} must be a whole number of at least 1.`;
    }
    for (const [i, name] of [[samples, 'Min samples'], [baseline, 'Baseline']] as const) {
      const v = value(i);
      if (!(v !== undefined && Number.isInteger(v) && v >= 0)) return `${name} must be a whole number.`;
    }
    if (webhook.value && !/^https?:\/\/\S+$/.test(webhook.value.trim())) return 'The webhook must be an http(s) URL.';
    return null;
  };

  const ok = await openDialog<boolean>({
    title: `Publish ${changes} change${changes === 1 ? '' : 's'}`,
    wide: true,
    body: [
      h('p', null, `The draft becomes a new live version, based on v${baseVersion}. It applies to the next request.`),
      field('Message', message, { wide: true }).wrap,
      h('label', { class: 'check', for: useGuard.id }, useGuard, 'Guard this publish: revert automatically if latency or reward breaks a limit'),
      guardFields,
    ],
    actions: [
      { label: 'Cancel', value: false },
      { label: 'Publish', value: true, kind: 'primary', submit: true },
    ],
    validate,
  });
  if (!ok) return null;
  const out: PublishChoice = { message: message.value.trim() };
  if (useGuard.checked) {
    const r = value(reward);
    out.guard = {
      max_p99_ms: value(p99),
      min_reward_per_rec: r === undefined ? undefined : r / 100,
      interval_s: value(interval)!,
      breach_intervals: value(breaches)!,
      min_samples: value(samples)!,
      baseline_s: value(baseline)!,
      duration_s: value(duration)!,
      webhook: webhook.value.trim() || undefined,
    };
  }
  return out;
}
