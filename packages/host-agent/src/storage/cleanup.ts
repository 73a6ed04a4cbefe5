/**
 * Undo steps for a multi-step setup: they run newest first and without the
 * caller's signal, so a cancelled request still releases what it made. The
 * first step that fails stops the rest — later steps (like dropping the base
 * loop reference) are unsafe while an earlier resource still exists.
 */
import type { Logger } from "@wrenn/shared/log.ts";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";

interface Step {
  what: string;
  fn: () => Promise<unknown>;
}

export class Undo {
  private steps: Step[] = [];
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  push(what: string, fn: () => Promise<unknown>): void {
    this.steps.push({ what, fn });
  }

  private async unwind(): Promise<{ err: unknown; left: string[] } | null> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const [i, step] of steps.entries()) {
      try {
        await step.fn();
      } catch (err) {
        const left = steps.slice(i).map((s) => s.what);
        this.log.error({ err, left }, "storage cleanup failed; resources remain");
        return { err, left };
      }
    }
    return null;
  }

  /** Releases temporary resources after a success; throws if one cannot be released. */
  async run(what: string): Promise<void> {
    const failed = await this.unwind();
    if (failed) {
      throw new WrennError(
        "internal",
        `${what}: releasing ${failed.left.join(", ")} failed: ${messageOf(failed.err)}`,
        { cause: failed.err },
      );
    }
  }

  /** Runs the undo steps and rethrows `cause`, noting a cleanup that failed. */
  async fail(cause: unknown): Promise<never> {
    const failed = await this.unwind();
    if (!failed) throw cause;
    const code = cause instanceof WrennError ? cause.code : "internal";
    throw new WrennError(
      code,
      `${messageOf(cause)}; cleanup then failed (${messageOf(failed.err)}), still held: ${failed.left.join(", ")}`,
      { cause },
    );
  }
}

/** Throws `cancelled` once the caller gave up; used between steps. */
export function checkSignal(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) {
    throw new WrennError("cancelled", `${what}: cancelled`, { cause: signal.reason });
  }
}
