// The connection banner (role="alert"): shown while the live stream is down, saying what is
// happening and that it retries on its own; the page stays usable meanwhile.

import { fmtDuration } from '../format';
import type { LiveStore } from '../store';
import { h } from '../ui/dom';

export function banner(store: LiveStore): HTMLElement {
  const text = h('span');
  const el = h('div', { class: 'banner', role: 'alert', hidden: true }, text);

  const render = () => {
    const c = store.connection;
    const down = store.down || store.shuttingDown;
    if (el.hidden !== !down) el.hidden = !down;
    if (!down) return;
    // The web console backs off 0.5 s, 1 s, then 2 s; the desktop app retries on its own.
    const retrying = c.retryMs !== null ? 'retrying every 2 s' : 'retrying automatically';
    const since = store.lastStatsAt ? ` Last figures ${fmtDuration((Date.now() - store.lastStatsAt) / 1000)} ago.` : '';
    const msg = store.shuttingDown && !store.down
      ? 'The engine is shutting down — the console will reconnect when it is back.'
      : `The engine is unreachable (${c.reason ?? 'no answer'}) — ${retrying}.${since} Nothing to do: this page resumes on its own.`;
    if (text.textContent !== msg) text.textContent = msg;
  };
  store.on('connection', render);
  setInterval(render, 1000);
  render();
  return el;
}
