import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { WrennError, isWrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { AppEnv, Caller, Deps } from "../context.ts";
import { security } from "../api/router.ts";
import { jsonResponse, noContent } from "../api/schemas.ts";
import type { SandboxRow, SandboxService, TemplateRow } from "../sandboxes.ts";
import { listAll, listPage, parseMetadataFilter, parseStates } from "./list.ts";
import {
  DEFAULT_TEMPLATE,
  detailJson,
  e2bOptionsOf,
  listedJson,
  metricJson,
  networkOf,
  sandboxJson,
  templateJson,
} from "./mapping.ts";
import { e2bError, e2bGuard, e2bRouter } from "./router.ts";
import {
  AliasParam,
  ConnectBody,
  ConnectBodyV2,
  ForkBody,
  ForkResult,
  IdParam,
  ListQuery,
  ListSnapshotsQuery,
  ListV2Query,
  ListedSandbox,
  MetricsListQuery,
  MetricsQuery,
  NetworkUpdate,
  NewSandbox,
  NewSandboxV2,
  PauseBody,
  RefreshBody,
  ResumeBody,
  Sandbox,
  SandboxDetail,
  SandboxMetric,
  SandboxesWithMetrics,
  SnapshotBody,
  SnapshotInfo,
  Template,
  TemplateAlias,
  TemplateIdParam,
  TimeoutBody,
  e2bErrors,
  type NewSandboxBody,
} from "./schemas.ts";

/** The paths E2B's SDKs call, none of which /v1, /docs, /openapi.* or /health use. */
export const E2B_PATHS = ["/sandboxes/*", "/v2/sandboxes/*", "/snapshots/*", "/templates/*"];

const tags = ["e2b"];
const body = <T extends z.ZodType>(schema: T, required = true) => ({
  required,
  content: { "application/json": { schema } },
});
const e = e2bErrors;

/** Stopped and failed sandboxes are gone as far as E2B's clients can tell. */
function requireLive(row: SandboxRow): SandboxRow {
  if (row.status === "stopped" || row.status === "error") {
    throw new WrennError("not_found", `sandbox '${row.id}' not found`);
  }
  return row;
}

/**
 * E2B's REST API at E2B's paths, for the `e2b` SDKs: same team scoping as
 * /v1, E2B's field names, status codes and `{code, message}` errors.
 */
export function e2bRoutes(deps: Deps, service: SandboxService): OpenAPIHono<AppEnv> {
  const app = e2bRouter();
  const guard = e2bGuard(deps);
  for (const path of E2B_PATHS) app.use(path, guard);
  const { domain, log } = deps;
  const live = async (caller: Caller, id: string) => requireLive(await service.get(caller, id));

  /** A template by E2B's id: `base`, E2B's default, is Wrenn's default base unless a template has that name. */
  const templateOf = async (caller: Caller, id: string): Promise<TemplateRow> => {
    try {
      return await service.template(caller, id);
    } catch (err) {
      if (!isWrennError(err, "not_found")) throw err;
      if (id === "base") return service.template(caller, DEFAULT_TEMPLATE);
      // E2B's own words, with where to look instead of /v1's.
      throw new WrennError("not_found", `template '${id}' not found; GET /templates lists them`);
    }
  };

  const create = async (
    caller: Caller,
    b: NewSandboxBody,
    secure: boolean,
    defaultTimeout: number,
  ) => {
    const tpl = await templateOf(caller, b.templateID);
    const timeout = b.timeout ?? defaultTimeout;
    return service.create(caller, {
      template: tpl.name,
      vcpus: tpl.vcpus > 0 ? tpl.vcpus : 1,
      memory_mb: tpl.memoryMb >= 128 ? tpl.memoryMb : 512,
      disk_size_mb: 20480,
      timeout_sec: timeout,
      env_vars: b.envVars,
      e2b: e2bOptionsOf(b, secure, timeout),
    });
  };

  // ---- create

  app.openapi(
    createRoute({
      method: "post",
      path: "/v2/sandboxes",
      tags,
      summary: "Create a sandbox (E2B); its envd always asks for the returned envdAccessToken",
      security,
      request: { body: body(NewSandboxV2) },
      responses: { 201: jsonResponse(Sandbox, "Created and running"), ...e },
    }),
    async (c) => {
      const row = await create(c.get("caller"), c.req.valid("json"), true, 300);
      return c.json(sandboxJson(row, domain), 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/sandboxes",
      tags,
      summary: "Create a sandbox (E2B, older SDKs)",
      security,
      request: { body: body(NewSandbox) },
      responses: { 201: jsonResponse(Sandbox, "Created and running"), ...e },
    }),
    async (c) => {
      const row = await create(c.get("caller"), c.req.valid("json"), false, 15);
      return c.json(sandboxJson(row, domain), 201);
    },
  );

  // ---- list and info

  app.openapi(
    createRoute({
      method: "get",
      path: "/v2/sandboxes",
      tags,
      summary: "List the team's running and paused sandboxes, newest first by default",
      description:
        "When more remain, the `x-next-token` header carries the next page's `nextToken`.",
      security,
      request: { query: ListV2Query },
      responses: { 200: jsonResponse(z.array(ListedSandbox), "Sandboxes"), ...e },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const page = await listPage(
        deps.db,
        c.get("caller"),
        {
          metadata: parseMetadataFilter(q.metadata),
          states: parseStates(q.state),
          template: q.template,
          startedAfter: q.startedAfter ? new Date(q.startedAfter) : undefined,
        },
        { limit: q.limit, order: q.order, nextToken: q.nextToken },
      );
      if (page.nextToken) c.header("x-next-token", page.nextToken);
      return c.json(page.rows.map(listedJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/sandboxes",
      tags,
      summary: "List the team's running sandboxes (E2B, older SDKs)",
      security,
      request: { query: ListQuery },
      responses: { 200: jsonResponse(z.array(ListedSandbox), "Running sandboxes"), ...e },
    }),
    async (c) => {
      const rows = await listAll(deps.db, c.get("caller"), {
        metadata: parseMetadataFilter(c.req.valid("query").metadata),
        states: ["running"],
      });
      return c.json(rows.map(listedJson), 200);
    },
  );

  // Before /sandboxes/{id}, which would take `metrics` for an id.
  app.openapi(
    createRoute({
      method: "get",
      path: "/sandboxes/metrics",
      tags,
      summary: "The latest sample of each of the named running sandboxes",
      description:
        "Sandboxes that are not the team's, not running or without samples are left out.",
      security,
      request: { query: MetricsListQuery },
      responses: { 200: jsonResponse(SandboxesWithMetrics, "Latest samples by sandbox id"), ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const ids = [...new Set(c.req.valid("query").sandbox_ids.split(","))];
      for (const id of ids) {
        if (!/^[a-z0-9]{1,64}$/.test(id)) {
          throw new WrennError("invalid_argument", `sandbox_ids: '${id}' is not a sandbox id`);
        }
      }
      const out: Record<string, ReturnType<typeof metricJson>> = {};
      await Promise.all(
        ids.map(async (id) => {
          try {
            const last = (await service.metrics(caller, id, 0)).at(-1);
            if (last) out[id] = metricJson(last);
          } catch (err) {
            if (!isWrennError(err, "not_found")) throw err;
          }
        }),
      );
      return c.json({ sandboxes: out }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/sandboxes/{id}",
      tags,
      summary: "A sandbox's details, including its envd access token",
      security,
      request: { params: IdParam },
      responses: { 200: jsonResponse(SandboxDetail, "The sandbox"), ...e },
    }),
    async (c) => {
      const row = await live(c.get("caller"), c.req.valid("param").id);
      return c.json(detailJson(row, domain), 200);
    },
  );

  // ---- lifecycle

  app.openapi(
    createRoute({
      method: "delete",
      path: "/sandboxes/{id}",
      tags,
      summary: "Kill a sandbox",
      security,
      request: { params: IdParam },
      responses: { 204: noContent, ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      await live(caller, id);
      await service.destroy(caller, id);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/sandboxes/{id}/pause",
      tags,
      summary: "Pause a running sandbox, memory and disk (409 when it is already paused)",
      security,
      request: { params: IdParam, body: body(PauseBody, false) },
      responses: { 204: noContent, ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      await live(caller, id);
      await service.pause(caller, id);
      return c.body(null, 204);
    },
  );

  /** 200 with the end extended when it runs, 201 when it had to be resumed. */
  const connect = async (caller: Caller, id: string, timeout: number) => {
    const row = await live(caller, id);
    const endAt = new Date(Date.now() + timeout * 1000);
    if (row.status === "paused") {
      try {
        return { row: await service.resume(caller, id, timeout), status: 201 as const };
      } catch (err) {
        // Another connect (or the proxy's auto-resume) won the race: it runs now.
        if (!isWrennError(err, "failed_precondition")) throw err;
      }
    }
    return { row: await service.setEndAt(caller, id, endAt, "extend"), status: 200 as const };
  };

  for (const [path, schema] of [
    ["/sandboxes/{id}/connect", ConnectBody],
    ["/v2/sandboxes/{id}/connect", ConnectBodyV2],
  ] as const) {
    app.openapi(
      createRoute({
        method: "post",
        path,
        tags,
        summary: "Connect to a sandbox: resume it when paused; a timeout only ever extends its end",
        security,
        request: { params: IdParam, body: body(schema, path.startsWith("/sandboxes")) },
        responses: {
          200: jsonResponse(Sandbox, "It was running"),
          201: jsonResponse(Sandbox, "It was paused and is resumed"),
          ...e,
        },
      }),
      async (c) => {
        const b = c.req.valid("json") as { timeout?: number } | undefined;
        const { row, status } = await connect(
          c.get("caller"),
          c.req.valid("param").id,
          b?.timeout ?? 300,
        );
        return c.json(sandboxJson(row, domain), status);
      },
    );
  }

  app.openapi(
    createRoute({
      method: "post",
      path: "/sandboxes/{id}/resume",
      tags,
      summary: "Resume a paused sandbox (E2B, older SDKs; 409 when it runs)",
      security,
      request: { params: IdParam, body: body(ResumeBody, false) },
      responses: { 201: jsonResponse(Sandbox, "Resumed"), ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      const b = c.req.valid("json") as z.infer<typeof ResumeBody> | undefined;
      const row = await live(caller, id);
      if (row.status !== "paused") {
        throw new WrennError("failed_precondition", `sandbox '${id}' is already running`);
      }
      return c.json(sandboxJson(await service.resume(caller, id, b?.timeout ?? 15), domain), 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/sandboxes/{id}/timeout",
      tags,
      summary: "End the sandbox `timeout` seconds from now (shorter or longer than before)",
      security,
      request: { params: IdParam, body: body(TimeoutBody) },
      responses: { 204: noContent, ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      const { timeout } = c.req.valid("json");
      await live(caller, id);
      await service.setEndAt(caller, id, new Date(Date.now() + timeout * 1000), "set", timeout);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/sandboxes/{id}/refreshes",
      tags,
      summary:
        "Keep the sandbox alive `duration` seconds from now (default: its timeout); never shortens",
      security,
      request: { params: IdParam, body: body(RefreshBody, false) },
      responses: { 204: noContent, ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      const b = c.req.valid("json") as z.infer<typeof RefreshBody> | undefined;
      const row = await live(caller, id);
      const duration = b?.duration ?? row.timeoutSec;
      await service.setEndAt(caller, id, new Date(Date.now() + duration * 1000), "extend");
      return c.body(null, 204);
    },
  );

  // ---- metrics and network

  app.openapi(
    createRoute({
      method: "get",
      path: "/sandboxes/{id}/metrics",
      tags,
      summary: "The guest's CPU, memory and disk samples (none while paused)",
      security,
      request: { params: IdParam, query: MetricsQuery },
      responses: { 200: jsonResponse(z.array(SandboxMetric), "Samples, oldest first"), ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      const { start, end } = c.req.valid("query");
      await live(caller, id);
      const samples = await service.metrics(caller, id, (start ?? 0) * 1000);
      const until = end === undefined ? Infinity : end * 1000;
      return c.json(samples.filter((m) => Number(m.timestampMs) <= until).map(metricJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "put",
      path: "/sandboxes/{id}/network",
      tags,
      summary:
        "Replace the sandbox's egress rules (omitted fields clear them); applied at once when running",
      security,
      request: { params: IdParam, body: body(NetworkUpdate) },
      responses: { 204: noContent, ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      const b = c.req.valid("json");
      await live(caller, id);
      await service.updateNetwork(caller, id, networkOf(b, b.allow_internet_access));
      return c.body(null, 204);
    },
  );

  // ---- snapshots, fork, templates

  /** A template of the sandbox's state; a running sandbox is paused for it and runs again after. */
  const snapshotOf = async (caller: Caller, id: string, name: string | undefined) => {
    const row = await live(caller, id);
    const tpl = await service.snapshot(caller, id, name, name !== undefined);
    if (row.status === "running") {
      try {
        await service.resume(caller, id, undefined, { keepEndAt: true });
      } catch (err) {
        log.error(
          { sandboxId: id, err: messageOf(err) },
          "sandbox stays paused: resume after snapshot failed",
        );
        throw err;
      }
    }
    return tpl;
  };

  app.openapi(
    createRoute({
      method: "post",
      path: "/sandboxes/{id}/snapshots",
      tags,
      summary:
        "Snapshot a sandbox into a template new sandboxes start from; a running one keeps running",
      description: "A name already used by one of the team's snapshots replaces that snapshot.",
      security,
      request: { params: IdParam, body: body(SnapshotBody, false) },
      responses: { 201: jsonResponse(SnapshotInfo, "The snapshot"), ...e },
    }),
    async (c) => {
      const b = c.req.valid("json") as z.infer<typeof SnapshotBody> | undefined;
      const tpl = await snapshotOf(c.get("caller"), c.req.valid("param").id, b?.name);
      return c.json({ snapshotID: tpl.name, names: [tpl.name] }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/snapshots",
      tags,
      summary: "The team's snapshots, by name",
      security,
      request: { query: ListSnapshotsQuery },
      responses: { 200: jsonResponse(z.array(SnapshotInfo), "Snapshots"), ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const q = c.req.valid("query");
      const after = q.nextToken ? Buffer.from(q.nextToken, "base64url").toString() : "";
      const rows = (await service.listTemplates(caller, "snapshot")).filter(
        (t) =>
          t.teamId === caller.teamId &&
          (!q.sandboxID || t.sourceSandboxId === q.sandboxID) &&
          (!q.name || t.name === q.name) &&
          t.name > after,
      );
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      if (rows.length > q.limit && last) {
        c.header("x-next-token", Buffer.from(last.name).toString("base64url"));
      }
      return c.json(
        page.map((t) => ({ snapshotID: t.name, names: [t.name] })),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/sandboxes/{id}/fork",
      tags,
      summary:
        "Fork a running sandbox: snapshot it (it keeps running, same end) and start `count` sandboxes from it",
      description:
        "One entry per fork: `sandbox`, or the `error` that kept it from starting. The snapshot is kept while forks exist and removed when none started.",
      security,
      request: { params: IdParam, body: body(ForkBody, false) },
      responses: { 201: jsonResponse(z.array(ForkResult), "One result per fork"), ...e },
    }),
    async (c) => {
      const caller = c.get("caller");
      const { id } = c.req.valid("param");
      const b = (c.req.valid("json") as z.infer<typeof ForkBody> | undefined) ?? {
        count: 1,
        timeout: 15,
      };
      const source = await live(caller, id);
      if (source.status !== "running") {
        throw new WrennError(
          "failed_precondition",
          `cannot fork sandbox '${id}': it is ${source.status}, must be running`,
        );
      }
      const tpl = await snapshotOf(caller, id, `fork-${id}-${Date.now().toString(36)}`);
      const results = [];
      for (let i = 0; i < b.count; i++) {
        try {
          const row = await service.create(caller, {
            template: tpl.name,
            vcpus: source.vcpus,
            memory_mb: source.memoryMb,
            disk_size_mb: source.diskSizeMb,
            timeout_sec: b.timeout,
            e2b: {
              endAt: new Date(Date.now() + b.timeout * 1000),
              autoPause: source.autoPause,
              autoResume: source.autoResume,
              secure: source.secure,
              allowPublicTraffic: source.allowPublicTraffic,
              metadata: source.metadata,
              network: source.network,
            },
          });
          results.push({ sandbox: sandboxJson(row, domain) });
        } catch (err) {
          log.warn({ sandboxId: id, err: messageOf(err) }, "fork failed to start");
          results.push({ error: e2bError(err).body });
        }
      }
      if (!results.some((r) => "sandbox" in r)) {
        await service
          .deleteTemplate(caller, tpl.name)
          .catch((err: unknown) =>
            log.warn(
              { sandboxId: id, template: tpl.name, err: messageOf(err) },
              "fork snapshot left behind",
            ),
          );
      }
      return c.json(results, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/templates",
      tags,
      summary:
        "Templates the team can start sandboxes from: the platform's base images and its snapshots",
      security,
      responses: { 200: jsonResponse(z.array(Template), "Templates"), ...e },
    }),
    async (c) => c.json((await service.listTemplates(c.get("caller"))).map(templateJson), 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/templates/aliases/{alias}",
      tags,
      summary: "Resolve a template name (`base` is the default base template)",
      security,
      request: { params: AliasParam },
      responses: { 200: jsonResponse(TemplateAlias, "The template"), ...e },
    }),
    async (c) => {
      const t = templateJson(await templateOf(c.get("caller"), c.req.valid("param").alias));
      return c.json({ templateID: t.templateID, public: t.public }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/templates/{template_id}",
      tags,
      summary: "Delete one of the team's snapshots",
      security,
      request: { params: TemplateIdParam },
      responses: { 204: noContent, ...e },
    }),
    async (c) => {
      await service.deleteTemplate(c.get("caller"), c.req.valid("param").template_id);
      return c.body(null, 204);
    },
  );

  return app;
}
