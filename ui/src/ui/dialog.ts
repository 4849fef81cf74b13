// Modal dialogs: focus stays inside (Tab wraps), Escape cancels, Enter submits, the page
// behind is inert, focus returns where it was. Confirmations, the token prompt and the
// type-the-name confirmation are built on `openDialog`.

import { h, uid, type Child } from './dom';

export interface DialogAction<T> {
  label: string;
  value: T;
  kind?: 'primary' | 'danger' | 'plain';
  /** The action Enter triggers (a submit button). */
  submit?: boolean;
}

export interface DialogOptions<T> {
  title: string;
  body: Child;
  actions: DialogAction<T>[];
  /** Called before a submit action resolves; a message blocks it and is shown. */
  validate?: () => string | null | Promise<string | null>;
  /** The element focused first (default: the first input, else the first button). */
  focus?: HTMLElement;
  wide?: boolean;
}

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

let open = 0;

export function openDialog<T>(opts: DialogOptions<T>): Promise<T | null> {
  return new Promise((resolve) => {
    const before = document.activeElement as HTMLElement | null;
    const app = document.getElementById('app');
    const titleId = uid('dlg');
    const error = h('div', { class: 'dialog-error', role: 'alert' });
    const buttons = opts.actions.map((a) =>
      h(
        'button',
        {
          type: a.submit ? 'submit' : 'button',
          class: `btn ${a.kind === 'primary' ? 'btn-primary' : a.kind === 'danger' ? 'btn-danger' : ''}`,
          onclick: a.submit ? undefined : () => close(a.value),
        },
        a.label,
      ),
    );
    const form = h(
      'form',
      { class: `dialog${opts.wide ? ' dialog-wide' : ''}`, role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': titleId, novalidate: true },
      h('h2', { id: titleId }, opts.title),
      h('div', { class: 'dialog-body' }, opts.body),
      error,
      h('div', { class: 'dialog-actions' }, buttons),
    );
    const backdrop = h('div', { class: 'backdrop' }, form);

    const submitAction = opts.actions.find((a) => a.submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!submitAction) return;
      const problem = opts.validate ? await opts.validate() : null;
      if (problem) {
        error.textContent = problem;
        return;
      }
      close(submitAction.value);
    });

    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        close(null);
      } else if (e.key === 'Tab') {
        const items = [...form.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((x) => x.offsetParent !== null || x === document.activeElement);
        if (!items.length) return;
        const first = items[0];
        const last = items[items.length - 1];
        if (e.shiftKey && (document.activeElement === first || !form.contains(document.activeElement))) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && (document.activeElement === last || !form.contains(document.activeElement))) {
          e.preventDefault();
          first.focus();
        }
      }
    };
    backdrop.addEventListener('keydown', onKey);
    backdrop.addEventListener('mousedown', (e) => {
      if (e.target === backdrop) close(null);
    });

    let done = false;
    function close(v: T | null) {
      if (done) return;
      done = true;
      backdrop.remove();
      open--;
      if (open === 0) app?.removeAttribute('inert');
      before?.focus?.();
      resolve(v);
    }

    open++;
    app?.setAttribute('inert', '');
    document.body.append(backdrop);
    const first = opts.focus ?? form.querySelector<HTMLElement>('input, select, textarea') ?? buttons.find((b) => b.type === 'submit') ?? buttons[0];
    first?.focus();
  });
}

/** Yes / no. */
export async function confirmDialog(o: { title: string; message: Child; confirm: string; danger?: boolean }): Promise<boolean> {
  const v = await openDialog<boolean>({
    title: o.title,
    body: typeof o.message === 'string' ? h('p', null, o.message) : o.message,
    actions: [
      { label: 'Cancel', value: false },
      { label: o.confirm, value: true, kind: o.danger ? 'danger' : 'primary', submit: true },
    ],
  });
  return v === true;
}

/** The token prompt (web console): a password field, kept only in memory by the caller. */
export async function promptToken(reason: string): Promise<string | null> {
  const input = h('input', { type: 'password', id: uid('tok'), autocomplete: 'off', spellcheck: 'false', required: true });
  const v = await openDialog<string>({
    title: 'Engine token',
    body: [
      h('p', null, reason),
      h('p', { class: 'muted' }, 'The token stays in this tab’s memory only and is forgotten when you close or reload it.'),
      h('div', { class: 'field wide' }, h('label', { for: input.id }, 'Token'), input),
    ],
    actions: [
      { label: 'Cancel', value: '' },
      { label: 'Use token', value: 'ok', kind: 'primary', submit: true },
    ],
    validate: () => (input.value.trim() ? null : 'Enter a token, or cancel.'),
  });
  return v === 'ok' ? input.value.trim() : null;
}

/** A destructive action confirmed by typing a name (e.g. the user id to forget). */
export async function typedConfirm(o: { title: string; message: Child; expected: string; confirm: string }): Promise<boolean> {
  const input = h('input', { type: 'text', id: uid('typed'), autocomplete: 'off', spellcheck: 'false' });
  const v = await openDialog<boolean>({
    title: o.title,
    body: [
      typeof o.message === 'string' ? h('p', null, o.message) : o.message,
      h('div', { class: 'field wide' }, h('label', { for: input.id }, `Type ${o.expected} to confirm`), input),
    ],
    actions: [
      { label: 'Cancel', value: false },
      { label: o.confirm, value: true, kind: 'danger', submit: true },
    ],
    validate: () => (input.value === o.expected ? null : `Type “${o.expected}” exactly to confirm.`),
  });
  return v === true;
}
