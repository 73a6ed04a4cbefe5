import { and, asc, eq, isNotNull, lt } from "drizzle-orm";
import { isWrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import type { Db } from "./db/open.ts";
import { sandboxes } from "./db/schema.ts";
import { Periodic } from "./periodic.ts";
import { systemCaller, type SandboxService } from "./sandboxes.ts";

/** How long a claimed sandbox is left to the claimant before another pass may try again. */
const LEASE_MS = 60_000;
/** Sandboxes handled per pass; the rest wait for the next one. */
const BATCH = 50;

/**
 * Ends E2B sandboxes at their `endAt`: paused when `autoPause`, else killed.
 * Each row is claimed first by a conditional update that moves its end a
 * lease into the future, so two control planes (or a pass and a user's
 * timeout call that moved the end meanwhile) never both act on it; a claim
 * whose action failed is tried again once the lease runs out.
 */
export class Expiry {
  readonly #db: Db;
  readonly #service: SandboxService;
  readonly #log: Logger;
  readonly #loop: Periodic;

  constructor(db: Db, service: SandboxService, log: Logger, intervalMs: number) {
    this.#db = db;
    this.#service = service;
    this.#log = log;
    // A failed pass is logged; its claims are tried again when their lease runs out.
    this.#loop = new Periodic("expiry pass", intervalMs, log, () =>
      this.#pass().catch((err: unknown) => {
        this.#log.warn({ err: messageOf(err) }, "expiry pass failed");
      }),
    );
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** One pass; passes never overlap. */
  runOnce(): Promise<void> {
    return this.#loop.runOnce();
  }

  async #pass(): Promise<void> {
    const now = new Date();
    const due = await this.#db
      .select({
        id: sandboxes.id,
        teamId: sandboxes.teamId,
        endAt: sandboxes.endAt,
        autoPause: sandboxes.autoPause,
      })
      .from(sandboxes)
      .where(
        and(eq(sandboxes.status, "running"), isNotNull(sandboxes.endAt), lt(sandboxes.endAt, now)),
      )
      .orderBy(asc(sandboxes.endAt))
      .limit(BATCH);
    await Promise.all(due.map((row) => this.#end(row)));
  }

  async #end(row: { id: string; teamId: string; endAt: Date | null; autoPause: boolean }) {
    if (!row.endAt) return;
    const claimed = await this.#db
      .update(sandboxes)
      .set({ endAt: new Date(Date.now() + LEASE_MS) })
      .where(
        and(
          eq(sandboxes.id, row.id),
          eq(sandboxes.status, "running"),
          eq(sandboxes.endAt, row.endAt),
        ),
      )
      .returning({ id: sandboxes.id });
    if (claimed.length === 0) return;
    const caller = systemCaller(row.teamId);
    const action = row.autoPause ? "pause" : "kill";
    try {
      if (row.autoPause) await this.#service.pause(caller, row.id);
      else await this.#service.destroy(caller, row.id);
      this.#log.info({ sandboxId: row.id, action, endAt: row.endAt }, "sandbox reached its end");
    } catch (err) {
      // Someone else paused or killed it meanwhile: nothing left to do.
      if (isWrennError(err) && (err.code === "failed_precondition" || err.code === "not_found")) {
        this.#log.info({ sandboxId: row.id, action, err: err.message }, "sandbox ended meanwhile");
        return;
      }
      this.#log.warn(
        { sandboxId: row.id, action, err: messageOf(err), retryInMs: LEASE_MS },
        "could not end sandbox at its end time",
      );
    }
  }
}
