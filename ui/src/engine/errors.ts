// EngineError: every failed engine call, whatever the transport, as {status, code, message},
// with the operator-facing wording for the auth failures and an unreachable engine.

export class EngineError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'EngineError';
    this.status = status;
    this.code = code;
  }

  /** The engine could not be reached at all (network, IPC). */
  get unreachable(): boolean {
    return this.status === 0 || this.code === 'unreachable';
  }

  /** The field a 400 names (`invalid weights.pop: …` or `field `name`: …`), if any. */
  get field(): string | null {
    const m = /(?:invalid |field `?)([a-z_]+(?:\.[a-z_]+)*)`?:/.exec(this.message);
    return m ? m[1] : null;
  }
}

/** The error of an HTTP-shaped answer (status ≥ 400, body `{"error": {code, message}}`). */
export function errorFromAnswer(status: number, body: unknown): EngineError {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof err?.code === 'string' ? err.code : defaultCode(status);
  const serverMessage =
    typeof err?.message === 'string' ? err.message : typeof body === 'string' && body ? body : '';
  if ((status === 502 || status === 503 || status === 504) && !err) {
    // A proxy in front of a stopped engine.
    return new EngineError(status, 'unreachable', `The engine is unreachable (${status} from the proxy in front of it).`);
  }
  if (status === 401) {
    return new EngineError(
      401,
      code,
      `Unauthorized: this needs a token${serverMessage ? ` (${serverMessage})` : ''}.`,
    );
  }
  if (status === 403) {
    return new EngineError(403, code, 'Forbidden: this token is read-only; an admin token is needed.');
  }
  return new EngineError(status, code, serverMessage || `The engine answered ${status}.`);
}

function defaultCode(status: number): string {
  switch (status) {
    case 400:
      return 'bad_request';
    case 401:
      return 'unauthorized';
    case 403:
      return 'forbidden';
    case 404:
      return 'not_found';
    case 409:
      return 'conflict';
    default:
      return status >= 500 ? 'server_error' : 'error';
  }
}

/** The engine could not be reached. */
export function unreachable(detail: string): EngineError {
  return new EngineError(0, 'unreachable', `The engine is unreachable (${detail}).`);
}

/** An admin action was cancelled at the token prompt. */
export function noToken(): EngineError {
  return new EngineError(401, 'no_token', 'No token given: this action needs an admin token.');
}

/** A short sentence for a toast or an error state. */
export function describe(e: unknown): string {
  if (e instanceof EngineError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
