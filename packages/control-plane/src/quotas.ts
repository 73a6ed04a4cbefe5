import { and, eq, inArray, sql } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { requireAdmin, type Caller } from "./context.ts";
import type { Db } from "./db/open.ts";
import { sandboxes, teams } from "./db/schema.ts";
import { LimitError } from "./errors.ts";

/** What one team may hold at once. */
export interface TeamQuota {
  /** Sandboxes that run (pending, running, unknown); paused ones do not count. */
  sandboxes: number;
  /** vCPUs of those sandboxes. */
  vcpus: number;
  /** Memory of those sandboxes (MiB). */
  memoryMb: number;
  /** Disks of every sandbox kept, paused ones too (MiB). */
  diskMb: number;
}

/** Generous: they stop one team from taking every host, not a team's ordinary use. */
export const DEFAULT_TEAM_QUOTA: TeamQuota = {
  sandboxes: 100,
  vcpus: 200,
  memoryMb: 400 * 1024,
  diskMb: 4 * 1024 * 1024,
};

const NAMES: Record<keyof TeamQuota, string> = {
  sandboxes: "running sandboxes",
  vcpus: "vCPUs",
  memoryMb: "memory (MiB)",
  diskMb: "disk (MiB)",
};

const KEYS = Object.keys(NAMES) as Array<keyof TeamQuota>;

const RUNNING = ["pending", "running", "unknown"] as const;
const KEPT = ["pending", "running", "paused", "unknown"] as const;

export interface TeamLimits {
  limits: TeamQuota;
  /** Which limits an admin set for this team (the others are the default). */
  custom: Record<keyof TeamQuota, boolean>;
  usage: TeamQuota;
}

/** Per-team limits: the control plane's defaults, or what a platform admin set for a team. */
export class Quotas {
  readonly #db: Db;
  readonly #defaults: TeamQuota;

  constructor(db: Db, defaults: Partial<TeamQuota> = {}) {
    this.#db = db;
    this.#defaults = { ...DEFAULT_TEAM_QUOTA, ...defaults };
  }

  /**
   * A team's limits and what it holds, in one query: a create asks for
   * both in the placement's transaction, where every statement on an
   * embedded PGlite is work on the control plane's one thread.
   */
  async #read(db: Db, teamId: string): Promise<TeamLimits> {
    const running = inArray(sandboxes.status, [...RUNNING]);
    const usage = db
      .select({
        sandboxes: sql<string>`count(*) filter (where ${running})`.as("used_sandboxes"),
        vcpus: sql<string>`coalesce(sum(${sandboxes.vcpus}) filter (where ${running}), 0)`.as(
          "used_vcpus",
        ),
        memoryMb: sql<string>`coalesce(sum(${sandboxes.memoryMb}) filter (where ${running}), 0)`.as(
          "used_memory_mb",
        ),
        diskMb: sql<string>`coalesce(sum(${sandboxes.diskSizeMb}), 0)`.as("used_disk_mb"),
      })
      .from(sandboxes)
      .where(and(eq(sandboxes.teamId, teamId), inArray(sandboxes.status, [...KEPT])))
      .as("usage");
    // An aggregate without GROUP BY is always one row: the cross join keeps the team's.
    const [t] = await db
      .select({
        sandboxes: teams.maxSandboxes,
        vcpus: teams.maxVcpus,
        memoryMb: teams.maxMemoryMb,
        diskMb: teams.maxDiskMb,
        used: {
          sandboxes: usage.sandboxes,
          vcpus: usage.vcpus,
          memoryMb: usage.memoryMb,
          diskMb: usage.diskMb,
        },
      })
      .from(teams)
      .crossJoin(usage)
      .where(eq(teams.id, teamId));
    if (!t) throw new WrennError("not_found", `team ${teamId} not found`);
    const d = this.#defaults;
    return {
      limits: {
        sandboxes: t.sandboxes ?? d.sandboxes,
        vcpus: t.vcpus ?? d.vcpus,
        memoryMb: t.memoryMb ?? d.memoryMb,
        diskMb: t.diskMb ?? d.diskMb,
      },
      custom: {
        sandboxes: t.sandboxes !== null,
        vcpus: t.vcpus !== null,
        memoryMb: t.memoryMb !== null,
        diskMb: t.diskMb !== null,
      },
      usage: {
        sandboxes: Number(t.used.sandboxes),
        vcpus: Number(t.used.vcpus),
        memoryMb: Number(t.used.memoryMb),
        diskMb: Number(t.used.diskMb),
      },
    };
  }

  /**
   * Refuses (429 `quota_exceeded`) what would take the team past a limit,
   * and counts what it admits as held for the rest of `tx`. Run it in the
   * transaction that then reserves the room (the placement lock), so
   * concurrent requests see each other; requests placed in one transaction
   * read the team's usage once and count against each other here.
   */
  async admit(tx: Db, teamId: string, demand: TeamQuota): Promise<void> {
    let teams = this.#held.get(tx);
    if (!teams) this.#held.set(tx, (teams = new Map()));
    let team = teams.get(teamId);
    if (!team) teams.set(teamId, (team = await this.#read(tx, teamId)));
    const { limits, usage } = team;
    for (const key of KEYS) {
      if (demand[key] > 0 && usage[key] + demand[key] > limits[key]) {
        throw new LimitError(
          "quota_exceeded",
          `team quota for ${NAMES[key]} exceeded: ${usage[key]} in use + ${demand[key]} asked > ${limits[key]}; pause or stop sandboxes, or ask a platform admin to raise the limit`,
        );
      }
    }
    for (const key of KEYS) usage[key] += demand[key];
  }

  /** Per transaction, each team's limits and usage with what it admitted. */
  readonly #held = new WeakMap<Db, Map<string, TeamLimits>>();

  async get(caller: Caller, teamId: string): Promise<TeamLimits> {
    requireAdmin(caller);
    return this.#read(this.#db, teamId);
  }

  /** Sets a team's limits; null puts one back to the default, absent leaves it. */
  async set(
    caller: Caller,
    teamId: string,
    values: { [K in keyof TeamQuota]?: number | null | undefined },
  ): Promise<TeamLimits> {
    requireAdmin(caller);
    const set: Partial<typeof teams.$inferInsert> = {};
    if (values.sandboxes !== undefined) set.maxSandboxes = values.sandboxes;
    if (values.vcpus !== undefined) set.maxVcpus = values.vcpus;
    if (values.memoryMb !== undefined) set.maxMemoryMb = values.memoryMb;
    if (values.diskMb !== undefined) set.maxDiskMb = values.diskMb;
    if (Object.keys(set).length > 0) {
      const done = await this.#db.update(teams).set(set).where(eq(teams.id, teamId)).returning();
      if (done.length === 0) throw new WrennError("not_found", `team ${teamId} not found`);
    }
    return this.get(caller, teamId);
  }
}
