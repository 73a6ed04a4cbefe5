import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

/**
 * A pass run every `intervalMs` (counted from the end of the previous one),
 * never two at once: a `runOnce()` while one runs joins it. A failed pass on
 * the timer is logged and the next one still comes.
 */
export class Periodic {
  readonly #pass: () => Promise<void>;
  readonly #intervalMs: number;
  readonly #log: Logger;
  readonly #what: string;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(what: string, intervalMs: number, log: Logger, pass: () => Promise<void>) {
    this.#what = what;
    this.#intervalMs = intervalMs;
    this.#log = log;
    this.#pass = pass;
  }

  start(): void {
    const tick = () => {
      this.#timer = setTimeout(() => {
        void this.runOnce()
          .catch((err: unknown) => this.#log.warn({ err: messageOf(err) }, `${this.#what} failed`))
          .finally(() => {
            if (this.#timer) tick();
          });
      }, this.#intervalMs);
    };
    tick();
  }

  /** Stops the timer and waits for a pass under way. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  runOnce(): Promise<void> {
    this.#running ??= this.#pass().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }
}
