// How a page says that a load failed: unreachable (it reloads on its own), a missing or
// read-only token (what to do), or the engine's own message.

import { EngineError, describe } from '../engine/errors';
import { notice } from './dom';

export function failureText(what: string, e: unknown): string {
  if (e instanceof EngineError && e.unreachable) {
    return `${what}: the engine is unreachable — retrying every 2 s; this view reloads on its own when it is back.`;
  }
  if (e instanceof EngineError && e.status === 401) return `${what}: ${e.message} Use “Enter token…” in the header, then retry.`;
  if (e instanceof EngineError && e.status === 403) return `${what}: ${e.message}`;
  return `${what}: ${describe(e)}`;
}

export function failureNotice(what: string, e: unknown): HTMLElement {
  return notice('error', failureText(what, e));
}
