import { and, eq, inArray, sql } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Db } from "./db/open.ts";
import { hosts, sandboxes } from "./db/schema.ts";

export interface Overcommit {
  /** vCPUs are time-shared; idle sandboxes cost little CPU. */
  cpu: number;
  memory: number;
  /** Writable layers are sparse: a 20 GiB disk costs what is written to it. */
  disk: number;
}

export const DEFAULT_OVERCOMMIT: Overcommit = { cpu: 4, memory: 1, disk: 8 };

// Any constant works; it only has to be the same for every control plane instance.
const PLACEMENT_LOCK = 0x77_72_70_6c;

export interface Demand {
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
}

export type HostRow = typeof hosts.$inferSelect;

interface Load {
  vcpus: number;
  memoryMb: number;
  count: number;
}

/**
 * Placement: a ready host with room for the demand, least loaded first. Load
 * counts the sandboxes that hold CPU and memory (pending, running, and unknown
 * ones, which may still run); paused ones only hold disk, which the host
 * reports as free space.
 */
export class Placement {
  readonly #db: Db;
  readonly #overcommit: Overcommit;

  constructor(db: Db, overcommit: Overcommit = DEFAULT_OVERCOMMIT) {
    this.#db = db;
    this.#overcommit = overcommit;
  }

  /** The best host for the demand; `only` restricts it to one host (a snapshot's). */
  pick(demand: Demand, only?: string): Promise<HostRow> {
    return this.#pick(this.#db, demand, only);
  }

  /**
   * Picks a host and reserves room on it (`reserve` inserts the pending row)
   * under one database-wide lock, so concurrent creates, on this or another
   * control plane instance, see each other's load instead of all choosing the
   * host that was least loaded before any of them.
   */
  place<T>(
    demand: Demand,
    only: string | undefined,
    reserve: (host: HostRow, tx: Db) => Promise<T>,
  ): Promise<T> {
    return this.#db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${PLACEMENT_LOCK})`);
      return reserve(await this.#pick(tx, demand, only), tx);
    });
  }

  async #pick(db: Db, demand: Demand, only: string | undefined): Promise<HostRow> {
    const candidates = await db
      .select()
      .from(hosts)
      .where(only ? and(eq(hosts.status, "ready"), eq(hosts.id, only)) : eq(hosts.status, "ready"));
    if (candidates.length === 0) {
      throw new WrennError(
        only ? "unavailable" : "resource_exhausted",
        only
          ? "the host that holds this sandbox's or template's snapshot is not reachable"
          : "no host is registered and reachable; start a host agent and register it",
      );
    }
    const loads = await this.#loads(
      db,
      candidates.map((h) => h.id),
    );
    let best: { host: HostRow; score: number; count: number } | undefined;
    for (const host of candidates) {
      const load = loads.get(host.id) ?? { vcpus: 0, memoryMb: 0, count: 0 };
      const cpuCap = host.totalVcpus * this.#overcommit.cpu;
      const memCap = host.totalMemoryMb * this.#overcommit.memory;
      const fits =
        load.vcpus + demand.vcpus <= cpuCap &&
        load.memoryMb + demand.memoryMb <= memCap &&
        demand.diskSizeMb <= host.freeDiskMb * this.#overcommit.disk;
      if (!fits) continue;
      const score = Math.max(
        (load.vcpus + demand.vcpus) / cpuCap,
        (load.memoryMb + demand.memoryMb) / memCap,
      );
      if (
        !best ||
        score < best.score ||
        (score === best.score && load.count < best.count) ||
        (score === best.score && load.count === best.count && host.id < best.host.id)
      ) {
        best = { host, score, count: load.count };
      }
    }
    if (!best) {
      throw new WrennError(
        "resource_exhausted",
        `no host has room for ${demand.vcpus} vCPUs, ${demand.memoryMb} MiB memory and a ${demand.diskSizeMb} MiB disk; stop or pause sandboxes, or add a host`,
      );
    }
    return best.host;
  }

  async #loads(db: Db, hostIds: string[]): Promise<Map<string, Load>> {
    const rows = await db
      .select({
        hostId: sandboxes.hostId,
        vcpus: sql<string>`coalesce(sum(${sandboxes.vcpus}), 0)`,
        memoryMb: sql<string>`coalesce(sum(${sandboxes.memoryMb}), 0)`,
        count: sql<string>`count(*)`,
      })
      .from(sandboxes)
      .where(
        and(
          inArray(sandboxes.hostId, hostIds),
          inArray(sandboxes.status, ["pending", "running", "unknown"]),
        ),
      )
      .groupBy(sandboxes.hostId);
    const loads = new Map<string, Load>();
    for (const r of rows) {
      if (r.hostId) {
        loads.set(r.hostId, {
          vcpus: Number(r.vcpus),
          memoryMb: Number(r.memoryMb),
          count: Number(r.count),
        });
      }
    }
    return loads;
  }
}
