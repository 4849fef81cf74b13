// The web console's token keeper: asks the operator once per tab (through an injected prompt,
// the UI's modal) and holds the token in this object only — never in any browser storage.

/** Shows the token prompt; resolves with the token, or null when cancelled. */
export type TokenPrompt = (reason: string) => Promise<string | null>;

export class TokenKeeper {
  #token: string | null = null;
  #asking: Promise<string | null> | null = null;
  #prompt: TokenPrompt;

  constructor(prompt: TokenPrompt) {
    this.#prompt = prompt;
  }

  /** The token if one was given, without asking. */
  peek(): string | null {
    return this.#token;
  }

  /** The token, asking for it if none is held; concurrent callers share one prompt. */
  async obtain(reason: string): Promise<string | null> {
    if (this.#token) return this.#token;
    if (!this.#asking) {
      this.#asking = this.#prompt(reason).then((t) => {
        this.#asking = null;
        const trimmed = t?.trim() || null;
        this.#token = trimmed;
        return trimmed;
      });
    }
    return this.#asking;
  }

  /** Drops a token the engine refused (401), so the next admin action asks again. */
  forget(): void {
    this.#token = null;
  }

  /** Replaces the prompt (the UI installs its modal once it is mounted). */
  setPrompt(prompt: TokenPrompt): void {
    this.#prompt = prompt;
  }
}
