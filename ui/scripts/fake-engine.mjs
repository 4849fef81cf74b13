// A fake Attune engine for developing and screenshotting the console without the Rust
// server: every route of docs/console-api.md with synthetic data, the SSE stream (stats once
// a second, markers, guard, audit and replay events), and dist/ served at /ui/.
//
//   node scripts/fake-engine.mjs [--port 8080] [--dist dist]
//   tokens: "admin-token" (alice, admin), "read-token" (bob, read)

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const PORT = Number(args.port ?? 8080);
const DIST = args.dist ?? new URL('../dist', import.meta.url).pathname;
const TOKENS = { 'admin-token': ['alice', 'admin'], 'read-token': ['bob', 'read'] };
const SOURCES = ['seq', 'like', 'purchase', 'itemknn', 'markov', 'pop'];
const started = Date.now();

// --- state -------------------------------------------------------------------------------
const defaultStrategy = () => ({
  name: 'default',
  weights: { seq: 1, like: 0.2, purchase: 0.2, itemknn: 0.5, markov: 0.5, pop: 0.2 },
  min_weights: Object.fromEntries(SOURCES.map((s) => [s, 0])),
  max_weights: Object.fromEntries(SOURCES.map((s) => [s, 5])),
  pinned: [],
  learning: { adaptive: true, learning_rate: 1, update_every: 32 },
  exploration: { mode: 'none' },
  filters: { exclude_seen: true, include_tags: [], exclude_tags: [] },
  reward: { click: 1, cart: 2, purchase: 5, like: 1, skip: 0 },
  candidates: 50,
  batching: { max_batch: 16, max_queue_delay_us: 100 },
});
const versions = [
  { version: 1, created_ms: started - 86400e3, note: 'initial', author: null, message: null, based_on: null, strategy: defaultStrategy() },
];
{
  const s = defaultStrategy();
  s.weights.pop = 0.4;
  versions.push({ version: 2, created_ms: started - 3600e3, note: 'set', author: 'alice', message: 'more popularity for cold users', based_on: 1, strategy: s });
}
let learned = { ...versions[1].strategy.weights };
let model = { version: 1, dir: '/models/sasrec-ml1m', weights: '/models/sasrec-ml1m/model.safetensors', fine_tuned: false, items: 3615, dim: 64, layers: 2, heads: 2, max_len: 200 };
let guard = { state: 'none' };
let audit = [];
let auditSeq = 0;
const markers = [{ ts_ms: started - 3600e3, kind: 'publish', label: 'v2 publish: more popularity', version: 2 }];
const replays = new Map();
let nextReplay = 0;
const clients = new Set();
const live = () => versions[versions.length - 1];

function send(event, data) {
  const msg = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  for (const c of clients) c.write(msg);
}
function addAudit(actor, action, target, detail) {
  const e = { seq: ++auditSeq, ts_ms: Date.now(), actor, action, target, detail };
  audit.push(e);
  send('audit', e);
}
function addMarker(kind, label, version) {
  const m = { ts_ms: Date.now(), kind, label, version };
  markers.push(m);
  send('marker', m);
}
for (let i = 0; i < 40; i++) {
  audit.push({ seq: ++auditSeq, ts_ms: started - (40 - i) * 60e3, actor: i % 3 ? 'alice' : 'bob', action: i % 3 ? 'user.lookup' : 'strategy.publish', target: i % 3 ? `u${i}` : 'strategy', detail: { note: `entry ${i}` } });
}

// --- synthetic figures ---------------------------------------------------------------------
function statsAt(ts) {
  const t = ts / 1000;
  const wave = Math.sin(t / 60) * 0.5 + Math.sin(t / 7) * 0.1;
  const rps = 1200 + 400 * wave + Math.random() * 60;
  const p50 = 0.9 + 0.2 * wave + Math.random() * 0.05;
  const w = Object.fromEntries(SOURCES.map((s, i) => [s, learned[s] + 0.05 * Math.sin(t / (90 + i * 17))]));
  return {
    ts_ms: ts,
    uptime_s: (ts - started) / 1000,
    interval_s: 1,
    recommendations_per_s: rps,
    events_per_s: rps * 0.6,
    http_requests_per_s: rps * 1.6,
    recommend_p50_ms: p50,
    recommend_p95_ms: p50 * 2.1,
    recommend_p99_ms: p50 * 3 + Math.random() * 0.4,
    batch_mean: 3 + 2 * wave,
    queue_depth: Math.max(0, Math.round(4 * wave + Math.random() * 3)),
    active_sessions: 5000 + 800 * wave,
    reward: rps * 0.08,
    reward_per_s: rps * 0.08,
    ctr: 0.06 + 0.01 * wave,
    overloaded: Math.random() < 0.03 ? 2 : 0,
    errors: Math.random() < 0.02 ? 1 : 0,
    weights: w,
    strategy_version: live().version,
    model_version: model.version,
  };
}
// --hz N sends N stats a second on a clock running N times faster (for timing the Live page).
const HZ = Number(args.hz ?? 1);
let clock = Date.now();
setInterval(() => {
  clock = HZ === 1 ? Date.now() : clock + 1000;
  send('stats', statsAt(clock));
}, 1000 / HZ);

// --- helpers ---------------------------------------------------------------------------------
function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
const fail = (res, status, code, message) => json(res, status, { error: { code, message } });
function who(req) {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
  if (!m) return { actor: null, role: 'none', bad: false };
  const t = TOKENS[m[1]];
  return t ? { actor: t[0], role: t[1], bad: false } : { actor: null, role: 'none', bad: true };
}
function need(req, res, role) {
  const w = who(req);
  if (w.bad || w.role === 'none') return fail(res, 401, 'unauthorized', w.bad ? 'unknown token' : 'this route needs a token'), null;
  if (role === 'admin' && w.role !== 'admin') return fail(res, 403, 'forbidden', 'this route needs an admin token'), null;
  return w;
}
function validate(s) {
  for (const src of SOURCES) {
    const w = s.weights?.[src];
    if (typeof w !== 'number') return `invalid weights.${src}: missing`;
    if (w < s.min_weights[src] || w > s.max_weights[src]) return `invalid weights.${src}: ${w} is outside its bounds [${s.min_weights[src]}, ${s.max_weights[src]}]`;
  }
  if (!(s.candidates >= 1 && s.candidates <= 10000)) return `invalid candidates: must be in [1, 10000], got ${s.candidates}`;
  return null;
}
const body = (req) =>
  new Promise((resolve) => {
    let b = '';
    req.on('data', (c) => (b += c));
    req.on('end', () => {
      try {
        resolve(b ? JSON.parse(b) : null);
      } catch {
        resolve(undefined);
      }
    });
  });
function hash(s) {
  let h = 2166136261;
  for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return h >>> 0;
}
function recommend(user, k, strategy) {
  const w = strategy ? strategy.weights : learned;
  const items = [];
  for (let i = 0; i < 40; i++) {
    const item = `i${(hash(user + i) % 3000) + 1}`;
    const breakdown = Object.fromEntries(SOURCES.map((s) => [s, ((hash(item + s) % 1000) / 1000) * (s === 'markov' && i % 5 === 0 ? -0.4 : 1)]));
    const score = SOURCES.reduce((a, s) => a + w[s] * breakdown[s], 0);
    items.push({ item, score, breakdown, explored: false });
  }
  items.sort((a, b) => b.score - a.score);
  return { request_id: Date.now(), user, items: items.slice(0, k), strategy_version: live().version, weights: w, model_version: model.version, fallback: null };
}
function guardTick() {
  if (guard.state !== 'watching') return;
  guard.time_left_s = Math.max(0, guard.time_left_s - guard.guard.interval_s);
  for (const l of guard.limits) {
    l.samples += 1200 * guard.guard.interval_s;
    l.current = l.metric === 'p99_ms' ? 2.8 + Math.random() : 0.07 + Math.random() * 0.02;
    l.breached = l.metric === 'p99_ms' ? l.current > l.limit : l.current < l.limit;
    if (l.breached) l.breaches++;
  }
  if (guard.time_left_s <= 0) guard.state = 'passed';
  send('guard', guard);
}
setInterval(guardTick, 2000);

function publish(actor, strategy, message, note, based_on) {
  const v = { version: live().version + 1, created_ms: Date.now(), note, author: actor, message, based_on, strategy };
  versions.push(v);
  learned = { ...strategy.weights };
  send('strategy', v);
  return v;
}

// --- routes --------------------------------------------------------------------------------
async function api(req, res, url) {
  const p = url.pathname;
  const m = req.method;
  if (m === 'GET' && p === '/v1/info') return json(res, 200, { name: 'attune', version: '0.1.0', environment: args.env ?? 'demo', demo: (args.env ?? 'demo') === 'demo', started_ms: started, uptime_s: (Date.now() - started) / 1000, strategy_version: live().version, model });
  if (m === 'GET' && p === '/v1/whoami') {
    const w = who(req);
    return w.bad ? fail(res, 401, 'unauthorized', 'unknown token') : json(res, 200, { actor: w.actor, role: w.role });
  }
  if (m === 'GET' && p === '/v1/stats') return json(res, 200, { recommendations: 123456, events: 65432 });
  if (m === 'GET' && p === '/v1/stream') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write(': hello\n\n');
    clients.add(res);
    req.on('close', () => clients.delete(res));
    return;
  }
  if (m === 'GET' && p === '/v1/history') {
    const range = Math.min(86400, Number(url.searchParams.get('range_s') ?? 900));
    // --step 1 fills the console's whole 30 min buffer at once (for timing the Live page).
    const step = Number(args.step ?? 10) * 1000;
    const now = Math.floor(Date.now() / step) * step;
    const points = [];
    for (let t = now - range * 1000; t <= now; t += step) points.push(statsAt(t));
    return json(res, 200, { step_s: step / 1000, points, markers: markers.filter((x) => x.ts_ms >= now - range * 1000) });
  }
  if (m === 'GET' && p === '/v1/strategy') return json(res, 200, { version: live().version, strategy: live().strategy, weights: learned });
  if (m === 'POST' && p === '/v1/strategy/validate') {
    const s = await body(req);
    const e = s ? validate(s) : 'invalid strategy: not JSON';
    return e ? fail(res, 400, 'bad_request', e) : json(res, 200, { ok: true });
  }
  if (m === 'PUT' && p === '/v1/strategy') {
    const w = need(req, res, 'admin');
    if (!w) return;
    const b = await body(req);
    const s = b?.strategy ?? b;
    const e = validate(s);
    if (e) return fail(res, 400, 'bad_request', e);
    if (b.base_version !== undefined && b.base_version !== live().version) return fail(res, 409, 'conflict', `base_version ${b.base_version} is not the live version ${live().version}`);
    const v = publish(w.actor, s, b.message ?? null, 'set', live().version);
    addMarker('publish', `v${v.version} publish: ${b.message ?? ''}`, v.version);
    addAudit(w.actor, 'strategy.publish', `v${v.version}`, { message: b.message, base_version: b.base_version });
    if (b.guard) {
      guard = {
        state: 'watching', version: v.version, based_on: v.based_on, guard: b.guard, started_ms: Date.now(), time_left_s: b.guard.duration_s, baseline_reward_per_rec: 0.08, reason: null, reverted_to: null,
        limits: [
          ...(b.guard.max_p99_ms != null ? [{ metric: 'p99_ms', limit: b.guard.max_p99_ms, current: null, samples: 0, breaches: 0, breached: false }] : []),
          ...(b.guard.min_reward_per_rec != null ? [{ metric: 'reward_per_rec', limit: 0.08 * b.guard.min_reward_per_rec, current: null, samples: 0, breaches: 0, breached: false }] : []),
        ],
      };
      send('guard', guard);
      return json(res, 200, { ...v, guard });
    }
    return json(res, 200, v);
  }
  if (m === 'GET' && p === '/v1/strategy/history') return json(res, 200, versions);
  if (m === 'POST' && p === '/v1/strategy/rollback') {
    const w = need(req, res, 'admin');
    if (!w) return;
    const b = await body(req);
    const old = versions.find((x) => x.version === b.version);
    if (!old) return fail(res, 400, 'bad_request', `invalid version: there is no strategy version ${b.version}`);
    if (b.base_version !== undefined && b.base_version !== live().version) return fail(res, 409, 'conflict', 'the live version moved');
    const v = publish(w.actor, structuredClone(old.strategy), b.message ?? null, `rollback to ${b.version}`, live().version);
    addMarker('rollback', `v${v.version} rollback to v${b.version}`, v.version);
    addAudit(w.actor, 'strategy.rollback', `v${v.version}`, { to: b.version, message: b.message });
    return json(res, 200, v);
  }
  if (m === 'GET' && p === '/v1/strategy/guard') return json(res, 200, guard);
  if (m === 'DELETE' && p === '/v1/strategy/guard') {
    const w = need(req, res, 'admin');
    if (!w) return;
    if (guard.state === 'watching') guard = { ...guard, state: 'aborted', reason: `aborted by ${w.actor}` };
    send('guard', guard);
    addAudit(w.actor, 'guard.abort', `v${guard.version}`, {});
    return json(res, 200, guard);
  }
  if (m === 'POST' && p === '/v1/recommend') {
    const b = await body(req);
    return json(res, 200, recommend(b.user, b.k ?? 10));
  }
  if (m === 'POST' && p === '/v1/recommend/preview') {
    if (!need(req, res, 'admin')) return;
    const b = await body(req);
    const s = b.strategy ?? (b.version ? versions.find((x) => x.version === b.version)?.strategy : null);
    return json(res, 200, recommend(b.user, b.k ?? 10, s));
  }
  let mm = /^\/v1\/users\/([^/]+)(\/explain)?$/.exec(p);
  if (mm) {
    const user = decodeURIComponent(mm[1]);
    const n = 6 + (hash(user) % 14);
    const history = Array.from({ length: n }, (_, i) => `i${(hash(user + 'h' + i) % 3000) + 1}`);
    if (m === 'GET' && !mm[2]) return json(res, 200, { user, interactions: n * 3, recent: history, has_state: true, state_len: n, bytes: n * 2048 });
    if (m === 'GET' && mm[2]) {
      const w = need(req, res, 'read');
      if (!w) return;
      addAudit(w.actor, 'user.lookup', user, {});
      const norm = (a) => { const s = a.reduce((x, y) => x + y, 0); return a.map((x) => x / s); };
      const heads = [0, 1].map((hh) => norm(history.map((_, i) => Math.exp(((hash(user + hh + i) % 100) / 25) + i * 0.15))));
      const mean = heads[0].map((v, i) => (v + heads[1][i]) / 2);
      return json(res, 200, { user, history, attention: { mean, heads }, recommendation: recommend(user, Number(url.searchParams.get('k') ?? 10)) });
    }
    if (m === 'DELETE') {
      const w = need(req, res, 'admin');
      if (!w) return;
      addAudit(w.actor, 'user.forget', user, { events: n * 3 });
      return json(res, 200, { user, events: n * 3, index_chunks: 2, session_snapshot: true });
    }
  }
  if (m === 'GET' && p === '/v1/models') {
    return json(res, 200, {
      serving: model,
      models_dir: '/models',
      available: ['sasrec-ml1m', 'sasrec-ml1m-d128'].map((name, i) => ({
        name, dir: `/models/${name}`, items: 3615,
        config: { dim: 64 * (i + 1), layers: 2, heads: 2, max_len: 200, dropout: 0.2 },
        metrics: { ndcg_at_10: 0.158 + i * 0.005, hr_at_10: 0.281 + i * 0.007, epochs: 40, train_seconds: 960 + i * 400 },
      })),
    });
  }
  if (m === 'POST' && p === '/v1/models/activate') {
    const w = need(req, res, 'admin');
    if (!w) return;
    const b = await body(req);
    model = { ...model, version: model.version + 1, dir: `/models/${b.name}` };
    send('model', { version: model.version, name: b.name, model });
    addMarker('model', `model v${model.version}: ${b.name}`, model.version);
    addAudit(w.actor, 'model.activate', b.name, { version: model.version });
    return json(res, 200, { version: model.version, model });
  }
  if (m === 'POST' && p === '/v1/replay') {
    const w = need(req, res, 'admin');
    if (!w) return;
    const b = await body(req);
    const id = ++nextReplay;
    const total = 50000 * (b.strategies?.length || 1);
    const job = { id, status: 'running', done: 0, total };
    replays.set(id, job);
    addAudit(w.actor, 'replay.start', `replay ${id}`, { strategies: (b.strategies ?? []).map((s) => s.name) });
    const timer = setInterval(() => {
      job.done = Math.min(total, job.done + total / 8);
      send('replay', { id, status: 'running', done: job.done, total });
      if (job.done >= total) {
        clearInterval(timer);
        job.status = 'done';
        job.report = fakeReport(b.strategies ?? [live().strategy], b.k ?? 10);
        send('replay', { id, status: 'done' });
      }
    }, 1000);
    return json(res, 202, { id, status: 'running' });
  }
  mm = /^\/v1\/replay\/(\d+)(\/report\.html)?$/.exec(p);
  if (mm && m === 'GET') {
    const job = replays.get(Number(mm[1]));
    if (!job) return fail(res, 404, 'not_found', `no replay ${mm[1]}`);
    if (mm[2]) {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(`<!doctype html><title>Replay ${job.id}</title><h1>Replay ${job.id}</h1>`);
    }
    return json(res, 200, job);
  }
  if (m === 'GET' && p === '/v1/audit') {
    if (!need(req, res, 'read')) return;
    const limit = Number(url.searchParams.get('limit') ?? 200);
    const before = url.searchParams.get('before');
    const list = [...audit].reverse().filter((e) => before == null || e.seq < Number(before));
    return json(res, 200, list.slice(0, limit));
  }
  return fail(res, 404, 'not_found', `no route ${m} ${p}`);
}

function fakeReport(strategies, k) {
  const t0 = Date.now() - 7 * 86400e3;
  return {
    source: '/var/lib/attune/store (live)', events: 50000, seconds: 8.1, k, partial: false,
    strategies: strategies.map((s, j) => {
      const base = 0.2 + j * 0.015;
      return {
        name: s.name, hr: base, ndcg: base * 0.55, mrr: base * 0.42, coverage: 0.31 + j * 0.02, rankings: 21000, reward: 1800 + j * 90,
        latency_p50_us: 420 + j * 10, latency_p99_us: 1300 + j * 40, latency_buckets: [[500, 12000], [1000, 8000], [2000, 1000]],
        served_agreement: null, served_impressions: 0,
        windows: Array.from({ length: 10 }, (_, i) => ({ events_to: (i + 1) * 5000, ts_to: t0 + i * 0.7 * 86400e3, rankings: 2100, hr: base + 0.02 * Math.sin(i + j), ndcg: (base + 0.02 * Math.sin(i + j)) * 0.55, mrr: (base + 0.02 * Math.sin(i)) * 0.42 })),
        weights: Array.from({ length: 10 }, (_, i) => ({ events: (i + 1) * 5000, weights: Object.fromEntries(SOURCES.map((src, q) => [src, s.weights[src] + 0.03 * Math.sin(i / 2 + q)])) })),
        seconds: 4,
      };
    }),
  };
}

// --- static files ----------------------------------------------------------------------------
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' };
async function serveUi(res, p) {
  const rel = normalize(p.replace(/^\/ui\/?/, '') || 'index.html');
  if (rel.startsWith('..')) return fail(res, 404, 'not_found', 'no such file');
  try {
    const data = await readFile(join(DIST, rel));
    res.writeHead(200, { 'content-type': TYPES[extname(rel)] ?? 'application/octet-stream' });
    res.end(data);
  } catch {
    fail(res, 404, 'not_found', `no file ${rel}`);
  }
}

createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/ui') return res.writeHead(302, { location: '/ui/' }), res.end();
  if (url.pathname.startsWith('/ui/')) return void serveUi(res, url.pathname);
  api(req, res, url).catch((e) => fail(res, 500, 'internal', String(e)));
}).listen(PORT, '127.0.0.1', () => console.log(`fake engine on http://127.0.0.1:${PORT}/ui/`));
