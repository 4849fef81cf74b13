// Toasts: the outcome of every admin action, in a polite live region (errors assertive),
// dismissed after a while or with their close button.

import { h } from './dom';

let region: HTMLElement | null = null;

/** The container; the shell mounts it once. */
export function toastRegion(): HTMLElement {
  region ??= h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
  return region;
}

export function toast(message: string, kind: 'ok' | 'error' | 'info' = 'ok'): void {
  const r = toastRegion();
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, '×');
  const t = h(
    'div',
    { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : undefined },
    h('span', null, message),
    close,
  );
  const remove = () => t.remove();
  close.addEventListener('click', remove);
  r.append(t);
  while (r.childElementCount > 5) r.firstElementChild?.remove();
  setTimeout(remove, kind === 'error' ? 12_000 : 6_000);
}
