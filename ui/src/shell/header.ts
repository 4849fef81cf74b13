// The header, always in view: which engine (URL, environment badge), what it serves (live
// strategy version, active model), the link state, who you are, and in the desktop app a
// "Connect…" dialog.

import type { AppState, PageContext } from '../app-state';
import { describe } from '../engine/errors';
import { fmtDuration } from '../format';
import { openDialog } from '../ui/dialog';
import { field, h, replace } from '../ui/dom';
import { toast } from '../ui/toast';

/** The label of the serving model: `model v2 · ckpt` or `no model`. */
export function modelLabel(app: AppState): string {
  const m = app.info?.model;
  if (!m) return app.info ? 'no model' : 'model –';
  const name = m.name ?? m.dir?.split(/[\\/]/).filter(Boolean).pop() ?? '';
  return `model v${m.version}${name ? ` · ${name}` : ''}`;
}

function envClass(env: string, demo: boolean): string {
  const e = env.toLowerCase();
  if (demo || e === 'demo' || e === 'local-demo') return 'env env-demo';
  if (/prod/.test(e)) return 'env env-prod';
  if (/stag|pre/.test(e)) return 'env env-staging';
  return 'env env-other';
}

export function header(ctx: PageContext, onReconnect: () => void): HTMLElement {
  const { engine, store, app } = ctx;
  const url = h('code', { class: 'engine-url' }, '…');
  const env = h('span', { class: 'env env-demo', hidden: true }, '');
  const version = h('a', { href: '#/strategy', class: 'hdr-item' }, 'strategy –');
  const model = h('a', { href: '#/models', class: 'hdr-item' }, '–');
  const uptime = h('span', { class: 'hdr-item muted' });
  const link = h('span', { class: 'link link-connecting', 'aria-live': 'polite' }, 'connecting…');
  const who = h('span', { class: 'hdr-item who' });
  const actions = h('span', { class: 'hdr-actions' });

  const renderInfo = () => {
    const i = app.info;
    env.hidden = !i;
    uptime.hidden = !i;
    if (i) {
      env.className = envClass(i.environment, i.demo);
      env.textContent = i.demo && i.environment !== 'demo' ? `${i.environment} (demo)` : i.environment;
      uptime.textContent = `up ${fmtDuration(i.uptime_s)}`;
    }
    version.textContent = app.live ? `strategy v${app.live.version}` : i ? `strategy v${i.strategy_version}` : 'strategy –';
    model.textContent = modelLabel(app);
    if (app.connection) url.textContent = app.connection.url;
  };
  const renderWho = () => {
    const w = app.whoami;
    replace(
      who,
      w?.actor ? `${w.actor} · ${w.role}` : engine.kind === 'tauri' ? '' : 'no token',
    );
  };
  const renderLink = () => {
    const c = store.connection;
    const text =
      c.state === 'connected' ? 'connected' : c.state === 'reconnecting' ? 'reconnecting…' : 'connecting…';
    link.className = `link link-${c.state}`;
    if (link.textContent !== text) link.textContent = text;
  };

  if (engine.signIn) {
    actions.append(
      h(
        'button',
        {
          type: 'button',
          class: 'btn btn-small',
          onclick: async () => {
            if (await engine.signIn!()) {
              app.whoami = await engine.whoami().catch(() => app.whoami);
              app.emit('whoami');
              toast(app.whoami?.actor ? `Signed in as ${app.whoami.actor} (${app.whoami.role}).` : 'Token kept for this tab.');
            }
          },
        },
        'Enter token…',
      ),
    );
  }
  if (engine.connect) {
    actions.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => connectDialog(ctx, onReconnect) }, 'Connect…'));
  }

  store.on('stats', () => {
    const up = store.latest?.uptime_s;
    if (app.info && typeof up === 'number') {
      const text = `up ${fmtDuration(up)}`;
      if (uptime.textContent !== text) uptime.textContent = text;
    }
  });
  app.on('info', renderInfo);
  app.on('strategy', renderInfo);
  app.on('whoami', renderWho);
  store.on('connection', renderLink);
  renderInfo();
  renderWho();
  renderLink();

  return h(
    'header',
    { class: 'app-header' },
    h('div', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '◆'), 'Attune'),
    h('div', { class: 'hdr-engine' }, url, env),
    h('div', { class: 'hdr-status' }, version, model, uptime, link, who, actions),
  );
}

/** Desktop app: switch to another engine (`invoke('connect', {url, tokenFile})`). */
async function connectDialog(ctx: PageContext, onReconnect: () => void): Promise<void> {
  const { engine, app } = ctx;
  const urlInput = h('input', { type: 'url', value: app.connection?.url ?? 'http://127.0.0.1:8080', required: true });
  const tokenInput = h('input', { type: 'text', placeholder: '/path/to/tokens', spellcheck: 'false' });
  const ok = await openDialog<boolean>({
    title: 'Connect to an engine',
    body: [
      field('Engine URL', urlInput, { wide: true }).wrap,
      field('Token file (optional)', tokenInput, { wide: true, hint: 'Read by the app, never by this page.' }).wrap,
    ],
    actions: [
      { label: 'Cancel', value: false },
      { label: 'Connect', value: true, kind: 'primary', submit: true },
    ],
    validate: () => (/^https?:\/\/.+/.test(urlInput.value.trim()) ? null : 'Enter an http:// or https:// URL.'),
  });
  if (!ok || !engine.connect) return;
  try {
    app.connection = await engine.connect(urlInput.value.trim(), tokenInput.value.trim() || null);
    app.emit('info');
    toast(`Connected to ${app.connection.url}.`);
    onReconnect();
  } catch (e) {
    toast(`Could not connect: ${describe(e)}`, 'error');
  }
}
