import { eq } from "drizzle-orm";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import type { AgentTarget } from "../agents.ts";
import type { Db } from "../db/open.ts";
import { hosts, sandboxes, type SandboxStatus } from "../db/schema.ts";

/** What the proxy needs to know of a sandbox to forward to it. */
export interface ProxyEntry {
  sandboxId: string;
  teamId: string;
  status: SandboxStatus;
  host: AgentTarget | null;
  secure: boolean;
  allowPublicTraffic: boolean;
  trafficAccessToken: string;
  autoResume: boolean;
}

/** Resumes a paused sandbox for the proxy (autoResume); resolves once it runs. */
export type Resumer = (entry: ProxyEntry) => Promise<void>;

/**
 * Finds a sandbox's host in PostgreSQL for the proxy. Running sandboxes are
 * cached for `ttlMs`, so a stream of requests costs one query per interval
 * (the control plane stays stateless: a stale entry only means a request
 * reaches an agent that answers 502 for a sandbox it no longer runs).
 * Resumes of one sandbox by concurrent requests share one call.
 */
export class SandboxDirectory {
  readonly #db: Db;
  readonly #log: Logger;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, { entry: ProxyEntry; until: number }>();
  readonly #resuming = new Map<string, Promise<void>>();

  constructor(db: Db, log: Logger, ttlMs = 2000) {
    this.#db = db;
    this.#log = log;
    this.#ttlMs = ttlMs;
  }

  async lookup(sandboxId: string): Promise<ProxyEntry | null> {
    const now = Date.now();
    const cached = this.#cache.get(sandboxId);
    if (cached && cached.until > now) return cached.entry;
    const [row] = await this.#db
      .select({
        sandboxId: sandboxes.id,
        teamId: sandboxes.teamId,
        status: sandboxes.status,
        secure: sandboxes.secure,
        allowPublicTraffic: sandboxes.allowPublicTraffic,
        trafficAccessToken: sandboxes.trafficAccessToken,
        autoResume: sandboxes.autoResume,
        address: hosts.address,
        secret: hosts.secret,
      })
      .from(sandboxes)
      .leftJoin(hosts, eq(hosts.id, sandboxes.hostId))
      .where(eq(sandboxes.id, sandboxId));
    if (!row) {
      this.#cache.delete(sandboxId);
      return null;
    }
    const { address, secret, ...rest } = row;
    const entry: ProxyEntry = {
      ...rest,
      host: address === null ? null : { address, secret: secret ?? "" },
    };
    if (entry.status === "running") {
      if (this.#cache.size > 10_000) this.#cache.clear();
      this.#cache.set(sandboxId, { entry, until: now + this.#ttlMs });
    } else {
      this.#cache.delete(sandboxId);
    }
    return entry;
  }

  /** Drops a cached entry (the agent said the sandbox is not running there). */
  forget(sandboxId: string): void {
    this.#cache.delete(sandboxId);
  }

  async resume(entry: ProxyEntry, resume: Resumer): Promise<void> {
    let pending = this.#resuming.get(entry.sandboxId);
    if (!pending) {
      pending = resume(entry)
        .catch((err: unknown) => {
          // A concurrent resume (the user's, another replica's) may have won: fine if it runs.
          if (!(err instanceof WrennError && err.code === "failed_precondition")) throw err;
          this.#log.debug(
            { sandboxId: entry.sandboxId, err: messageOf(err) },
            "proxy: resume raced",
          );
        })
        .finally(() => this.#resuming.delete(entry.sandboxId));
      this.#resuming.set(entry.sandboxId, pending);
    }
    await pending;
    this.forget(entry.sandboxId);
  }
}
