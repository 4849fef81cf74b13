// A tiny element builder (no framework): `h('button', {class: 'x', onclick}, 'Text')` for
// HTML and `svg('rect', {...})` for SVG, plus a few helpers pages share.

export type Child = Node | string | number | null | undefined | false | Child[];
export type Attrs = Record<string, unknown>;

function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'indeterminate', 'hidden', 'open']);

function apply(el: Element, attrs: Attrs | undefined): void {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) {
      if (PROPS.has(k)) (el as unknown as Record<string, unknown>)[k] = false;
      continue;
    }
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (PROPS.has(k)) {
      (el as unknown as Record<string, unknown>)[k] = v;
    } else if (k === 'text') {
      el.textContent = String(v);
    } else if (k === 'style' && typeof v === 'object') {
      Object.assign((el as HTMLElement).style, v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  apply(el, attrs ?? undefined);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs ?? undefined);
  append(el, children);
  return el;
}

/** Replaces an element's children. */
export function replace(el: Element, ...children: Child[]): void {
  el.textContent = '';
  append(el, children);
}

let ids = 0;
/** A fresh element id (labels point at their inputs). */
export function uid(prefix = 'f'): string {
  ids++;
  return `${prefix}-${ids}`;
}

/** A labelled input: `<label for>` text, the control, an optional hint and error slot. */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  opts: { hint?: string; unit?: string; wide?: boolean } = {},
): { wrap: HTMLElement; error: HTMLElement } {
  if (!control.id) control.id = uid();
  const error = h('div', { class: 'field-error', id: `${control.id}-err`, 'aria-live': 'polite' });
  control.setAttribute('aria-describedby', error.id);
  const wrap = h(
    'div',
    { class: `field${opts.wide ? ' wide' : ''}` },
    h('label', { for: control.id }, label),
    h('div', { class: 'control' }, control, opts.unit ? h('span', { class: 'unit' }, opts.unit) : null),
    opts.hint ? h('div', { class: 'hint' }, opts.hint) : null,
    error,
  );
  return { wrap, error };
}

/** A message block for empty, loading and error states. */
export function notice(kind: 'empty' | 'error' | 'loading' | 'info', text: string, ...extra: Child[]): HTMLElement {
  return h(
    'div',
    { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : undefined },
    h('p', null, text),
    ...extra,
  );
}

/** Starts a file download of a Blob (export, a report in the desktop app). */
export function download(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Moves focus to `to` when it was lost (to <body>, or to an element disabled or removed
 * under it: a button that disables itself while it works, a table re-rendered), so a
 * keyboard user goes on from where the action was rather than from the top of the page.
 */
export function keepFocus(to: HTMLElement): void {
  const a = document.activeElement as HTMLElement | null;
  if (!a || a === document.body || !a.isConnected || (a as HTMLButtonElement).disabled) {
    if (!to.hasAttribute('tabindex')) to.setAttribute('tabindex', '-1');
    to.focus();
  }
}
