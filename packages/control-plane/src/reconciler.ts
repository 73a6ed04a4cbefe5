import { and, eq, inArray, sql } from "drizzle-orm";
import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import {
  SandboxState,
  TemplateType,
  type GetHostInfoResponse,
} from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import type { AgentPool } from "./agents.ts";
import type { Db } from "./db/open.ts";
import { PLATFORM_TEAM_ID, hosts, sandboxes, templates, type SandboxStatus } from "./db/schema.ts";
import { Periodic } from "./periodic.ts";
import type { HostRow } from "./scheduler.ts";

export interface ReconcilerOptions {
  intervalMs: number;
  /** A host unheard of for this long turns `unreachable`. */
  hostTimeoutMs: number;
  /** Per-call deadline when polling an agent. */
  callTimeoutMs?: number;
  /**
   * A `pending` row older than this whose VM its agent does not list was
   * orphaned by a control plane that died mid-create; it becomes `error`.
   */
  pendingGraceMs?: number;
}

/**
 * Brings the database in line with what the agents report. Each pass polls
 * every host (GetHostInfo doubles as the heartbeat, ListTemplates registers
 * base images, ListSandboxes settles sandbox rows). A running row whose VM
 * the agent no longer has becomes `paused` if the agent auto-paused it,
 * else `stopped`; paused sandboxes are expected to be absent. A host that
 * stays silent turns `unreachable` and its running sandboxes `unknown`.
 */
export class Reconciler {
  readonly #db: Db;
  readonly #agents: AgentPool;
  readonly #log: Logger;
  readonly #options: ReconcilerOptions;
  readonly #loop: Periodic;

  constructor(db: Db, agents: AgentPool, log: Logger, options: ReconcilerOptions) {
    this.#db = db;
    this.#agents = agents;
    this.#log = log;
    this.#options = options;
    this.#loop = new Periodic("reconcile pass", options.intervalMs, log, () => this.#pass());
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** One pass over every host; passes never overlap. */
  runOnce(): Promise<void> {
    return this.#loop.runOnce();
  }

  async #pass(): Promise<void> {
    const all = await this.#db.select().from(hosts);
    await Promise.all(all.map((host) => this.syncHost(host)));
  }

  /** Polls one host and applies what it reports; failures mark it unreachable after the timeout. */
  async syncHost(host: HostRow): Promise<void> {
    const timeout = this.#options.callTimeoutMs ?? 5_000;
    let info: GetHostInfoResponse;
    // Sandboxes that start running after this are not in the host's measurement.
    const asked = new Date();
    try {
      info = await this.#agents.call(host, (a, o) => a.getHostInfo({}, o), timeout);
    } catch (err) {
      const lastSeen = host.lastSeenAt?.getTime() ?? host.createdAt.getTime();
      if (host.status === "ready" && Date.now() - lastSeen > this.#options.hostTimeoutMs) {
        this.#log.warn(
          { host: host.id, address: host.address, err: messageOf(err) },
          "host unreachable",
        );
        await this.#db.update(hosts).set({ status: "unreachable" }).where(eq(hosts.id, host.id));
        await this.#markUnknown(host);
      } else if (host.status === "unreachable") {
        // Also after a control plane restart that came between the two updates above.
        await this.#markUnknown(host);
      }
      return;
    }
    await recordHeartbeat(this.#db, host.id, {
      total_vcpus: info.totalVcpus,
      total_memory_mb: Number(info.totalMemoryMb),
      free_disk_mb: Number(info.freeDiskMb),
      vmm: info.vmm,
      storage: info.storage,
      version: info.version,
      warm_sandboxes: info.warmSandboxes,
      usage: info.usage
        ? {
            cpu_busy_cores: info.usage.cpuBusyCores,
            memory_used_mb: Number(info.usage.memoryUsedMb),
            vmm_memory_mb: Number(info.usage.vmmMemoryMb),
            measured_at: asked,
          }
        : null,
    });
    if (host.status !== "ready") this.#log.info({ host: host.id }, "host reachable again");
    try {
      await this.#syncTemplates(host);
      await this.#syncSandboxes(host);
    } catch (err) {
      this.#log.warn({ host: host.id, err: messageOf(err) }, "reconcile failed");
    }
  }

  /**
   * A running sandbox on a host that does not answer may be running or gone
   * with its host: `unknown` until the host answers and settles it. Paused
   * ones stay paused (their state is on the host's disk, unchanging).
   */
  async #markUnknown(host: HostRow): Promise<void> {
    const marked = await this.#db
      .update(sandboxes)
      .set({ status: "unknown", updatedAt: new Date() })
      .where(and(eq(sandboxes.hostId, host.id), eq(sandboxes.status, "running")))
      .returning({ id: sandboxes.id });
    if (marked.length > 0) {
      this.#log.warn(
        { host: host.id, sandboxIds: marked.map((m) => m.id) },
        "sandboxes of an unreachable host marked unknown",
      );
    }
  }

  async #syncTemplates(host: HostRow): Promise<void> {
    const res = await this.#agents.call(host, (a, o) => a.listTemplates({}, o), 10_000);
    for (const t of res.templates) {
      if (t.type !== TemplateType.BASE) continue;
      const values = {
        teamId: PLATFORM_TEAM_ID,
        name: t.name,
        type: "base" as const,
        vcpus: t.vcpus,
        memoryMb: t.memoryMb,
        sizeBytes: Number(t.sizeBytes),
      };
      // A team's snapshot never turns into a platform template by name collision.
      await this.#db
        .insert(templates)
        .values(values)
        .onConflictDoUpdate({
          target: templates.name,
          set: { vcpus: values.vcpus, memoryMb: values.memoryMb, sizeBytes: values.sizeBytes },
          setWhere: eq(templates.teamId, PLATFORM_TEAM_ID),
        });
    }
  }

  async #syncSandboxes(host: HostRow): Promise<void> {
    const res = await this.#agents.call(host, (a, o) => a.listSandboxes({}, o), 10_000);
    const reported = new Map(res.sandboxes.map((s) => [s.sandboxId, s]));
    const autoPaused = new Set(res.autoPausedSandboxIds);
    const rows = await this.#db
      .select({ id: sandboxes.id, status: sandboxes.status, createdAt: sandboxes.createdAt })
      .from(sandboxes)
      .where(
        and(
          eq(sandboxes.hostId, host.id),
          inArray(sandboxes.status, ["pending", "running", "paused", "unknown"]),
        ),
      );
    const grace = this.#options.pendingGraceMs ?? 15 * 60_000;
    for (const row of rows) {
      const vm = reported.get(row.id);
      let next: SandboxStatus | undefined;
      let error = "";
      if (row.status === "pending") {
        if (vm || Date.now() - row.createdAt.getTime() < grace) continue;
        next = "error";
        error = "creation was interrupted before the host started the sandbox";
      } else if (row.status === "running" || row.status === "unknown") {
        // An unknown row's host answers again: what it reports settles the row.
        if (!vm) next = autoPaused.has(row.id) ? "paused" : "stopped";
        else if (vm.state === SandboxState.RUNNING && row.status === "unknown") next = "running";
        else if (vm.state === SandboxState.PAUSED) next = "paused";
        else if (vm.state === SandboxState.STOPPED) next = "stopped";
        else if (vm.state === SandboxState.FAILED) {
          next = "error";
          error = vm.error || "the sandbox failed on its host";
        }
      } else if (vm?.state === SandboxState.RUNNING) {
        next = "running";
      }
      if (!next) continue;
      // Conditional on the status we read, so a concurrent pause or resume wins.
      await this.#db
        .update(sandboxes)
        .set({ status: next, updatedAt: new Date(), ...(error ? { error } : {}) })
        .where(and(eq(sandboxes.id, row.id), eq(sandboxes.status, row.status)));
      this.#log.info({ sandboxId: row.id, from: row.status, to: next }, "reconciled sandbox");
    }
  }
}

/** What a host measured itself using (see hostagent.v1.HostUsage). */
export interface MeasuredUsage {
  cpu_busy_cores: number;
  memory_used_mb: number;
  vmm_memory_mb: number;
  /** When the measurement was asked for. */
  measured_at: Date;
}

export interface Capacity {
  total_vcpus: number;
  total_memory_mb: number;
  free_disk_mb: number;
  vmm?: string | undefined;
  storage?: string | undefined;
  version?: string | undefined;
  /** Warm pool entries ready on the host; absent: unchanged. */
  warm_sandboxes?: number | undefined;
  /** Null: the host does not measure (placement counts what its sandboxes declare); absent: unchanged. */
  usage?: MeasuredUsage | null | undefined;
}

const INT_MAX = 2 ** 31 - 1;

function usageColumns(u: MeasuredUsage | null) {
  return {
    cpuBusyCores: u ? u.cpu_busy_cores : null,
    memoryUsedMb: u ? Math.min(u.memory_used_mb, INT_MAX) : null,
    vmmMemoryMb: u ? Math.min(u.vmm_memory_mb, INT_MAX) : null,
    measuredAt: u ? u.measured_at : null,
  };
}

export async function recordHeartbeat(db: Db, hostId: string, c: Capacity): Promise<void> {
  await db
    .update(hosts)
    .set({
      status: "ready",
      lastSeenAt: sql`now()`,
      totalVcpus: c.total_vcpus,
      totalMemoryMb: Math.min(c.total_memory_mb, INT_MAX),
      freeDiskMb: Math.min(c.free_disk_mb, INT_MAX),
      ...(c.usage !== undefined ? usageColumns(c.usage) : {}),
      ...(c.vmm !== undefined ? { vmm: c.vmm } : {}),
      ...(c.storage !== undefined ? { storage: c.storage } : {}),
      ...(c.version !== undefined ? { version: c.version } : {}),
      ...(c.warm_sandboxes !== undefined
        ? { warmSandboxes: Math.min(c.warm_sandboxes, INT_MAX) }
        : {}),
    })
    .where(eq(hosts.id, hostId));
}
