import { and, eq, inArray, sql } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Db } from "./db/open.ts";
import { hosts, sandboxes } from "./db/schema.ts";
import type { SandboxRow } from "./sandboxes.ts";

/**
 * How far placement may go past a host's capacity. A host reports what it
 * really uses (CPU busy, memory in use); sandboxes it has not measured yet
 * (being created, or started since its last report) count as they declare.
 */
export interface Overcommit {
  /**
   * vCPU-equivalents a core may carry: the host's measured busy cores plus
   * the vCPUs of sandboxes not measured yet (a booting guest keeps its vCPUs
   * busy). An idle guest costs a few percent of a core, so this is high;
   * set it to 1 to refuse new sandboxes on a host whose CPUs are saturated.
   */
  cpu: number;
  /**
   * What the live sandboxes declare may total this × the host's memory: an
   * idle guest touches a fraction of its RAM. It bounds what guests could
   * grow to if they all woke; the host's real free memory is never
   * overcommitted (see reserveMemoryMb).
   */
  memory: number;
  /** Writable layers are sparse: a 20 GiB disk costs what is written to it. */
  disk: number;
  /**
   * Memory kept free on every host: measured use plus the declared memory of
   * sandboxes not measured yet plus the new one never pass the host's
   * memory minus this.
   */
  reserveMemoryMb: number;
}

export const DEFAULT_OVERCOMMIT: Overcommit = {
  cpu: 16,
  memory: 3,
  disk: 8,
  reserveMemoryMb: 1024,
};

// Any constant works; it only has to be the same for every control plane instance.
const PLACEMENT_LOCK = 0x77_72_70_6c;

export interface Demand {
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
}

export type HostRow = typeof hosts.$inferSelect;

/** What a host's live sandboxes declare, and the part of it the host has not measured yet. */
interface Load {
  vcpus: number;
  memoryMb: number;
  count: number;
  unmeasuredVcpus: number;
  unmeasuredMemoryMb: number;
}

const NO_LOAD: Load = {
  vcpus: 0,
  memoryMb: 0,
  count: 0,
  unmeasuredVcpus: 0,
  unmeasuredMemoryMb: 0,
};

type NewSandbox = typeof sandboxes.$inferInsert;

/** How a placement holds the room it took: the sandbox's pending row. */
export type Reservation =
  /** A create's new row, for the host it was placed on. */
  | { insert: (host: HostRow) => NewSandbox }
  /** A resume's: the paused row `resume` names turns pending. */
  | { resume: string };

export interface PlaceRequest {
  demand: Demand;
  /** The one host it must go to (a snapshot's). */
  only?: string | undefined;
  /** May refuse the request; reads, never writes. */
  admit?: (tx: Db) => Promise<void>;
  reservation: Reservation;
}

export interface Placed {
  host: HostRow;
  /**
   * The pending row. Undefined when none was written: the insert
   * conflicted (another request took its client request id), or the row
   * to resume was no longer paused.
   */
  row: SandboxRow | undefined;
}

interface Queued {
  request: PlaceRequest;
  resolve: (placed: Placed) => void;
  reject: (err: unknown) => void;
}

/** Bounds how long one transaction holds the placement lock. */
const MAX_BATCH = 32;

/** What a pending sandbox placed on `hostId` adds to its load. */
function addLoad(loads: Map<string, Load>, hostId: string, demand: Demand): void {
  const load = loads.get(hostId) ?? NO_LOAD;
  loads.set(hostId, {
    vcpus: load.vcpus + demand.vcpus,
    memoryMb: load.memoryMb + demand.memoryMb,
    count: load.count + 1,
    unmeasuredVcpus: load.unmeasuredVcpus + demand.vcpus,
    unmeasuredMemoryMb: load.unmeasuredMemoryMb + demand.memoryMb,
  });
}

/** One host's room for a demand: its fullest resource after placing it (0..1), or what is short. */
export type Fit = { ok: true; score: number } | { ok: false; short: string };

/**
 * Admission on one host. CPU: measured busy cores plus unmeasured vCPUs plus
 * the demand, against cores × overcommit. Memory, twice: measured use plus
 * unmeasured declared memory plus the demand must fit the host's memory
 * less the reserve (real memory, never overcommitted), and everything
 * declared plus the demand must fit memory × overcommit. A host that does
 * not measure counts every sandbox as declared, against its memory.
 */
export function fit(host: HostRow, load: Load, demand: Demand, o: Overcommit): Fit {
  const measured = host.measuredAt !== null && host.memoryUsedMb !== null;
  const busy = measured ? (host.cpuBusyCores ?? 0) : 0;
  const cpuLoad = busy + (measured ? load.unmeasuredVcpus : load.vcpus) + demand.vcpus;
  const cpuCap = host.totalVcpus * o.cpu;
  const inUse = measured ? (host.memoryUsedMb ?? 0) + load.unmeasuredMemoryMb : load.memoryMb;
  // Without a measurement what is declared is all there is to go by: it
  // must fit the host's memory (the reserve is for use nobody declared).
  const realCap = measured ? host.totalMemoryMb - o.reserveMemoryMb : host.totalMemoryMb;
  const declaredCap = host.totalMemoryMb * o.memory;
  const diskCap = host.freeDiskMb * o.disk;
  const short: string[] = [];
  if (inUse + demand.memoryMb > realCap) {
    const free = Math.max(0, realCap - inUse);
    short.push(
      measured
        ? `memory: ${free} MiB free (${host.memoryUsedMb} MiB in use + ${load.unmeasuredMemoryMb} MiB for sandboxes starting, of ${host.totalMemoryMb} MiB less a ${o.reserveMemoryMb} MiB reserve)`
        : `memory: ${free} MiB free (${load.memoryMb} MiB declared, of ${host.totalMemoryMb} MiB; this host does not report what it uses)`,
    );
  }
  if (load.memoryMb + demand.memoryMb > declaredCap) {
    short.push(
      `declared memory: ${load.memoryMb} MiB of ${declaredCap} MiB (${o.memory} × ${host.totalMemoryMb} MiB) taken`,
    );
  }
  if (cpuLoad > cpuCap) {
    short.push(
      measured
        ? `CPU: ${busy.toFixed(2)} cores busy + ${load.unmeasuredVcpus} vCPUs starting, of ${cpuCap} (${o.cpu} × ${host.totalVcpus} cores)`
        : `CPU: ${load.vcpus} vCPUs declared, of ${cpuCap} (${o.cpu} × ${host.totalVcpus} cores)`,
    );
  }
  if (demand.diskSizeMb > diskCap) {
    short.push(`disk: ${host.freeDiskMb} MiB free (× ${o.disk} for sparse disks)`);
  }
  if (short.length > 0) return { ok: false, short: short.join("; ") };
  return {
    ok: true,
    score: Math.max(
      cpuLoad / cpuCap,
      (inUse + demand.memoryMb) / realCap,
      (load.memoryMb + demand.memoryMb) / declaredCap,
    ),
  };
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
  readonly #shared: boolean;

  /**
   * `shared`: other control plane instances may place on the same database
   * (PostgreSQL). An embedded PGlite has one process, and runs one
   * transaction at a time: the lock would be a statement for nothing.
   */
  constructor(db: Db, overcommit: Overcommit = DEFAULT_OVERCOMMIT, shared = true) {
    this.#db = db;
    this.#overcommit = overcommit;
    this.#shared = shared;
  }

  /**
   * Picks a host and reserves room on it under one database-wide lock, so
   * concurrent creates, on this or another control plane instance, see each
   * other's load instead of all choosing the host that was least loaded
   * before any of them.
   *
   * Requests that arrive together share one transaction: one lock, one
   * read of the hosts and their load, one insert of their rows, each placed
   * in turn against the load the ones before it added. "Together": in the
   * same turn of the event loop (a burst's requests are handled one after
   * another, each until it waits on I/O, which the embedded database never
   * makes it do), or while the previous transaction ran. Under a burst of
   * creates that takes most of the round trips off the database (with
   * PGlite, off this process's one thread). A request refused (no room,
   * `admit`) fails alone; if the shared transaction fails, it rolls back
   * and its requests are placed again one by one.
   */
  place(request: PlaceRequest): Promise<Placed> {
    return new Promise<Placed>((resolve, reject) => {
      this.#queue.push({ request, resolve, reject });
      if (!this.#draining) {
        this.#draining = true;
        setImmediate(() => void this.#drain());
      }
    });
  }

  readonly #queue: Queued[] = [];
  #draining = false;

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        await this.#placeAll(this.#queue.splice(0, MAX_BATCH));
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Places `batch` in one transaction; settles each of its requests. */
  async #placeAll(batch: Queued[]): Promise<void> {
    const outcomes: Array<() => void> = [];
    // The batch's rows, by sandbox id: its requests are answered after the commit.
    const rows = new Map<string, SandboxRow>();
    try {
      await this.#db.transaction(async (tx) => {
        if (this.#shared) await tx.execute(sql`select pg_advisory_xact_lock(${PLACEMENT_LOCK})`);
        const { candidates, loads } = await readyHosts(tx);
        const inserts: NewSandbox[] = [];
        const resumes: string[] = [];
        for (const { request, resolve, reject } of batch) {
          const { demand, only, reservation } = request;
          let host: HostRow;
          try {
            host = this.#pick(candidates, loads, demand, only);
            await request.admit?.(tx);
          } catch (err) {
            outcomes.push(() => reject(err));
            continue;
          }
          let id: string;
          if ("insert" in reservation) {
            const values = reservation.insert(host);
            inserts.push(values);
            id = values.id;
          } else {
            resumes.push((id = reservation.resume));
          }
          addLoad(loads, host.id, demand);
          outcomes.push(() => resolve({ host, row: rows.get(id) }));
        }
        // One statement each for all the batch's rows.
        if (inserts.length > 0) {
          for (const row of await tx
            .insert(sandboxes)
            .values(inserts)
            .onConflictDoNothing()
            .returning()) {
            rows.set(row.id, row);
          }
        }
        if (resumes.length > 0) {
          const moved = await tx
            .update(sandboxes)
            .set({ status: "pending", updatedAt: new Date() })
            .where(and(inArray(sandboxes.id, resumes), eq(sandboxes.status, "paused")))
            .returning();
          for (const row of moved) rows.set(row.id, row);
        }
      });
    } catch (err) {
      if (batch.length === 1) {
        batch[0]?.reject(err);
        return;
      }
      for (const one of batch) await this.#placeAll([one]);
      return;
    }
    for (const settle of outcomes) settle();
  }

  /** The least loaded of the ready hosts (or of `only`) with room for `demand`. */
  #pick(
    ready: HostRow[],
    loads: Map<string, Load>,
    demand: Demand,
    only: string | undefined,
  ): HostRow {
    const candidates = only ? ready.filter((h) => h.id === only) : ready;
    if (candidates.length === 0) {
      throw new WrennError(
        only ? "unavailable" : "resource_exhausted",
        only
          ? "the host that holds this sandbox's or template's snapshot is not reachable"
          : "no host is registered and reachable; start a host agent and register it",
      );
    }
    let best: { host: HostRow; score: number; count: number } | undefined;
    const shortages: string[] = [];
    for (const host of candidates) {
      const load = loads.get(host.id) ?? NO_LOAD;
      const f = fit(host, load, demand, this.#overcommit);
      if (!f.ok) {
        shortages.push(candidates.length > 1 ? `host ${host.id}: ${f.short}` : f.short);
        continue;
      }
      const { score } = f;
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
        `no host has room for ${demand.vcpus} vCPUs, ${demand.memoryMb} MiB memory and a ${demand.diskSizeMb} MiB disk — short of ${shortages.slice(0, 5).join(" | ")}; stop or pause sandboxes, or add a host`,
      );
    }
    return best.host;
  }
}

/**
 * The ready hosts and what their live sandboxes hold, in one statement:
 * placement runs under its lock, and with PGlite every statement is a turn
 * of the control plane's own thread.
 */
async function readyHosts(db: Db): Promise<{ candidates: HostRow[]; loads: Map<string, Load> }> {
  // Not measured: still being created, or running since the host's last
  // measurement was asked for (or the host never measured).
  const unmeasured = sql`(${sandboxes.status} = 'pending' or ${hosts.measuredAt} is null or ${sandboxes.updatedAt} >= ${hosts.measuredAt})`;
  const held = db
    .select({
      hostId: sql<string>`${sandboxes.hostId}`.as("load_host_id"),
      vcpus: sql<string>`coalesce(sum(${sandboxes.vcpus}), 0)`.as("load_vcpus"),
      memoryMb: sql<string>`coalesce(sum(${sandboxes.memoryMb}), 0)`.as("load_memory_mb"),
      count: sql<string>`count(*)`.as("load_count"),
      unmeasuredVcpus:
        sql<string>`coalesce(sum(case when ${unmeasured} then ${sandboxes.vcpus} else 0 end), 0)`.as(
          "load_unmeasured_vcpus",
        ),
      unmeasuredMemoryMb:
        sql<string>`coalesce(sum(case when ${unmeasured} then ${sandboxes.memoryMb} else 0 end), 0)`.as(
          "load_unmeasured_memory_mb",
        ),
    })
    .from(sandboxes)
    .innerJoin(hosts, eq(hosts.id, sandboxes.hostId))
    .where(
      and(eq(hosts.status, "ready"), inArray(sandboxes.status, ["pending", "running", "unknown"])),
    )
    .groupBy(sandboxes.hostId)
    .as("held");
  const rows = await db
    .select({
      host: hosts,
      vcpus: held.vcpus,
      memoryMb: held.memoryMb,
      count: held.count,
      unmeasuredVcpus: held.unmeasuredVcpus,
      unmeasuredMemoryMb: held.unmeasuredMemoryMb,
    })
    .from(hosts)
    .leftJoin(held, eq(held.hostId, hosts.id))
    .where(eq(hosts.status, "ready"));
  const loads = new Map<string, Load>();
  for (const r of rows) {
    if (r.count === null) continue;
    loads.set(r.host.id, {
      vcpus: Number(r.vcpus),
      memoryMb: Number(r.memoryMb),
      count: Number(r.count),
      unmeasuredVcpus: Number(r.unmeasuredVcpus),
      unmeasuredMemoryMb: Number(r.unmeasuredMemoryMb),
    });
  }
  return { candidates: rows.map((r) => r.host), loads };
}
