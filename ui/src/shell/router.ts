// Hash routing (`#/live`, `#/strategy`, …): the nav links, and one page shown at a time.
// Pages are built on first visit and kept, so hidden pages cost nothing but memory.

import type { Page, PageContext } from '../app-state';
import { h } from '../ui/dom';

export interface Route {
  path: string;
  label: string;
  make: (ctx: PageContext) => Page;
}

export function router(ctx: PageContext, routes: Route[], main: HTMLElement): HTMLElement {
  const built = new Map<string, Page>();
  let current: Page | null = null;

  const links = routes.map((r) => h('a', { href: `#/${r.path}`, class: 'nav-link' }, r.label));
  const nav = h('nav', { class: 'app-nav', 'aria-label': 'Pages' }, links);

  const go = () => {
    const path = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0] || routes[0].path;
    const route = routes.find((r) => r.path === path) ?? routes[0];
    let page = built.get(route.path);
    if (!page) {
      page = route.make(ctx);
      built.set(route.path, page);
      main.append(page.el);
    }
    if (page !== current) {
      current?.hide();
      if (current) current.el.hidden = true;
      page.el.hidden = false;
      current = page;
      page.show();
    }
    links.forEach((a, i) => {
      if (routes[i] === route) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
    document.title = `${route.label} · Attune`;
  };

  window.addEventListener('hashchange', go);
  queueMicrotask(go);
  return nav;
}
