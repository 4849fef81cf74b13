// The engine's JSON shapes (docs/console-api.md) and the one typed `Engine` interface every
// page talks through; `HttpEngine` (web console) and `TauriEngine` (desktop app) implement it.

export const SOURCES = ['seq', 'like', 'purchase', 'itemknn', 'markov', 'pop', 'text'] as const;
export type Source = (typeof SOURCES)[number];
export type Weights = Record<Source, number>;

export type Exploration =
  | { mode: 'none' }
  | { mode: 'epsilon'; epsilon: number }
  | { mode: 'thompson'; scale: number };

export interface Strategy {
  name: string;
  weights: Weights;
  min_weights: Weights;
  max_weights: Weights;
  pinned: Source[];
  learning: { adaptive: boolean; learning_rate: number; update_every: number };
  exploration: Exploration;
  filters: { exclude_seen: boolean; include_tags: string[]; exclude_tags: string[] };
  reward: { click: number; cart: number; purchase: number; like: number; skip: number };
  candidates: number;
  batching: { max_batch: number; max_queue_delay_us: number };
}

export interface ModelInfo {
  version: number;
  dir: string;
  weights?: string;
  fine_tuned?: boolean;
  items?: number;
  dim?: number;
  layers?: number;
  heads?: number;
  max_len?: number;
  name?: string;
  /** Precision of the item table catalogue scoring reads: f32, f16, bf16 or int8. */
  score_dtype?: string;
  scoring_bytes_per_item?: number;
}

export interface EngineInfo {
  name: string;
  version: string;
  environment: string;
  demo: boolean;
  started_ms: number;
  uptime_s: number;
  strategy_version: number;
  model: ModelInfo | null;
}

export type Role = 'none' | 'read' | 'admin';
export interface WhoAmI {
  actor: string | null;
  role: Role;
}

export interface LiveStats {
  ts_ms: number;
  uptime_s: number;
  interval_s: number;
  recommendations_per_s: number;
  events_per_s: number;
  http_requests_per_s: number;
  recommend_p50_ms: number;
  recommend_p95_ms: number;
  recommend_p99_ms: number;
  batch_mean: number;
  queue_depth: number;
  active_sessions: number;
  reward: number;
  reward_per_s: number;
  ctr: number;
  overloaded: number;
  errors: number;
  weights: Weights;
  strategy_version: number;
  model_version: number | null;
}

export type MarkerKind = 'publish' | 'rollback' | 'revert' | 'model';
export interface Marker {
  ts_ms: number;
  kind: MarkerKind;
  label: string;
  version: number;
}

export interface History {
  step_s: number;
  points: LiveStats[];
  markers: Marker[];
}

export interface StrategyView {
  version: number;
  strategy: Strategy;
  weights: Weights;
}

export interface StrategyVersion {
  version: number;
  created_ms: number;
  note: string;
  author?: string | null;
  message?: string | null;
  based_on?: number | null;
  strategy: Strategy;
  guard?: GuardStatus;
}

export interface Guard {
  max_p99_ms?: number;
  min_reward_per_rec?: number;
  interval_s: number;
  breach_intervals: number;
  min_samples: number;
  baseline_s: number;
  duration_s: number;
  webhook?: string;
}

export type GuardState = 'none' | 'watching' | 'passed' | 'reverted' | 'aborted';
export interface GuardLimit {
  metric: 'p99_ms' | 'reward_per_rec' | string;
  limit: number;
  current: number | null;
  samples: number;
  breaches: number;
  breached: boolean;
}
export interface GuardStatus {
  state: GuardState;
  version?: number;
  based_on?: number;
  guard?: Guard;
  started_ms?: number;
  time_left_s?: number;
  baseline_reward_per_rec?: number | null;
  limits?: GuardLimit[];
  reason?: string | null;
  reverted_to?: number | null;
}

export interface PublishRequest {
  strategy: Strategy;
  message: string;
  base_version: number;
  guard?: Guard;
}

export interface RecItem {
  item: string;
  score: number;
  breakdown: Weights;
  explored: boolean;
}
export interface Recommendation {
  request_id: string | number;
  user: string;
  items: RecItem[];
  strategy_version: number;
  weights: Weights;
  model_version: number | null;
  fallback: boolean | string | null;
}

/** What a preview scores under: the live strategy (neither), a draft, or a past version. */
export type PreviewUnder = { strategy: Strategy } | { version: number } | Record<string, never>;

export interface SessionInfo {
  user: string;
  interactions: number;
  recent: string[];
  has_state: boolean;
  state_len: number;
  bytes: number;
}

export interface Explanation {
  user: string;
  history: string[];
  attention: { mean: number[]; heads: number[][] } | null;
  recommendation: Recommendation;
}

/** One item found by text: `GET /v1/items/search`, `GET /v1/items/{id}/similar`. */
export interface TextMatch {
  item: string;
  /** Cosine of the item's text vector with the query's, in [-1, 1]. */
  score: number;
  title: string;
  tags: string[];
}
export interface TextMatches {
  encoder: string;
  items: TextMatch[];
}

export interface Forgotten {
  user: string;
  events: number;
  index_chunks: number;
  session_snapshot: boolean | number;
}

export interface Checkpoint {
  name: string;
  dir: string;
  items: number | null;
  config: Record<string, unknown> | null;
  metrics: Record<string, unknown> | null;
}
export interface Models {
  serving: ModelInfo | null;
  models_dir: string | null;
  available: Checkpoint[];
}
export interface Activated {
  version: number;
  model: ModelInfo | null;
}

export interface ReplayRequest {
  strategies: Strategy[];
  from_ms?: number;
  to_ms?: number;
  k?: number;
  seed?: number;
}

export interface ReplayFigures {
  rankings: number;
  hr: number;
  ndcg: number;
  mrr: number;
}
export interface ReplayWindow extends ReplayFigures {
  events_to: number;
  ts_to: number;
}
export interface StrategyReport {
  name: string;
  hr: number;
  ndcg: number;
  mrr: number;
  coverage: number;
  rankings: number;
  reward: number;
  latency_p50_us: number;
  latency_p99_us: number;
  latency_buckets?: [number, number][];
  served_agreement?: number | null;
  served_impressions?: number;
  windows?: ReplayWindow[];
  weights?: { events: number; weights: Weights }[];
  seconds?: number;
}
/** One metric of a comparison (src-core/src/replay/compare.rs `Difference`). */
export interface ReplayDifference {
  metric: string;
  /** The strategy's figure and the baseline's. */
  value: number;
  baseline: number;
  /** value − baseline, with its paired-bootstrap 95% interval. */
  diff: number;
  ci_low: number;
  ci_high: number;
  /** The interval leaves out 0. */
  significant: boolean;
}

/** A strategy against the baseline (the first one replayed). */
export interface ReplayComparison {
  strategy: string;
  baseline: string;
  users: number;
  differences: ReplayDifference[];
}

/** `ReplayReport` of src-core/src/replay/figures.rs; `verdict` and `comparisons` may come later. */
export interface ReplayReport {
  source?: string;
  events?: number;
  seconds?: number;
  k?: number;
  partial?: boolean;
  strategies: StrategyReport[];
  verdict?: string;
  comparisons?: unknown;
}
export type ReplayStatus = 'running' | 'done' | 'stopped' | 'failed';
export interface ReplayJob {
  id: number;
  status: ReplayStatus;
  done?: number;
  total?: number;
  report?: ReplayReport;
  error?: string;
}

export const AUDIT_ACTIONS = [
  'strategy.publish',
  'strategy.rollback',
  'strategy.revert',
  'guard.abort',
  'model.activate',
  'user.forget',
  'user.lookup',
  'items.import',
  'replay.start',
] as const;
export interface AuditEntry {
  seq: number;
  ts_ms: number;
  actor: string;
  action: string;
  target: string | null;
  detail: unknown;
}

/** `invoke('connection_info')` in the desktop app; the page's origin on the web. */
export interface ConnectionInfo {
  url: string;
  mode: 'web' | 'local-demo' | 'remote' | 'store';
}

export type ConnectionState = 'connecting' | 'connected' | 'disconnected';

/** One message of the live stream (`GET /v1/stream` or the Tauri channel). */
export type StreamEvent =
  | { event: 'stats'; data: LiveStats }
  | { event: 'strategy'; data: StrategyVersion }
  | { event: 'model'; data: { version: number; name: string; model: ModelInfo | null } }
  | { event: 'marker'; data: Marker }
  | { event: 'guard'; data: GuardStatus }
  | { event: 'audit'; data: AuditEntry }
  | { event: 'replay'; data: ReplayJob }
  | { event: 'shutdown'; data: unknown }
  | { event: 'connection'; data: { state: ConnectionState; url?: string; retry_ms?: number } };

export type StreamHandler = (e: StreamEvent) => void;

/** A report download: a URL the browser can open, or the HTML itself (desktop app). */
export type ReportLink = { kind: 'url'; url: string } | { kind: 'blob'; blob: Blob };

/** Every call the console makes to an engine. */
export interface Engine {
  readonly kind: 'http' | 'tauri';
  connectionInfo(): Promise<ConnectionInfo>;
  info(): Promise<EngineInfo>;
  whoami(): Promise<WhoAmI>;
  stats(): Promise<Record<string, unknown>>;
  history(rangeS: number): Promise<History>;
  /** Starts the live stream; the returned function stops it. */
  subscribe(handler: StreamHandler): () => void;

  strategy(): Promise<StrategyView>;
  validateStrategy(s: Strategy): Promise<void>;
  publish(req: PublishRequest): Promise<StrategyVersion>;
  strategyHistory(limit?: number): Promise<StrategyVersion[]>;
  rollback(version: number, message: string, baseVersion: number): Promise<StrategyVersion>;
  guardStatus(): Promise<GuardStatus>;
  abortGuard(): Promise<GuardStatus>;

  recommend(user: string, k: number): Promise<Recommendation>;
  preview(user: string, k: number, under: PreviewUnder): Promise<Recommendation>;
  user(id: string): Promise<SessionInfo>;
  explain(id: string, k: number): Promise<Explanation>;
  forget(id: string): Promise<Forgotten>;
  /** Items whose text is nearest a free text (503 when the text source is off). */
  searchItems(q: string, k: number): Promise<TextMatches>;
  /** Items whose text is nearest item `id`'s, itself left out. */
  similarItems(id: string, k: number): Promise<TextMatches>;

  models(): Promise<Models>;
  activateModel(name: string): Promise<Activated>;

  startReplay(req: ReplayRequest): Promise<ReplayJob>;
  replayJob(id: number): Promise<ReplayJob>;
  replayReport(id: number): Promise<ReportLink>;

  audit(limit: number, before?: number): Promise<AuditEntry[]>;

  /** Whether read routes can be called without asking (always true in the desktop app). */
  hasToken(): boolean;
  /** Web console only: ask for a token now (the header's "Enter token"); true if one was given. */
  signIn?(): Promise<boolean>;
  /** Desktop app only: point the app at another engine. */
  connect?(url: string, tokenFile: string | null): Promise<ConnectionInfo>;
}
