// placeholder
import type { Page, PageContext } from '../app-state';
import { h } from '../ui/dom';
export function sessionsPage(_ctx: PageContext): Page {
  return { el: h('section', { class: 'page' }, h('h1', null, 'sessions')), show() {}, hide() {} };
}
