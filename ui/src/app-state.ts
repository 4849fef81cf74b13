// What pages share besides the live figures: the engine's info, the live strategy and its
// version history, the operator's identity, and the one strategy draft (in memory only).
// The shell keeps it current from REST answers and stream events.

import type { Draft } from './draft';
import type {
  ConnectionInfo,
  Engine,
  EngineInfo,
  ModelInfo,
  StrategyVersion,
  StrategyView,
  StreamEvent,
  WhoAmI,
} from './engine/types';
import type { LiveStore } from './store';

type Topic = 'info' | 'strategy' | 'versions' | 'draft' | 'whoami';

export class AppState {
  info: EngineInfo | null = null;
  connection: ConnectionInfo | null = null;
  whoami: WhoAmI | null = null;
  live: StrategyView | null = null;
  versions: StrategyVersion[] = [];
  draft: Draft | null = null;
  private readonly listeners = new Map<Topic, Set<() => void>>();

  on(topic: Topic, fn: () => void): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(topic: Topic): void {
    for (const fn of this.listeners.get(topic) ?? []) {
      try {
        fn();
      } catch (err) {
        console.error(`app listener (${topic}) failed`, err);
      }
    }
  }

  setDraft(d: Draft | null): void {
    this.draft = d;
    this.emit('draft');
  }

  /** A new live version (from a publish answer or the stream). */
  applyVersion(v: StrategyVersion): void {
    if (!this.live || v.version >= this.live.version) {
      this.live = { version: v.version, strategy: v.strategy, weights: this.live?.weights ?? v.strategy.weights };
      if (this.info) this.info.strategy_version = v.version;
      this.emit('strategy');
      this.emit('info');
    }
    if (!this.versions.some((x) => x.version === v.version)) {
      this.versions = [...this.versions, v].sort((a, b) => a.version - b.version);
      this.emit('versions');
    }
  }

  applyModel(model: ModelInfo | null, name?: string): void {
    if (!this.info) return;
    this.info.model = model ? { ...model, name: name ?? model.name } : null;
    this.emit('info');
  }

  /** Follows the stream: strategy and model changes. */
  ingest(e: StreamEvent): void {
    if (e.event === 'strategy') this.applyVersion(e.data);
    else if (e.event === 'model') this.applyModel(e.data.model, e.data.name);
    else if (e.event === 'stats' && this.live && e.data.weights) this.live.weights = e.data.weights;
  }

  /** Loads everything from the engine (at start and after a reconnect). */
  async refresh(engine: Engine): Promise<void> {
    const [info, live, versions] = await Promise.all([engine.info(), engine.strategy(), engine.strategyHistory()]);
    this.info = info;
    this.live = live;
    this.versions = versions;
    this.emit('info');
    this.emit('strategy');
    this.emit('versions');
    engine
      .whoami()
      .then((w) => {
        this.whoami = w;
        this.emit('whoami');
      })
      .catch(() => undefined);
  }
}

/** What every page gets. */
export interface PageContext {
  engine: Engine;
  store: LiveStore;
  app: AppState;
}

/** A page: built once, shown and hidden as the route changes. */
export interface Page {
  readonly el: HTMLElement;
  show(): void;
  hide(): void;
}
