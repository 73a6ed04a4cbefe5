import { createRoute, z } from "@hono/zod-openapi";
import { and, asc, eq, gt, isNull, sql } from "drizzle-orm";
import { WrennError } from "@wrenn/shared/errors.ts";
import { newSecret, sha256 } from "../../auth/tokens.ts";
import { hostTokens, hosts, templates } from "../../db/schema.ts";
import { recordHeartbeat, type Reconciler } from "../../reconciler.ts";
import { templateJson } from "../../sandboxes.ts";
import type { HostRow } from "../../scheduler.ts";
import type { Deps } from "../context.ts";
import { requireAdmin, router, security } from "../router.ts";
import {
  CreateHostTokenBody,
  HeartbeatBody,
  Host,
  HostParams,
  HostToken,
  RegisterHostBody,
  RegisteredHost,
  Template,
  commonErrors,
  jsonBody,
  jsonResponse,
  noContent,
} from "../schemas.ts";

const hostJson = (h: HostRow) => ({
  id: h.id,
  address: h.address,
  status: h.status,
  vmm: h.vmm,
  storage: h.storage,
  version: h.version,
  total_vcpus: h.totalVcpus,
  total_memory_mb: h.totalMemoryMb,
  free_disk_mb: h.freeDiskMb,
  last_seen_at: h.lastSeenAt?.toISOString() ?? null,
  created_at: h.createdAt.toISOString(),
});

/**
 * Hosts join with a one-time token an admin creates. The host secret (the
 * agent's `--secret`, or one made here) goes both ways as `Authorization:
 * Bearer`: on the control plane's calls to the agent, and on heartbeats.
 */
export function hostRoutes(deps: Deps, reconciler: Reconciler) {
  const { db } = deps;
  const app = router();

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/admin/host-tokens",
      tags: ["admin"],
      summary: "Create a one-time token with which one host agent registers",
      security,
      request: { body: jsonBody(CreateHostTokenBody) },
      responses: { 201: jsonResponse(HostToken, "The token, shown once"), ...commonErrors },
    }),
    async (c) => {
      const caller = c.get("caller");
      requireAdmin(caller);
      const token = newSecret("wrh");
      const expiresAt = new Date(Date.now() + c.req.valid("json").ttl_sec * 1000);
      await db
        .insert(hostTokens)
        .values({ tokenHash: token.hash, createdBy: caller.userId, expiresAt });
      return c.json({ token: token.value, expires_at: expiresAt.toISOString() }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/hosts/register",
      tags: ["hosts"],
      summary: "Called by a host agent: trade a one-time token for a host id and secret",
      request: { body: jsonBody(RegisterHostBody) },
      responses: {
        201: jsonResponse(RegisteredHost, "Registered"),
        400: commonErrors[400],
        401: commonErrors[401],
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const value = body.secret ?? newSecret("wrs").value;
      const secret = { value, hash: sha256(value) };
      const host = await db.transaction(async (tx) => {
        const [token] = await tx
          .update(hostTokens)
          .set({ usedAt: sql`now()` })
          .where(
            and(
              eq(hostTokens.tokenHash, sha256(body.token)),
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
          .values({ address: body.address, secretHash: secret.hash, secret: secret.value })
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
      await reconciler.syncHost(host);
      return c.json({ host_id: host.id, secret: secret.value }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/hosts/{id}/heartbeat",
      tags: ["hosts"],
      summary: "Called by a host agent with its capacity; Authorization: Bearer <host secret>",
      request: { params: HostParams, body: jsonBody(HeartbeatBody) },
      responses: { 204: noContent, 400: commonErrors[400], 401: commonErrors[401] },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const auth = c.req.header("authorization") ?? "";
      const secret = auth.toLowerCase().startsWith("bearer ") ? auth.slice(7).trim() : "";
      const [host] = await db.select().from(hosts).where(eq(hosts.id, id));
      if (!host || !secret || host.secretHash !== sha256(secret)) {
        throw new WrennError("unauthenticated", "unknown host or wrong host secret");
      }
      await recordHeartbeat(db, id, c.req.valid("json"));
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/admin/hosts",
      tags: ["admin"],
      summary: "All hosts with capacity and status",
      security,
      responses: { 200: jsonResponse(z.array(Host), "Hosts"), ...commonErrors },
    }),
    async (c) => {
      requireAdmin(c.get("caller"));
      const rows = await db.select().from(hosts).orderBy(asc(hosts.createdAt));
      return c.json(rows.map(hostJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/admin/hosts/{id}",
      tags: ["admin"],
      summary: "Forget a host (its sandboxes keep their rows, without a host)",
      security,
      request: { params: HostParams },
      responses: { 204: noContent, ...commonErrors },
    }),
    async (c) => {
      requireAdmin(c.get("caller"));
      const gone = await db
        .delete(hosts)
        .where(eq(hosts.id, c.req.valid("param").id))
        .returning();
      const host = gone[0];
      if (!host) throw new WrennError("not_found", "no such host");
      deps.agents.forget(host.address);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/admin/templates",
      tags: ["admin"],
      summary: "Every team's templates",
      security,
      responses: { 200: jsonResponse(z.array(Template), "Templates"), ...commonErrors },
    }),
    async (c) => {
      requireAdmin(c.get("caller"));
      const rows = await db
        .select()
        .from(templates)
        .orderBy(asc(templates.teamId), asc(templates.name));
      return c.json(rows.map(templateJson), 200);
    },
  );

  return app;
}
