// placeholder
import type { Page, PageContext } from '../../app-state';
import { h } from '../../ui/dom';
export function strategyPage(_ctx: PageContext): Page {
  return { el: h('section', { class: 'page' }, h('h1', null, 'strategy')), show() {}, hide() {} };
}
