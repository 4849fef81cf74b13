// HttpEngine: the web console's engine, served from the engine itself: REST with fetch,
// the live stream with a reconnecting EventSource, the token from one prompt per tab.

import { noToken, unreachable } from './errors';
import { RestEngine, type Answer, type Auth, type Method, type Transport } from './rest';
import { openStream, type EventSourceFactory } from './sse';
import { TokenKeeper, type TokenPrompt } from './token';
import type { ConnectionInfo, ReportLink, StreamHandler } from './types';

export interface HttpEngineOptions {
  /** Engine origin, '' for the page's own (the console is served by the engine). */
  baseUrl?: string;
  prompt: TokenPrompt;
  fetch?: typeof fetch;
  eventSource?: EventSourceFactory;
}

class FetchTransport implements Transport {
  constructor(
    private readonly base: string,
    private readonly tokens: TokenKeeper,
    private readonly doFetch: typeof fetch,
  ) {}

  async call(method: Method, path: string, body: unknown, auth: Auth): Promise<Answer> {
    let token: string | null = null;
    if (auth === 'admin' || auth === 'read') {
      const why =
        auth === 'admin'
          ? 'This action needs an admin token.'
          : 'This view needs a read or admin token.';
      token = await this.tokens.obtain(why);
      if (!token) throw noToken();
    } else if (auth === 'optional') {
      token = this.tokens.peek();
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = `Bearer ${token}`;
    let res: Response;
    try {
      res = await this.doFetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw unreachable(e instanceof Error ? e.message : String(e));
    }
    if (res.status === 401 && token) this.tokens.forget();
    const type = res.headers.get('content-type') ?? '';
    let parsed: unknown;
    try {
      parsed = type.includes('json') ? await res.json() : await res.text();
    } catch {
      parsed = null;
    }
    return { status: res.status, body: parsed };
  }
}

export class HttpEngine extends RestEngine {
  readonly kind = 'http' as const;
  protected readonly transport: Transport;
  readonly tokens: TokenKeeper;
  private readonly base: string;
  private readonly makeEventSource?: EventSourceFactory;

  constructor(opts: HttpEngineOptions) {
    super();
    this.base = (opts.baseUrl ?? '').replace(/\/$/, '');
    this.tokens = new TokenKeeper(opts.prompt);
    const f = opts.fetch ?? ((input, init) => fetch(input, init));
    this.transport = new FetchTransport(this.base, this.tokens, f);
    this.makeEventSource = opts.eventSource;
  }

  hasToken(): boolean {
    return this.tokens.peek() !== null;
  }

  async signIn(): Promise<boolean> {
    this.tokens.forget();
    return (await this.tokens.obtain('Enter a read or admin token for this engine.')) !== null;
  }

  async connectionInfo(): Promise<ConnectionInfo> {
    return { url: this.base || window.location.origin, mode: 'web' };
  }

  subscribe(handler: StreamHandler): () => void {
    return openStream(`${this.base}/v1/stream`, handler, this.makeEventSource);
  }

  /** The report is public: a plain link the browser downloads. */
  async replayReport(id: number): Promise<ReportLink> {
    return { kind: 'url', url: this.replayReportUrl(id) };
  }

  replayReportUrl(id: number): string {
    return `${this.base}/v1/replay/${id}/report.html`;
  }
}

