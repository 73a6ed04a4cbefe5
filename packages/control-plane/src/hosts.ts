import { and, asc, eq, gt, isNull, sql } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { AgentPool } from "./agents.ts";
import { newSecret, sha256 } from "./auth/tokens.ts";
import { requireAdmin, type Caller } from "./context.ts";
import type { Db } from "./db/open.ts";
import { hostTokens, hosts, templates } from "./db/schema.ts";
import { recordHeartbeat, type Capacity, type Reconciler } from "./reconciler.ts";
import type { TemplateRow } from "./sandboxes.ts";
import type { HostRow } from "./scheduler.ts";

export function hostJson(h: HostRow) {
  return {
    id: h.id,
    address: h.address,
    status: h.status,
    vmm: h.vmm,
    storage: h.storage,
    version: h.version,
    total_vcpus: h.totalVcpus,
    total_memory_mb: h.totalMemoryMb,
    free_disk_mb: h.freeDiskMb,
    usage:
      h.measuredAt === null
        ? null
        : {
            cpu_busy_cores: h.cpuBusyCores ?? 0,
            memory_used_mb: h.memoryUsedMb ?? 0,
            vmm_memory_mb: h.vmmMemoryMb ?? 0,
            measured_at: h.measuredAt.toISOString(),
          },
    warm_sandboxes: h.warmSandboxes,
    last_seen_at: h.lastSeenAt?.toISOString() ?? null,
    created_at: h.createdAt.toISOString(),
  };
}

/**
 * Hosts join with a one-time token an admin creates. The host secret (the
 * agent's `--secret`, or one made here) goes both ways as `Authorization:
 * Bearer`: on the control plane's calls to the agent, and on heartbeats.
 */
export class HostService {
  readonly #db: Db;
  readonly #agents: AgentPool;
  readonly #reconciler: Reconciler;

  constructor(deps: { db: Db; agents: AgentPool; reconciler: Reconciler }) {
    this.#db = deps.db;
    this.#agents = deps.agents;
    this.#reconciler = deps.reconciler;
  }

  async createToken(caller: Caller, ttlSec: number): Promise<{ token: string; expiresAt: Date }> {
    requireAdmin(caller);
    const token = newSecret("wrh");
    const expiresAt = new Date(Date.now() + ttlSec * 1000);
    await this.#db
      .insert(hostTokens)
      .values({ tokenHash: token.hash, createdBy: caller.userId, expiresAt });
    return { token: token.value, expiresAt };
  }

  /** Trades a one-time token for a host id; the secret is the agent's own or a new one. */
  async register(input: {
    token: string;
    address: string;
    secret?: string | undefined;
  }): Promise<{ hostId: string; secret: string }> {
    const value = input.secret ?? newSecret("wrs").value;
    const secret = { value, hash: sha256(value) };
    const host = await this.#db.transaction(async (tx) => {
      const [token] = await tx
        .update(hostTokens)
        .set({ usedAt: sql`now()` })
        .where(
          and(
            eq(hostTokens.tokenHash, sha256(input.token)),
            isNull(hostTokens.usedAt),
            gt(hostTokens.expiresAt, sql`now()`),
          ),
        )
        .returning();
      if (!token)
        throw new WrennError(
          "unauthenticated",
          "host token is unknown, used or expired; ask an admin for a new one",
        );
      // Re-registering an address (a reinstalled host) keeps its id and its sandboxes.
      const [host] = await tx
        .insert(hosts)
        .values({ address: input.address, secretHash: secret.hash, secret: secret.value })
        .onConflictDoUpdate({
          target: hosts.address,
          set: { secretHash: secret.hash, secret: secret.value, status: "ready" },
        })
        .returning();
      if (!host) throw new WrennError("internal", "host upsert returned nothing");
      await tx.update(hostTokens).set({ hostId: host.id }).where(eq(hostTokens.id, token.id));
      return host;
    });
    // Learn its capacity and base images now rather than at the next reconciler pass.
    await this.#reconciler.syncHost(host);
    return { hostId: host.id, secret: secret.value };
  }

  async heartbeat(hostId: string, secret: string, capacity: Capacity): Promise<void> {
    const [host] = await this.#db.select().from(hosts).where(eq(hosts.id, hostId));
    if (!host || !secret || host.secretHash !== sha256(secret)) {
      throw new WrennError("unauthenticated", "unknown host or wrong host secret");
    }
    await recordHeartbeat(this.#db, hostId, capacity);
  }

  async list(caller: Caller): Promise<HostRow[]> {
    requireAdmin(caller);
    return this.#db.select().from(hosts).orderBy(asc(hosts.createdAt));
  }

  /** Forgets a host; its sandboxes keep their rows, without a host. */
  async remove(caller: Caller, hostId: string): Promise<void> {
    requireAdmin(caller);
    const [host] = await this.#db.delete(hosts).where(eq(hosts.id, hostId)).returning();
    if (!host) throw new WrennError("not_found", "no such host");
    this.#agents.forget(host.address);
  }

  /** Every team's templates. */
  async allTemplates(caller: Caller): Promise<TemplateRow[]> {
    requireAdmin(caller);
    return this.#db.select().from(templates).orderBy(asc(templates.teamId), asc(templates.name));
  }
}
