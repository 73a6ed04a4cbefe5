import { randomBytes } from "node:crypto";
import { and, desc, eq, inArray, sql, type SQL } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { InFlight } from "@wrenn/shared/in-flight.ts";
import { timed } from "@wrenn/shared/log.ts";
import type { Caller, Deps } from "./context.ts";
import { newSandboxId } from "./auth/tokens.ts";
import { afterCursor, encodeCursor } from "./cursor.ts";
import {
  PLATFORM_TEAM_ID,
  hosts,
  sandboxes,
  templates,
  type SandboxNetwork,
  type SandboxStatus,
} from "./db/schema.ts";
import type { HostRow } from "./scheduler.ts";

export type SandboxRow = typeof sandboxes.$inferSelect;
export type TemplateRow = typeof templates.$inferSelect;

export interface CreateInput {
  template: string;
  vcpus: number;
  memory_mb: number;
  timeout_sec: number;
  disk_size_mb: number;
  env_vars?: Record<string, string> | undefined;
  metadata?: Record<string, string> | undefined;
  client_request_id?: string | undefined;
  /** E2B's lifetime and options; without it the agent pauses the sandbox when idle past `timeout_sec`. */
  e2b?: E2bOptions | undefined;
}

/** What an E2B create sets beyond /v1's; `endAt` makes the control plane own the deadline. */
export interface E2bOptions {
  endAt: Date;
  autoPause: boolean;
  autoResume: boolean;
  secure: boolean;
  allowPublicTraffic: boolean;
  metadata: Record<string, string>;
  network: SandboxNetwork;
}

/** A caller acting for a team without a request (expiry, the proxy's auto-resume). */
export function systemCaller(teamId: string): Caller {
  return { teamId, role: "admin", userId: null, isAdmin: false, via: "system" };
}

/** Per-sandbox secrets: 192 random bits, header- and URL-safe. */
function newAccessToken(): string {
  return randomBytes(24).toString("base64url");
}

export function sandboxJson(row: SandboxRow) {
  return {
    sandbox_id: row.id,
    template: row.template,
    status: row.status,
    vcpus: row.vcpus,
    memory_mb: row.memoryMb,
    disk_size_mb: row.diskSizeMb,
    timeout_sec: row.timeoutSec,
    host_id: row.hostId,
    client_request_id: row.clientRequestId,
    metadata: row.metadata,
    end_at: row.endAt?.toISOString() ?? null,
    error: row.error,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export function templateJson(row: TemplateRow) {
  return {
    name: row.name,
    type: row.type,
    team_id: row.teamId,
    host_id: row.hostId,
    vcpus: row.vcpus,
    memory_mb: row.memoryMb,
    size_bytes: row.sizeBytes,
    created_at: row.createdAt.toISOString(),
  };
}

const LIVE: SandboxStatus[] = ["pending", "running", "paused", "unknown"];

/** Sandbox lifecycle in the database and on the agents; every query is scoped to the caller's team. */
export class SandboxService {
  readonly #deps: Deps;
  /**
   * Sandboxes whose VM this process is stopping (a destroy or a pause, its
   * own or the expiry loop's): their host may have let them go before the
   * row says so. See `guestGone`.
   */
  readonly #stopping = new Set<string>();
  readonly #templateReads = new InFlight<TemplateRow | undefined>();

  constructor(deps: Deps) {
    this.#deps = deps;
  }

  /** Runs `fn`, the VM's stop and the row's update, with `id` counted as stopping. */
  async #whileStopping<T>(id: string, fn: () => Promise<T>): Promise<T> {
    this.#stopping.add(id);
    try {
      return await fn();
    } finally {
      this.#stopping.delete(id);
    }
  }

  /**
   * For a call into the guest of a running sandbox (through its agent's proxy
   * hop) that failed as `unavailable`: if the sandbox stopped or paused
   * meanwhile (its timeout, a kill), that is the answer, as it would have
   * been a moment later, not the host's trouble (502). Rethrows `err` otherwise.
   */
  async guestGone(caller: Caller, id: string, action: string, err: unknown): Promise<never> {
    if (err instanceof WrennError && err.code === "unavailable") {
      if (this.#stopping.has(id)) {
        throw new WrennError(
          "failed_precondition",
          `cannot ${action} sandbox '${id}': it is being stopped or paused`,
        );
      }
      await this.running(caller, id, action);
    }
    throw err;
  }

  async create(caller: Caller, input: CreateInput): Promise<SandboxRow> {
    const { placement, log } = this.#deps;
    if (input.client_request_id) {
      const existing = await this.#byRequestId(caller, input.client_request_id);
      if (existing) return existing;
    }
    const template = await this.#visibleTemplate(caller, input.template);
    // A snapshot restores the machine it was taken from: its shape is fixed.
    const shape =
      template.type === "snapshot" && template.vcpus > 0
        ? { vcpus: template.vcpus, memoryMb: template.memoryMb }
        : { vcpus: input.vcpus, memoryMb: input.memory_mb };
    // The pending row is the host's reservation: placed and inserted under one lock.
    const { host, row } = await placement.place({
      demand: { ...shape, diskSizeMb: input.disk_size_mb },
      only: template.type === "snapshot" ? (template.hostId ?? undefined) : undefined,
      admit: (tx) =>
        this.#deps.quotas.admit(tx, caller.teamId, {
          sandboxes: 1,
          vcpus: shape.vcpus,
          memoryMb: shape.memoryMb,
          diskMb: input.disk_size_mb,
        }),
      reservation: {
        insert: (host) => ({
          id: newSandboxId(),
          teamId: caller.teamId,
          hostId: host.id,
          template: template.name,
          status: "pending",
          vcpus: shape.vcpus,
          memoryMb: shape.memoryMb,
          diskSizeMb: input.disk_size_mb,
          timeoutSec: input.timeout_sec,
          clientRequestId: input.client_request_id ?? null,
          envdAccessToken: newAccessToken(),
          trafficAccessToken: newAccessToken(),
          metadata: input.metadata ?? {},
          ...(input.e2b ?? {}),
        }),
      },
    });
    if (!row) {
      // Lost a race with the same client request id: the other request's sandbox is the answer.
      const existing = await this.#byRequestId(caller, input.client_request_id ?? "");
      if (existing) return existing;
      throw new WrennError("internal", "sandbox insert conflicted without a matching request id");
    }
    try {
      const res = await timed(
        log,
        "sandbox.create",
        () =>
          this.#deps.agents.call(host, (agent, opts) =>
            agent.createSandbox(
              {
                sandboxId: row.id,
                template: template.name,
                vcpus: shape.vcpus,
                memoryMb: shape.memoryMb,
                // An E2B sandbox's end is the control plane's (the expiry loop), not an idle timer.
                timeoutSec: input.e2b ? 0 : input.timeout_sec,
                diskSizeMb: input.disk_size_mb,
                envVars: input.env_vars ?? {},
                envdAccessToken: row.envdAccessToken,
                network: {
                  allowOut: row.network.allowOut ?? [],
                  denyOut: row.network.denyOut ?? [],
                },
              },
              opts,
            ),
          ),
        { sandboxId: row.id, host: host.address },
      );
      return await this.#set(row.id, {
        status: "running",
        envdAddress: res.sandbox?.envdAddress ?? "",
        // E2B's lifetime counts from when the sandbox runs: a slow start (a busy
        // host) must not eat a short timeout before the caller gets the sandbox.
        ...(row.endAt ? { endAt: new Date(Date.now() + row.timeoutSec * 1000) } : {}),
      });
    } catch (err) {
      const failed = err instanceof WrennError ? err : new WrennError("internal", String(err));
      await this.#set(row.id, { status: "error", error: failed.message });
      throw failed;
    }
  }

  async get(caller: Caller, id: string): Promise<SandboxRow> {
    const [row] = await this.#deps.db
      .select()
      .from(sandboxes)
      .where(and(eq(sandboxes.id, id), eq(sandboxes.teamId, caller.teamId)));
    if (!row) throw new WrennError("not_found", `sandbox '${id}' not found`);
    return row;
  }

  /** Newest first; stopped and failed sandboxes are history, not listed. */
  async list(
    caller: Caller,
    page: { limit: number; nextToken?: string | undefined },
  ): Promise<{ rows: SandboxRow[]; nextToken: string | null }> {
    const where: SQL[] = [eq(sandboxes.teamId, caller.teamId), inArray(sandboxes.status, LIVE)];
    if (page.nextToken) where.push(afterCursor(page.nextToken, "desc", "next_token"));
    const rows = await this.#deps.db
      .select()
      .from(sandboxes)
      .where(and(...where))
      .orderBy(desc(sandboxes.createdAt), desc(sandboxes.id))
      .limit(page.limit + 1);
    const more = rows.length > page.limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { rows, nextToken: more && last ? encodeCursor(last) : null };
  }

  async destroy(caller: Caller, id: string): Promise<void> {
    const row = await this.get(caller, id);
    if (row.status === "stopped") return;
    const host = await this.#hostOf(row, { allowMissing: true });
    await this.#whileStopping(id, async () => {
      if (host) {
        try {
          await this.#deps.agents.call(host, (agent, opts) =>
            agent.destroySandbox({ sandboxId: id }, opts),
          );
        } catch (err) {
          if (!(err instanceof WrennError && err.code === "not_found")) throw err;
        }
      }
      await this.#set(id, { status: "stopped" });
    });
  }

  /** The row in `status`, with its host; 409 otherwise, naming what to do. */
  async #require(
    caller: Caller,
    id: string,
    status: SandboxStatus,
    action: string,
  ): Promise<{ row: SandboxRow; host: HostRow }> {
    const row = await this.get(caller, id);
    requireKnown(row);
    if (row.status !== status) {
      throw new WrennError(
        "failed_precondition",
        `cannot ${action} sandbox '${id}': it is ${row.status}, must be ${status}`,
      );
    }
    const host = await this.#hostOf(row, { allowMissing: false });
    if (!host) throw new WrennError("unavailable", `sandbox '${id}' has no host`);
    return { row, host };
  }

  async running(caller: Caller, id: string, action: string) {
    return this.#require(caller, id, "running", action);
  }

  async ping(caller: Caller, id: string): Promise<void> {
    const { host } = await this.#require(caller, id, "running", "ping");
    await this.#deps.agents.call(host, (a, o) => a.pingSandbox({ sandboxId: id }, o), 15_000);
  }

  async pause(caller: Caller, id: string): Promise<SandboxRow> {
    const { host } = await this.#require(caller, id, "running", "pause");
    return this.#whileStopping(id, async () => {
      await timed(this.#deps.log, "sandbox.pause", () =>
        this.#deps.agents.call(host, (a, o) => a.pauseSandbox({ sandboxId: id }, o)),
      );
      return this.#set(id, { status: "paused" });
    });
  }

  /**
   * An E2B sandbox (one with `endAt`) runs for `timeoutSec` (default: the one
   * it was created with) from now, unless `keepEndAt` (a snapshot or fork that
   * paused it only briefly); others get the agent's idle timeout.
   */
  async resume(
    caller: Caller,
    id: string,
    timeoutSec?: number,
    options: { keepEndAt?: boolean } = {},
  ): Promise<SandboxRow> {
    const { row, host } = await this.#require(caller, id, "paused", "resume");
    const e2b = row.endAt !== null;
    // The snapshot lives on the sandbox's host: it resumes there, if that host
    // has room. The row turns pending under the placement lock, which reserves
    // that room: a concurrent create cannot take it meanwhile.
    const { row: moved } = await this.#deps.placement.place({
      demand: { vcpus: row.vcpus, memoryMb: row.memoryMb, diskSizeMb: 0 },
      only: host.id,
      // Its disk is counted while it is paused already.
      admit: (tx) =>
        this.#deps.quotas.admit(tx, caller.teamId, {
          sandboxes: 1,
          vcpus: row.vcpus,
          memoryMb: row.memoryMb,
          diskMb: 0,
        }),
      reservation: { resume: id },
    });
    if (!moved) {
      throw new WrennError("failed_precondition", `sandbox '${id}' is no longer paused`);
    }
    let res;
    try {
      res = await timed(this.#deps.log, "sandbox.resume", () =>
        this.#deps.agents.call(host, (a, o) =>
          a.resumeSandbox(
            { sandboxId: id, timeoutSec: e2b ? 0 : (timeoutSec ?? row.timeoutSec) },
            o,
          ),
        ),
      );
    } catch (err) {
      // The agent keeps a sandbox whose resume failed paused; so does its row.
      await this.#deps.db
        .update(sandboxes)
        .set({ status: "paused", updatedAt: new Date() })
        .where(and(eq(sandboxes.id, id), eq(sandboxes.status, "pending")));
      throw err;
    }
    const ttl = timeoutSec ?? row.timeoutSec;
    return this.#set(id, {
      status: "running",
      timeoutSec: ttl,
      envdAddress: res.sandbox?.envdAddress ?? row.envdAddress,
      ...(e2b && !options.keepEndAt ? { endAt: new Date(Date.now() + ttl * 1000) } : {}),
    });
  }

  /**
   * Sets a live sandbox's E2B end (`extend`: only ever later). A /v1 sandbox
   * given an end becomes the control plane's to end from then on.
   */
  async setEndAt(
    caller: Caller,
    id: string,
    endAt: Date,
    mode: "set" | "extend",
    timeoutSec?: number,
  ): Promise<SandboxRow> {
    const [row] = await this.#deps.db
      .update(sandboxes)
      .set({
        endAt:
          mode === "set"
            ? endAt
            : sql`greatest(${sandboxes.endAt}, ${endAt.toISOString()}::timestamptz)`,
        ...(timeoutSec !== undefined ? { timeoutSec } : {}),
        updatedAt: new Date(),
      })
      .where(
        and(
          eq(sandboxes.id, id),
          eq(sandboxes.teamId, caller.teamId),
          inArray(sandboxes.status, LIVE),
        ),
      )
      .returning();
    if (!row) throw new WrennError("not_found", `sandbox '${id}' not found`);
    return row;
  }

  /** Replaces a running or paused sandbox's egress rules; the agent applies them (at once when running). */
  async updateNetwork(caller: Caller, id: string, network: SandboxNetwork): Promise<SandboxRow> {
    const row = await this.get(caller, id);
    requireKnown(row);
    if (row.status !== "running" && row.status !== "paused") {
      throw new WrennError(
        "failed_precondition",
        `cannot change the network of sandbox '${id}': it is ${row.status}`,
      );
    }
    const host = await this.#hostOf(row, { allowMissing: false });
    if (!host) throw new WrennError("unavailable", `sandbox '${id}' has no host`);
    await this.#deps.agents.call(host, (a, o) =>
      a.updateNetwork(
        {
          sandboxId: id,
          network: { allowOut: network.allowOut ?? [], denyOut: network.denyOut ?? [] },
        },
        o,
      ),
    );
    this.#deps.log.info({ sandboxId: id, network }, "sandbox network updated");
    return this.#set(id, { network });
  }

  /** The guest's samples since `sinceMs` (Unix ms); none for a sandbox that is not running. */
  async metrics(caller: Caller, id: string, sinceMs: number) {
    const row = await this.get(caller, id);
    if (row.status !== "running") return [];
    const host = await this.#hostOf(row, { allowMissing: false });
    if (!host) throw new WrennError("unavailable", `sandbox '${id}' has no host`);
    const res = await this.#deps.agents.call(
      host,
      (a, o) => a.getSandboxMetrics({ sandboxId: id, sinceMs: BigInt(sinceMs) }, o),
      15_000,
    );
    return res.metrics;
  }

  async exec(
    caller: Caller,
    id: string,
    req: {
      cmd: string;
      args: string[];
      timeout_sec: number;
      envs?: Record<string, string> | undefined;
      cwd?: string | undefined;
      user?: string | undefined;
    },
  ) {
    const { host } = await this.#require(caller, id, "running", "exec in");
    const res = await this.#deps.agents.call(
      host,
      (a, o) =>
        a.exec(
          {
            sandboxId: id,
            cmd: req.cmd,
            args: req.args,
            timeoutSec: req.timeout_sec,
            envs: req.envs ?? {},
            cwd: req.cwd ?? "",
            user: req.user ?? "",
          },
          o,
        ),
      (req.timeout_sec + 15) * 1000,
    );
    const stdout = utf8(res.stdoutTruncated ? wholeChars(res.stdout) : res.stdout);
    const stderr = utf8(res.stderrTruncated ? wholeChars(res.stderr) : res.stderr);
    const text = stdout !== null && stderr !== null;
    return {
      stdout: text ? stdout : Buffer.from(res.stdout).toString("base64"),
      stderr: text ? stderr : Buffer.from(res.stderr).toString("base64"),
      exit_code: res.exitCode,
      duration_ms: Number(res.durationMs),
      encoding: text ? ("utf-8" as const) : ("base64" as const),
      stdout_truncated: res.stdoutTruncated,
      stderr_truncated: res.stderrTruncated,
    };
  }

  // ---- snapshots (templates)

  async snapshot(
    caller: Caller,
    sandboxId: string,
    name: string | undefined,
    overwrite: boolean,
  ): Promise<TemplateRow> {
    const { db, agents, log } = this.#deps;
    const row = await this.get(caller, sandboxId);
    requireKnown(row);
    if (row.status !== "running" && row.status !== "paused") {
      throw new WrennError(
        "failed_precondition",
        `cannot snapshot sandbox '${sandboxId}': it is ${row.status}, must be running or paused`,
      );
    }
    const host = await this.#hostOf(row, { allowMissing: false });
    if (!host) throw new WrennError("unavailable", `sandbox '${sandboxId}' has no host`);
    const templateName = name ?? `snap-${sandboxId}-${Date.now().toString(36)}`;
    // Names are global and the agent keeps one flat namespace: the name is
    // claimed for this team before the agent writes anything under it, so two
    // teams racing for one new name cannot both reach the agent.
    const claim = await this.#claimTemplateName(caller, templateName, overwrite, {
      hostId: host.id,
      sourceSandboxId: sandboxId,
      vcpus: row.vcpus,
      memoryMb: row.memoryMb,
    });
    const res = await this.#whileStopping(sandboxId, async () => {
      let made;
      try {
        made = await timed(
          log,
          "sandbox.snapshot",
          () =>
            agents.call(host, (a, o) =>
              a.createSnapshot({ sandboxId, name: templateName, overwrite }, o),
            ),
          { sandboxId, name: templateName },
        );
      } catch (err) {
        if (claim.fresh) await db.delete(templates).where(eq(templates.id, claim.row.id));
        throw err;
      }
      // Taking a snapshot pauses the sandbox, and it stays paused.
      await this.#set(sandboxId, { status: "paused" });
      return made;
    });
    if (!claim.fresh && claim.row.hostId && claim.row.hostId !== host.id) {
      await this.#deleteOnHost(claim.row);
    }
    const info = res.template;
    const [tpl] = await db
      .update(templates)
      .set({
        hostId: host.id,
        sourceSandboxId: sandboxId,
        vcpus: info?.vcpus || row.vcpus,
        memoryMb: info?.memoryMb || row.memoryMb,
        sizeBytes: Number(info?.sizeBytes ?? 0),
        createdAt: new Date(),
      })
      .where(and(eq(templates.id, claim.row.id), eq(templates.teamId, caller.teamId)))
      .returning();
    if (!tpl) {
      throw new WrennError(
        "failed_precondition",
        `snapshot '${templateName}' was deleted while it was being taken; take it again`,
      );
    }
    return tpl;
  }

  /** This team's row for `name`: a new one (`fresh`), or its own snapshot when overwriting. */
  async #claimTemplateName(
    caller: Caller,
    name: string,
    overwrite: boolean,
    values: { hostId: string; sourceSandboxId: string; vcpus: number; memoryMb: number },
  ): Promise<{ row: TemplateRow; fresh: boolean }> {
    const { db } = this.#deps;
    const [fresh] = await db
      .insert(templates)
      .values({ teamId: caller.teamId, name, type: "snapshot", sizeBytes: 0, ...values })
      .onConflictDoNothing({ target: templates.name })
      .returning();
    if (fresh) return { row: fresh, fresh: true };
    const [existing] = await db.select().from(templates).where(eq(templates.name, name));
    if (!existing || existing.teamId !== caller.teamId || existing.type !== "snapshot") {
      throw new WrennError("already_exists", `the name '${name}' is taken; choose another`);
    }
    if (!overwrite) {
      throw new WrennError(
        "already_exists",
        `snapshot '${name}' exists; pass ?overwrite=true to replace it`,
      );
    }
    return { row: existing, fresh: false };
  }

  async listTemplates(caller: Caller, type?: "base" | "snapshot"): Promise<TemplateRow[]> {
    const team = inArray(templates.teamId, [caller.teamId, PLATFORM_TEAM_ID]);
    return this.#deps.db
      .select()
      .from(templates)
      .where(type ? and(team, eq(templates.type, type)) : team)
      .orderBy(templates.name);
  }

  async deleteTemplate(caller: Caller, name: string): Promise<void> {
    const [tpl] = await this.#deps.db
      .select()
      .from(templates)
      .where(
        and(eq(templates.name, name), inArray(templates.teamId, [caller.teamId, PLATFORM_TEAM_ID])),
      );
    if (!tpl) throw new WrennError("not_found", `snapshot '${name}' not found`);
    if (tpl.teamId === PLATFORM_TEAM_ID || tpl.type === "base") {
      throw new WrennError(
        "permission_denied",
        `'${name}' is a platform template; it cannot be deleted`,
      );
    }
    await this.#deleteOnHost(tpl);
    await this.#deps.db.delete(templates).where(eq(templates.id, tpl.id));
  }

  async #deleteOnHost(tpl: TemplateRow): Promise<void> {
    if (!tpl.hostId) return;
    const [host] = await this.#deps.db.select().from(hosts).where(eq(hosts.id, tpl.hostId));
    if (!host) return;
    try {
      await this.#deps.agents.call(host, (a, o) => a.deleteSnapshot({ name: tpl.name }, o));
    } catch (err) {
      if (!(err instanceof WrennError && err.code === "not_found")) throw err;
    }
  }

  /** A template the caller's team may use (its own or the platform's), by name. */
  async template(caller: Caller, name: string): Promise<TemplateRow> {
    return this.#visibleTemplate(caller, name);
  }

  async #visibleTemplate(caller: Caller, name: string): Promise<TemplateRow> {
    // A burst of creates from one template reads it once.
    const tpl = await this.#templateReads.run(`${caller.teamId}/${name}`, async () => {
      const [row] = await this.#deps.db
        .select()
        .from(templates)
        .where(
          and(
            eq(templates.name, name),
            inArray(templates.teamId, [caller.teamId, PLATFORM_TEAM_ID]),
          ),
        );
      return row;
    });
    if (!tpl) {
      throw new WrennError(
        "not_found",
        `template '${name}' not found; GET /v1/snapshots lists them`,
      );
    }
    return tpl;
  }

  async #byRequestId(caller: Caller, requestId: string): Promise<SandboxRow | undefined> {
    const [row] = await this.#deps.db
      .select()
      .from(sandboxes)
      .where(and(eq(sandboxes.teamId, caller.teamId), eq(sandboxes.clientRequestId, requestId)));
    return row;
  }

  async #hostOf(row: SandboxRow, opts: { allowMissing: boolean }): Promise<HostRow | undefined> {
    if (!row.hostId) return undefined;
    const [host] = await this.#deps.db.select().from(hosts).where(eq(hosts.id, row.hostId));
    if (!host) return undefined;
    if (host.status !== "ready" && !opts.allowMissing) {
      throw new WrennError("unavailable", `the host of sandbox '${row.id}' is unreachable`);
    }
    return host;
  }

  async #set(id: string, values: Partial<typeof sandboxes.$inferInsert>): Promise<SandboxRow> {
    const [row] = await this.#deps.db
      .update(sandboxes)
      .set({ ...values, updatedAt: new Date() })
      .where(eq(sandboxes.id, id))
      .returning();
    if (!row) throw new WrennError("not_found", `sandbox '${id}' not found`);
    return row;
  }
}

/** A sandbox whose host stopped answering: the host's fault, not the request's (502, not 409). */
function requireKnown(row: SandboxRow): void {
  if (row.status === "unknown") {
    throw new WrennError(
      "unavailable",
      `the host of sandbox '${row.id}' is unreachable; its state is unknown until the host answers again`,
    );
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * A truncated output's cut may fall inside a UTF-8 character: drop that
 * partial character (at most 3 bytes) so text output stays text.
 */
function wholeChars(bytes: Uint8Array): Uint8Array {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const b = bytes[bytes.length - back] as number;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    // A lead byte: keep it only if its whole sequence is there.
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? bytes.subarray(0, bytes.length - back) : bytes;
  }
  return bytes;
}

function utf8(bytes: Uint8Array): string | null {
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}
