import { createRoute, z } from "@hono/zod-openapi";
import { hostJson, type HostService } from "../../hosts.ts";
import { templateJson } from "../../sandboxes.ts";
import { router, security } from "../router.ts";
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

/** Host registration and heartbeats (public, with hosts' own secrets) and the admin's host views. */
export function hostRoutes(hosts: HostService) {
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
      const t = await hosts.createToken(c.get("caller"), c.req.valid("json").ttl_sec);
      return c.json({ token: t.token, expires_at: t.expiresAt.toISOString() }, 201);
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
      const r = await hosts.register(c.req.valid("json"));
      return c.json({ host_id: r.hostId, secret: r.secret }, 201);
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
      await hosts.heartbeat(id, secret, c.req.valid("json"));
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
      const rows = await hosts.list(c.get("caller"));
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
      await hosts.remove(c.get("caller"), c.req.valid("param").id);
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
      const rows = await hosts.allTemplates(c.get("caller"));
      return c.json(rows.map(templateJson), 200);
    },
  );

  return app;
}
