// The console's REST routes, written once: `RestEngine` maps each Engine method to its route
// of docs/console-api.md and leaves moving the bytes to a transport (fetch or Tauri IPC).

import { EngineError, errorFromAnswer } from './errors';
import type {
  Activated,
  AuditEntry,
  ConnectionInfo,
  Engine,
  EngineInfo,
  Explanation,
  Forgotten,
  GuardStatus,
  History,
  Models,
  PreviewUnder,
  PublishRequest,
  Recommendation,
  ReplayJob,
  ReplayRequest,
  ReportLink,
  SessionInfo,
  Strategy,
  StrategyVersion,
  StrategyView,
  StreamHandler,
  TextMatches,
  WhoAmI,
} from './types';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
/**
 * Who may call a route: anyone (`none`), anyone but the token is sent when known
 * (`optional`, so `whoami` names the actor), a read token, or an admin token.
 */
export type Auth = 'none' | 'optional' | 'read' | 'admin';

export interface Answer {
  status: number;
  body: unknown;
}

/** Moves one request to the engine; rejects only with an EngineError (unreachable). */
export interface Transport {
  call(method: Method, path: string, body: unknown, auth: Auth): Promise<Answer>;
}

const enc = encodeURIComponent;

export abstract class RestEngine implements Engine {
  abstract readonly kind: 'http' | 'tauri';
  protected abstract readonly transport: Transport;

  abstract connectionInfo(): Promise<ConnectionInfo>;
  abstract subscribe(handler: StreamHandler): () => void;
  abstract replayReport(id: number): Promise<ReportLink>;
  abstract hasToken(): boolean;

  /**
   * One call; a status ≥ 400 becomes an EngineError, and so does a success that is not
   * JSON where JSON is expected (a web server that is not the engine, e.g. an SPA fallback).
   */
  protected async req<T>(method: Method, path: string, auth: Auth = 'none', body?: unknown, expect: 'json' | 'text' = 'json'): Promise<T> {
    const a = await this.transport.call(method, path, body, auth);
    if (a.status >= 400 || a.status === 0) throw errorFromAnswer(a.status, a.body);
    if (expect === 'json' && typeof a.body === 'string') {
      throw new EngineError(0, 'not_engine', `The answer to ${path} is not JSON: is this address an Attune engine?`);
    }
    return a.body as T;
  }

  info(): Promise<EngineInfo> {
    return this.req('GET', '/v1/info');
  }
  whoami(): Promise<WhoAmI> {
    return this.req('GET', '/v1/whoami', 'optional');
  }
  stats(): Promise<Record<string, unknown>> {
    return this.req('GET', '/v1/stats');
  }
  history(rangeS: number): Promise<History> {
    const r = Math.max(1, Math.min(86400, Math.round(rangeS)));
    return this.req('GET', `/v1/history?range_s=${r}`);
  }

  strategy(): Promise<StrategyView> {
    return this.req('GET', '/v1/strategy');
  }
  async validateStrategy(s: Strategy): Promise<void> {
    await this.req('POST', '/v1/strategy/validate', 'none', s);
  }
  publish(r: PublishRequest): Promise<StrategyVersion> {
    return this.req('PUT', '/v1/strategy', 'admin', r);
  }
  strategyHistory(limit?: number): Promise<StrategyVersion[]> {
    return this.req('GET', `/v1/strategy/history${limit ? `?limit=${limit}` : ''}`);
  }
  rollback(version: number, message: string, baseVersion: number): Promise<StrategyVersion> {
    return this.req('POST', '/v1/strategy/rollback', 'admin', {
      version,
      message,
      base_version: baseVersion,
    });
  }
  guardStatus(): Promise<GuardStatus> {
    return this.req('GET', '/v1/strategy/guard');
  }
  abortGuard(): Promise<GuardStatus> {
    return this.req('DELETE', '/v1/strategy/guard', 'admin');
  }

  recommend(user: string, k: number): Promise<Recommendation> {
    return this.req('POST', '/v1/recommend', 'none', { user, k });
  }
  preview(user: string, k: number, under: PreviewUnder): Promise<Recommendation> {
    return this.req('POST', '/v1/recommend/preview', 'admin', { user, k, ...under });
  }
  user(id: string): Promise<SessionInfo> {
    return this.req('GET', `/v1/users/${enc(id)}`);
  }
  explain(id: string, k: number): Promise<Explanation> {
    return this.req('GET', `/v1/users/${enc(id)}/explain?k=${k}`, 'read');
  }
  forget(id: string): Promise<Forgotten> {
    return this.req('DELETE', `/v1/users/${enc(id)}`, 'admin');
  }
  searchItems(q: string, k: number): Promise<TextMatches> {
    return this.req('GET', `/v1/items/search?q=${enc(q)}&k=${k}`);
  }
  similarItems(id: string, k: number): Promise<TextMatches> {
    return this.req('GET', `/v1/items/${enc(id)}/similar?k=${k}`);
  }

  models(): Promise<Models> {
    return this.req('GET', '/v1/models');
  }
  activateModel(name: string): Promise<Activated> {
    return this.req('POST', '/v1/models/activate', 'admin', { name });
  }

  startReplay(r: ReplayRequest): Promise<ReplayJob> {
    return this.req('POST', '/v1/replay', 'admin', r);
  }
  replayJob(id: number): Promise<ReplayJob> {
    return this.req('GET', `/v1/replay/${id}`);
  }

  audit(limit: number, before?: number): Promise<AuditEntry[]> {
    const b = before === undefined ? '' : `&before=${before}`;
    return this.req('GET', `/v1/audit?limit=${limit}${b}`, 'read');
  }
}
