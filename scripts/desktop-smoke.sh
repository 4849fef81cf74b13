#!/usr/bin/env bash
# Desktop smoke test of attune-panel: builds the app, opens its real window under Xvfb and
# drives it over W3C WebDriver (tauri-driver + WebKitWebDriver), then checks what a person
# would: the header says "connected", the Live page's recommendations/s KPI shows a number
# above 0 that moves, and a strategy published through the page's own IPC (`api_call`)
# raises the live version (the `{strategy, message, base_version}` envelope; a bare
# Strategy, with a note, where an engine does not serve the envelope yet). It also checks
# that a path outside the API is refused, that the page's CSP blocks loads from the engine,
# and that SIGTERM (the window-close path) stops the local engine gracefully. Screenshots
# go to target/ui-shots/ (desktop-live.png from WebDriver, desktop-root.png of the display).
#
# Needs: cargo, node (>= 18, for fetch), Xvfb, xauth, WebKitWebDriver (webkit2gtk-driver),
# ImageMagick's `import`. Installs tauri-driver 2.1.0 with cargo when it is missing.
#
# Settings (environment):
#   SMOKE_TIMEOUT    seconds to wait for the window to connect and show figures [240]
#   SMOKE_BUILD_UI   1: `npm run build` in ui/ first (keeps an existing ui/dist if the
#                    build fails); 0: use ui/dist as it is [1]
#   SMOKE_SKIP_BUILD 1: do not run `cargo build -p attune-panel` [0]
#   SMOKE_DISPLAY    X display number [99]
#   SMOKE_PORT       tauri-driver port (the native driver gets SMOKE_PORT+1) [4444]
#   SMOKE_DATA       XDG_DATA_HOME for the app (its demo store) [target/desktop-smoke/data]
#   SMOKE_DISABLE_DMABUF 1: WEBKIT_DISABLE_DMABUF_RENDERER=1 (if the window is blank) [0]
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
APP=$ROOT/target/debug/attune-panel
SHOTS=$ROOT/target/ui-shots
LOGS=$ROOT/target/desktop-smoke
TIMEOUT=${SMOKE_TIMEOUT:-240}
DISPLAY_NUM=${SMOKE_DISPLAY:-99}
PORT=${SMOKE_PORT:-4444}
NATIVE_PORT=$((PORT + 1))
DATA=${SMOKE_DATA:-$LOGS/data}

say() { echo "desktop-smoke: $*" >&2; }
fail() {
  say "FAIL: $*"
  say "logs: $LOGS/{xvfb,driver}.log"
  exit 1
}

mkdir -p "$SHOTS" "$LOGS" "$DATA"

XVFB_PID=
DRIVER_PID=
cleanup() {
  local rc=$?
  # tauri-driver runs in its own session: its process group holds WebKitWebDriver and the
  # app, so one signal to the group ends all three.
  if [[ -n $DRIVER_PID ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    kill -TERM -- "-$DRIVER_PID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$DRIVER_PID" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$DRIVER_PID" 2>/dev/null || true
  fi
  if [[ -n $XVFB_PID ]]; then
    kill "$XVFB_PID" 2>/dev/null || true
    wait "$XVFB_PID" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in cargo node Xvfb WebKitWebDriver import setsid curl pgrep; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install xvfb xauth webkit2gtk-driver imagemagick nodejs curl)"
done

# --- build ------------------------------------------------------------------------------
if [[ ${SMOKE_BUILD_UI:-1} == 1 && -f ui/package.json ]]; then
  say "building the UI (ui/dist)"
  if ! (cd ui && npm run build >"$LOGS/ui-build.log" 2>&1); then
    if [[ -f ui/dist/index.html ]]; then
      say "WARNING: the UI build failed (see $LOGS/ui-build.log); using the existing ui/dist"
    else
      fail "the UI build failed and there is no ui/dist (see $LOGS/ui-build.log)"
    fi
  fi
fi
[[ -f ui/dist/index.html ]] || fail "ui/dist/index.html is missing: build the UI first (cd ui && npm run build)"
if [[ ${SMOKE_SKIP_BUILD:-0} != 1 ]]; then
  say "cargo build -p attune-panel"
  cargo build -p attune-panel || fail "cargo build -p attune-panel failed"
fi
[[ -x $APP ]] || fail "$APP is missing"

if ! command -v tauri-driver >/dev/null; then
  say "installing tauri-driver 2.1.0"
  cargo install tauri-driver --version 2.1.0 --locked || fail "cannot install tauri-driver"
fi

# --- display and driver -----------------------------------------------------------------
if [[ -e /tmp/.X11-unix/X$DISPLAY_NUM ]]; then
  fail "display :$DISPLAY_NUM is taken (set SMOKE_DISPLAY)"
fi
Xvfb ":$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$LOGS/xvfb.log" 2>&1 &
XVFB_PID=$!
for _ in $(seq 50); do
  [[ -e /tmp/.X11-unix/X$DISPLAY_NUM ]] && break
  kill -0 "$XVFB_PID" 2>/dev/null || fail "Xvfb exited (see $LOGS/xvfb.log)"
  sleep 0.2
done
[[ -e /tmp/.X11-unix/X$DISPLAY_NUM ]] || fail "Xvfb did not start"
export DISPLAY=:$DISPLAY_NUM
export XDG_DATA_HOME=$DATA
# WebKit's DMA-BUF renderer can leave a window blank on some setups; off when asked.
if [[ ${SMOKE_DISABLE_DMABUF:-0} == 1 ]]; then export WEBKIT_DISABLE_DMABUF_RENDERER=1; fi
export RUST_LOG=${RUST_LOG:-attune_panel=info,attune=warn}

setsid tauri-driver --port "$PORT" --native-port "$NATIVE_PORT" \
  --native-driver "$(command -v WebKitWebDriver)" >"$LOGS/driver.log" 2>&1 &
DRIVER_PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/status" >/dev/null 2>&1 && break
  kill -0 "$DRIVER_PID" 2>/dev/null || fail "tauri-driver exited (see $LOGS/driver.log)"
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/status" >/dev/null 2>&1 || fail "tauri-driver does not answer on :$PORT"

# --- drive the window -------------------------------------------------------------------
say "driving $APP (timeout ${TIMEOUT}s; demo store under $DATA)"
SESSION_FILE=$LOGS/session
rm -f "$SESSION_FILE"
export SMOKE_APP=$APP SMOKE_SHOTS=$SHOTS SMOKE_WD="http://127.0.0.1:$PORT" SMOKE_TIMEOUT=$TIMEOUT
export SMOKE_SESSION_FILE=$SESSION_FILE
node --input-type=module - <<'EOF' || fail "the window checks failed (above)"
// The WebDriver half: W3C WebDriver over HTTP with fetch, no browser downloads.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const WD = process.env.SMOKE_WD;
const APP = process.env.SMOKE_APP;
const SHOTS = process.env.SMOKE_SHOTS;
const TIMEOUT_MS = Number(process.env.SMOKE_TIMEOUT) * 1000;
const log = (...a) => console.error('desktop-smoke:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const notes = [];

async function wd(method, path, body) {
  const r = await fetch(WD + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok || j?.value?.error) {
    throw new Error(`${method} ${path}: HTTP ${r.status} ${JSON.stringify(j?.value ?? j).slice(0, 400)}`);
  }
  return j.value;
}

let session = null;
const exec = (script, args = []) => wd('POST', `/session/${session}/execute/sync`, { script, args });
const execAsync = (script, args = []) => wd('POST', `/session/${session}/execute/async`, { script, args });

/** What the page shows: the header's link state and the recommendations/s KPI. */
const LOOK = `
  const link = document.querySelector('.app-header .link, .link');
  const kpis = [...document.querySelectorAll('.kpi')];
  const rec = kpis.find((k) => /recommend/i.test(k.getAttribute('aria-label') || k.textContent || ''));
  const header = document.querySelector('header');
  return {
    hash: location.hash,
    title: document.title,
    link: link ? link.textContent.trim() : null,
    header: header ? header.innerText.replace(/\\s+/g, ' ').slice(0, 300) : null,
    rps: rec ? (rec.querySelector('.kpi-value') || rec).textContent.trim() : null,
    tauri: typeof window.__TAURI_INTERNALS__ === 'object',
    body: document.body ? document.body.innerText.replace(/\\s+/g, ' ').slice(0, 300) : '',
  };`;

const number = (text) => {
  const m = /-?[0-9][0-9,]*(\.[0-9]+)?/.exec(text ?? '');
  return m ? Number(m[0].replace(/,/g, '')) : NaN;
};

async function until(what, check, ms = TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await exec(LOOK).catch((e) => ({ error: e.message }));
    if (check(last)) return last;
    await sleep(1000);
  }
  throw new Error(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}; the page showed ${JSON.stringify(last)}`);
}

async function main() {
  log('creating the WebDriver session (starts the app and its local engine)');
  const created = await wd('POST', '/session', {
    capabilities: { alwaysMatch: { 'tauri:options': { application: APP } } },
  });
  session = created.sessionId;
  await wd('POST', `/session/${session}/timeouts`, { script: 60000 });
  const first = await until('the page to load with Tauri IPC', (s) => s && s.tauri && s.body !== undefined);
  if (/Placeholder: the console/.test(first.body)) {
    throw new Error('ui/dist is the placeholder page, not the console: build ui/ (npm run build) and rerun');
  }

  const connected = await until('the header to say "connected"', (s) => s?.link === 'connected' || (s?.link == null && /\bconnected\b/.test(s?.header ?? '') && !/disconnected/.test(s?.header ?? '')));
  log(`header: ${connected.header}`);

  if (!/^#\/live/.test(connected.hash)) {
    await exec("location.hash = '#/live';");
  }
  const live = await until('the Live page to show recommendations/s above 0', (s) => number(s?.rps) > 0);
  // Ten seconds of figures: the KPI must stay above 0 and move (and the charts fill in
  // for the screenshot).
  const seen = [number(live.rps)];
  for (let i = 0; i < 10; i++) {
    await sleep(1000);
    seen.push(number((await exec(LOOK)).rps));
  }
  if (!seen.every((v) => v > 0)) throw new Error(`recommendations/s fell to 0 or vanished: ${seen.join(', ')}`);
  if (new Set(seen).size < 2) throw new Error(`recommendations/s did not change over ${seen.length} s: ${seen.join(', ')}`);
  log(`recommendations/s KPI over ${seen.length} s: ${seen.join(', ')}`);

  const png = await wd('GET', `/session/${session}/screenshot`);
  writeFileSync(`${SHOTS}/desktop-live.png`, Buffer.from(png, 'base64'));
  execFileSync('import', ['-window', 'root', `${SHOTS}/desktop-root.png`], { stdio: 'inherit' });
  log(`screenshots: ${SHOTS}/desktop-live.png, ${SHOTS}/desktop-root.png`);

  // A strategy publish through the page's own IPC, as the Strategy page does it.
  const trip = await execAsync(`
    const done = arguments[arguments.length - 1];
    (async () => {
      const invoke = window.__TAURI_INTERNALS__.invoke;
      const call = (method, path, body) => invoke('api_call', { method, path, body: body ?? null });
      const before = await call('GET', '/v1/strategy');
      if (before.status !== 200) return done({ ok: false, error: 'GET /v1/strategy: ' + JSON.stringify(before) });
      const version = before.body.version;
      const s = JSON.parse(JSON.stringify(before.body.strategy));
      const pop = s.weights.pop, lo = s.min_weights.pop, hi = s.max_weights.pop;
      s.weights.pop = Math.round((pop + 0.05 <= hi ? pop + 0.05 : Math.max(lo, pop - 0.05)) * 1000) / 1000;
      let form = 'envelope {strategy, message, base_version}';
      let put = await call('PUT', '/v1/strategy', { strategy: s, message: 'desktop smoke', base_version: version });
      if (put.status === 400) {
        form = 'bare Strategy (the envelope was refused: ' + JSON.stringify(put.body).slice(0, 160) + ')';
        put = await call('PUT', '/v1/strategy', s);
      }
      const after = await call('GET', '/v1/strategy');
      const info = await invoke('connection_info');
      let outside;
      try { outside = await call('GET', '/ui/'); } catch (e) { outside = { refused: e }; }
      // The page may load nothing from elsewhere, the engine included (the CSP).
      const blocked = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), 3000);
        document.addEventListener('securitypolicyviolation', (e) => {
          clearTimeout(timer);
          resolve(e.violatedDirective + ' ' + e.blockedURI);
        }, { once: true });
        const img = new Image();
        img.src = info.url + '/healthz?csp-probe';
      });
      done({ ok: true, blocked, version, pop: [pop, s.weights.pop], form, put, after: after.body.version,
             afterPop: after.body.strategy.weights.pop, info, outside });
    })().catch((e) => done({ ok: false, error: typeof e === 'string' ? e : JSON.stringify(e) }));
  `);
  if (!trip.ok) throw new Error(`strategy round trip: ${trip.error}`);
  log(`connection_info: ${JSON.stringify(trip.info)}`);
  if (/token/i.test(Object.keys(trip.info).join(' '))) throw new Error('connection_info carries a token field');
  if (trip.put.status !== 200) throw new Error(`PUT /v1/strategy (${trip.form}) answered ${trip.put.status}: ${JSON.stringify(trip.put.body).slice(0, 300)}`);
  if (!(trip.after > trip.version)) throw new Error(`the version did not go up: ${trip.version} -> ${trip.after}`);
  if (trip.afterPop !== trip.pop[1]) throw new Error(`weights.pop is ${trip.afterPop}, published ${trip.pop[1]}`);
  if (!trip.outside?.refused) throw new Error(`GET /ui/ through api_call was not refused: ${JSON.stringify(trip.outside)}`);
  log(`strategy publish via api_call: v${trip.version} -> v${trip.after} (weights.pop ${trip.pop[0]} -> ${trip.pop[1]}), form: ${trip.form}`);
  log(`a path outside the API was refused: ${JSON.stringify(trip.outside.refused)}`);
  if (!trip.blocked) throw new Error('the CSP let the page load from the engine directly');
  log(`the CSP blocked a direct load from the engine: ${trip.blocked}`);
  if (trip.form.startsWith('bare')) notes.push('the publish envelope (message, base_version) is not served yet: published a bare Strategy');

  // Find items by text on the Sessions page, typed and submitted as a person would, when
  // the local engine runs with the text encoder (the connection notes say which).
  if (trip.info.notes.some((n) => n.startsWith('text encoder'))) {
    // The catalogue is embedded in the background after the start: wait for it.
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      const text = await execAsync(`
        const done = arguments[arguments.length - 1];
        window.__TAURI_INTERNALS__.invoke('api_call', { method: 'GET', path: '/v1/info', body: null })
          .then((a) => done(a.body.text), (e) => done({ error: String(e) }));`);
      if (text?.state === 'on' && text.pending === 0) break;
      if (Date.now() > deadline) throw new Error(`the demo's catalogue was not embedded: ${JSON.stringify(text)}`);
      await sleep(1000);
    }
    await exec("location.hash = '#/sessions';");
    let found = null;
    while (Date.now() < deadline) {
      found = await exec(`
        const q = document.querySelector('#session-find-q');
        if (!q) return { state: 'no finder' };
        const rows = [...document.querySelectorAll('.item-finder tbody tr')];
        if (rows.length) return { state: 'rows', rows: rows.map((r) => r.innerText.replace(/\\s+/g, ' ').trim()) };
        const alert = document.querySelector('.item-finder [role=alert]');
        if (alert) return { state: 'alert', text: alert.textContent };
        if (!q.dataset.smoke) {
          q.value = 'a warm coat for the winter';
          q.dataset.smoke = '1';
          q.form.requestSubmit();
        }
        return { state: 'waiting' };`);
      if (found.state === 'rows') break;
      if (found.state === 'alert') break;
      await sleep(1000);
    }
    if (found?.state !== 'rows') throw new Error(`find by text on the Sessions page: ${JSON.stringify(found)}`);
    const jackets = found.rows.filter((r) => /Jacket/.test(r)).length;
    if (jackets < 6) throw new Error(`find by text: ${jackets} of ${found.rows.length} rows are jackets: ${found.rows.join(' | ')}`);
    const png = await wd('GET', `/session/${session}/screenshot`);
    writeFileSync(`${SHOTS}/desktop-sessions-find.png`, Buffer.from(png, 'base64'));
    log(`find by text in the window: ${jackets} of ${found.rows.length} rows are jackets; screenshot ${SHOTS}/desktop-sessions-find.png`);
  } else {
    if (process.env.ATTUNE_REQUIRE_TOOLS === '1') throw new Error('the local engine runs without the text encoder under ATTUNE_REQUIRE_TOOLS=1');
    notes.push('no text encoder: find by text not exercised');
  }
}

try {
  await main();
  for (const n of notes) log(`note: ${n}`);
} catch (e) {
  log(e.message);
  if (session) {
    try {
      const png = await wd('GET', `/session/${session}/screenshot`);
      writeFileSync(`${SHOTS}/desktop-failure.png`, Buffer.from(png, 'base64'));
      log(`failure screenshot: ${SHOTS}/desktop-failure.png`);
    } catch {}
  }
  process.exitCode = 1;
} finally {
  // On success the shell script stops the app itself (to check the graceful stop), then
  // ends the session.
  if (session && process.exitCode) {
    await wd('DELETE', `/session/${session}`).catch((e) => log(`closing the session: ${e.message}`));
  } else if (session) {
    writeFileSync(process.env.SMOKE_SESSION_FILE, session);
  }
}
EOF

# --- graceful stop ----------------------------------------------------------------------
# Closing the window and SIGTERM take the same path (Tauri's exit event): the panel stops
# its local engine, which finishes requests in flight and flushes the store.
APP_PID=$(pgrep -g "$DRIVER_PID" -x attune-panel | head -n 1 || true)
[[ -n $APP_PID ]] || fail "cannot find the app's process to stop it"
kill -TERM "$APP_PID"
for _ in $(seq 60); do
  kill -0 "$APP_PID" 2>/dev/null || break
  sleep 0.5
done
kill -0 "$APP_PID" 2>/dev/null && fail "the app did not exit within 30 s of SIGTERM"
grep -q "local engine stopped" "$LOGS/driver.log" ||
  fail "the app exited without stopping its local engine gracefully (see $LOGS/driver.log)"
say "the app stopped its local engine gracefully on SIGTERM"
curl -fsS -X DELETE "http://127.0.0.1:$PORT/session/$(cat "$SESSION_FILE")" >/dev/null 2>&1 || true
say "OK: screenshots in $SHOTS/desktop-live.png and $SHOTS/desktop-root.png"
