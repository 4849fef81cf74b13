// The engine module's front door: picks the implementation for where the page runs
// (Tauri webview or browser) and re-exports the types pages use.

import { HttpEngine } from './http';
import { TauriEngine, inTauri } from './tauri';
import type { TokenPrompt } from './token';
import type { Engine } from './types';

export * from './types';
export { EngineError, describe } from './errors';

export function createEngine(prompt: TokenPrompt): Engine {
  return inTauri() ? new TauriEngine() : new HttpEngine({ prompt });
}
