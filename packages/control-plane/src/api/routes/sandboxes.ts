import { createRoute, z } from "@hono/zod-openapi";
import { router, security } from "../router.ts";
import {
  CreateSandboxBody,
  CreateSnapshotBody,
  CreateSnapshotQuery,
  ExecBody,
  ExecResult,
  IdParams,
  ListSandboxesQuery,
  ListSnapshotsQuery,
  ResumeBody,
  Sandbox,
  SnapshotParams,
  Template,
  agentErrors,
  commonErrors,
  jsonBody,
  jsonResponse,
  noContent,
} from "../schemas.ts";
import { sandboxJson, templateJson, type SandboxService } from "../../sandboxes.ts";

const errors = { ...commonErrors, ...agentErrors };

/** Sandboxes and snapshots (templates), scoped to the caller's team. */
export function sandboxRoutes(service: SandboxService) {
  const app = router();

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes",
      tags: ["sandboxes"],
      summary: "Create a sandbox from a template on the least loaded host with room",
      security,
      request: { body: jsonBody(CreateSandboxBody) },
      responses: { 201: jsonResponse(Sandbox, "Created and running"), ...errors },
    }),
    async (c) =>
      c.json(sandboxJson(await service.create(c.get("caller"), c.req.valid("json"))), 201),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/sandboxes",
      tags: ["sandboxes"],
      summary: "List the team's sandboxes that are pending, running or paused, newest first",
      description:
        "Pages with `limit`; when more remain the X-Next-Token header carries the next page's token.",
      security,
      request: { query: ListSandboxesQuery },
      responses: { 200: jsonResponse(z.array(Sandbox), "Sandboxes"), ...commonErrors },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const page = await service.list(c.get("caller"), { limit: q.limit, nextToken: q.next_token });
      if (page.nextToken) c.header("X-Next-Token", page.nextToken);
      return c.json(page.rows.map(sandboxJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/sandboxes/{id}",
      tags: ["sandboxes"],
      summary: "Get a sandbox",
      security,
      request: { params: IdParams },
      responses: { 200: jsonResponse(Sandbox, "The sandbox"), ...commonErrors },
    }),
    async (c) =>
      c.json(sandboxJson(await service.get(c.get("caller"), c.req.valid("param").id)), 200),
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/sandboxes/{id}",
      tags: ["sandboxes"],
      summary: "Destroy a sandbox",
      security,
      request: { params: IdParams },
      responses: { 204: noContent, ...errors },
    }),
    async (c) => {
      await service.destroy(c.get("caller"), c.req.valid("param").id);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes/{id}/exec",
      tags: ["sandboxes"],
      summary: "Run a command to completion; output is base64 when it is not UTF-8",
      security,
      request: { params: IdParams, body: jsonBody(ExecBody) },
      responses: { 200: jsonResponse(ExecResult, "The command's result"), ...errors },
    }),
    async (c) =>
      c.json(
        await service.exec(c.get("caller"), c.req.valid("param").id, c.req.valid("json")),
        200,
      ),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes/{id}/ping",
      tags: ["sandboxes"],
      summary: "Check the sandbox answers and keep it alive",
      security,
      request: { params: IdParams },
      responses: { 204: noContent, ...errors },
    }),
    async (c) => {
      await service.ping(c.get("caller"), c.req.valid("param").id);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes/{id}/pause",
      tags: ["sandboxes"],
      summary: "Pause a running sandbox (memory and disk are kept)",
      security,
      request: { params: IdParams },
      responses: { 200: jsonResponse(Sandbox, "Paused"), ...errors },
    }),
    async (c) =>
      c.json(sandboxJson(await service.pause(c.get("caller"), c.req.valid("param").id)), 200),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes/{id}/resume",
      tags: ["sandboxes"],
      summary: "Resume a paused sandbox on the host that holds its snapshot",
      security,
      request: {
        params: IdParams,
        body: { required: false, content: { "application/json": { schema: ResumeBody } } },
      },
      responses: { 200: jsonResponse(Sandbox, "Running again"), ...errors },
    }),
    async (c) => {
      const body = c.req.valid("json") as z.infer<typeof ResumeBody> | undefined;
      return c.json(
        sandboxJson(
          await service.resume(c.get("caller"), c.req.valid("param").id, body?.timeout_sec),
        ),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/snapshots",
      tags: ["snapshots"],
      summary: "Turn a sandbox into a template; the sandbox is paused and stays paused",
      security,
      request: { query: CreateSnapshotQuery, body: jsonBody(CreateSnapshotBody) },
      responses: { 201: jsonResponse(Template, "The new template"), ...errors },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const tpl = await service.snapshot(
        c.get("caller"),
        body.sandbox_id,
        body.name,
        c.req.valid("query").overwrite === "true",
      );
      return c.json(templateJson(tpl), 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/snapshots",
      tags: ["snapshots"],
      summary: "Templates the team can use: its snapshots and the platform's base images",
      security,
      request: { query: ListSnapshotsQuery },
      responses: { 200: jsonResponse(z.array(Template), "Templates"), ...commonErrors },
    }),
    async (c) => {
      const rows = await service.listTemplates(c.get("caller"), c.req.valid("query").type);
      return c.json(rows.map(templateJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/snapshots/{name}",
      tags: ["snapshots"],
      summary: "Delete one of the team's snapshot templates",
      security,
      request: { params: SnapshotParams },
      responses: { 204: noContent, ...errors },
    }),
    async (c) => {
      await service.deleteTemplate(c.get("caller"), c.req.valid("param").name);
      return c.body(null, 204);
    },
  );

  return app;
}
