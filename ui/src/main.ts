// Boot: picks the engine (Tauri or HTTP), builds the shell (header, connection banner, nav,
// pages, toasts), loads the engine's state and history, and feeds the live stream into the
// stores — reloading what was missed whenever the stream comes back.

import './styles.css';
import { AppState, type PageContext } from './app-state';
import { createEngine } from './engine';
import { describe } from './engine/errors';
import { auditPage } from './pages/audit';
import { livePage } from './pages/live';
import { modelsPage } from './pages/models';
import { replayPage } from './pages/replay';
import { sessionsPage } from './pages/sessions';
import { strategyPage } from './pages/strategy';
import { banner } from './shell/banner';
import { header } from './shell/header';
import { router, type Route } from './shell/router';
import { LIVE_CAPACITY, LiveStore } from './store';
import { promptToken } from './ui/dialog';
import { h } from './ui/dom';
import { toastRegion } from './ui/toast';

const ROUTES: Route[] = [
  { path: 'live', label: 'Live', make: livePage },
  { path: 'strategy', label: 'Strategy', make: strategyPage },
  { path: 'sessions', label: 'Sessions', make: sessionsPage },
  { path: 'replay', label: 'Replay', make: replayPage },
  { path: 'models', label: 'Models', make: modelsPage },
  { path: 'audit', label: 'Audit', make: auditPage },
];

function boot(root: HTMLElement): void {
  const app = new AppState();
  const store = new LiveStore();
  // Once a token is given (the modal of an admin or read action), the header names its
  // actor: whoami is asked again once the keeper holds the token.
  const engine = createEngine(async (reason) => {
    const token = await promptToken(reason);
    if (token) {
      setTimeout(() => {
        engine
          .whoami()
          .then((w) => {
            app.whoami = w;
            app.emit('whoami');
          })
          .catch(() => undefined);
      }, 0);
    }
    return token;
  });
  const ctx: PageContext = { engine, store, app };

  let loaded = false;
  let loading = false;
  /** The newest point before the stream dropped: the history after it is the gap to fill. */
  let gapFrom: number | null = null;
  /** Engine state and the history the buffer is missing (all of it at start, a gap later). */
  const load = async () => {
    if (loading) return;
    loading = true;
    try {
      app.connection = await engine.connectionInfo();
      app.emit('info');
      await app.refresh(engine);
      const missing = loaded && gapFrom !== null ? Date.now() / 1000 - gapFrom + 20 : LIVE_CAPACITY;
      const hist = await engine.history(Math.min(LIVE_CAPACITY, Math.max(20, Math.ceil(missing))));
      store.addHistory(hist.points, hist.markers);
      loaded = true;
      gapFrom = null;
    } catch (e) {
      console.warn('engine state not loaded:', describe(e));
    } finally {
      loading = false;
    }
  };

  const main = h('main', { id: 'main', tabindex: '-1' });
  const nav = router(ctx, ROUTES, main);
  root.append(
    h('a', { href: '#main', class: 'skip-link', onclick: (e: Event) => (e.preventDefault(), main.focus()) }, 'Skip to content'),
    h(
      'div',
      { class: 'sticky-top' },
      header(ctx, () => {
        store.ring.clear();
        loaded = false;
        void load();
      }),
      banner(store),
    ),
    nav,
    main,
  );
  document.body.append(toastRegion());

  let wasDown = false;
  engine.subscribe((e) => {
    store.ingest(e);
    app.ingest(e);
    if (e.event === 'connection' || e.event === 'stats') {
      if (store.down) {
        if (!wasDown && loaded) gapFrom = store.ring.lastTs();
        wasDown = true;
      }
      else if (store.connection.state === 'connected' && (wasDown || !loaded)) {
        wasDown = false;
        void load();
      }
    }
  });
  setInterval(() => store.checkStale(), 1000);
  void load();
}

const root = document.getElementById('app');
if (root) boot(root);
