// Shared test data: a LiveStats point, a strategy view and a fake EventSource.
import { defaultStrategy } from '../src/draft';
import type { LiveStats, StrategyView } from '../src/engine/types';

export function stats(i: number, over: Partial<LiveStats> = {}): LiveStats {
  return {
    ts_ms: 1_700_000_000_000 + i * 1000,
    uptime_s: i,
    interval_s: 1,
    recommendations_per_s: 100 + i,
    events_per_s: 50,
    http_requests_per_s: 150,
    recommend_p50_ms: 1,
    recommend_p95_ms: 2,
    recommend_p99_ms: 3,
    batch_mean: 4,
    queue_depth: 0,
    active_sessions: 10,
    reward: 5,
    reward_per_s: 20,
    ctr: 0.1,
    overloaded: 0,
    errors: 0,
    weights: { seq: 1, like: 0.2, purchase: 0.2, itemknn: 0.5, markov: 0.5, pop: 0.2, text: 0.5 },
    strategy_version: 1,
    model_version: 1,
    ...over,
  };
}

export function strategyView(version = 3): StrategyView {
  const strategy = defaultStrategy();
  return { version, strategy, weights: strategy.weights };
}

/** A stand-in for the browser's EventSource that tests drive by hand. */
export class FakeEventSource {
  static instances: FakeEventSource[] = [];
  url: string;
  onopen: ((e: Event) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  onmessage: ((e: MessageEvent) => void) | null = null;
  closed = false;
  private listeners = new Map<string, ((e: MessageEvent) => void)[]>();

  constructor(url: string) {
    this.url = url;
    FakeEventSource.instances.push(this);
  }
  addEventListener(name: string, fn: (e: MessageEvent) => void): void {
    this.listeners.set(name, [...(this.listeners.get(name) ?? []), fn]);
  }
  close(): void {
    this.closed = true;
  }
  open(): void {
    this.onopen?.(new Event('open'));
  }
  send(name: string, data: unknown): void {
    for (const fn of this.listeners.get(name) ?? []) fn(new MessageEvent(name, { data: JSON.stringify(data) }));
  }
  fail(): void {
    this.onerror?.(new Event('error'));
  }
}
