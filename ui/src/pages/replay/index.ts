// placeholder
import type { Page, PageContext } from '../../app-state';
import { h } from '../../ui/dom';
export function replayPage(_ctx: PageContext): Page {
  return { el: h('section', { class: 'page' }, h('h1', null, 'replay')), show() {}, hide() {} };
}
