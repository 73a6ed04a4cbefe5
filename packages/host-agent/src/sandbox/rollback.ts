import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

/**
 * The one way a lifecycle step undoes itself: each thing it acquires pushes
 * how to give it back; on failure every undo runs, newest first, each even
 * if an earlier one failed (its failure is logged, the rest still run).
 */
export class Rollback {
  readonly #undo: Array<{ step: string; fn: () => Promise<unknown> }> = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  push(step: string, fn: () => Promise<unknown>): void {
    this.#undo.push({ step, fn });
  }

  /** Undoes everything pushed so far, newest first; returns the steps that failed. */
  async run(): Promise<string[]> {
    const failed: string[] = [];
    for (const { step, fn } of this.#undo.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        failed.push(step);
        this.#log.error({ step, err: messageOf(err) }, "undo step failed");
      }
    }
    return failed;
  }
}
