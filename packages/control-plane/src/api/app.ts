import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { stringify } from "yaml";
import type { Logger } from "@wrenn/shared/log.ts";
import { AccountService } from "../accounts.ts";
import { ApiKeyService } from "../api-keys.ts";
import { pingDatabase } from "../db/open.ts";
import { HostService } from "../hosts.ts";
import { InviteService } from "../invites.ts";
import { errorBody, toErrorResponse } from "../errors.ts";
import type { Reconciler } from "../reconciler.ts";
import type { SandboxService } from "../sandboxes.ts";
import type { AppEnv, Deps } from "../context.ts";
import { mountDocs } from "./docs.ts";
import { requireAuth } from "./router.ts";
import { accountRoutes } from "./routes/accounts.ts";
import { fileRoutes } from "./routes/files.ts";
import { guestFileRoutes } from "./routes/guest-files.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { logRoutes } from "./routes/logs.ts";
import { terminalDocs } from "./routes/terminal.ts";
import { mountDashboard } from "../web/static.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { inviteRoutes } from "./routes/invites.ts";
import { quotaRoutes } from "./routes/quotas.ts";
import { sandboxRoutes } from "./routes/sandboxes.ts";
import { e2bRoutes } from "../e2b/routes.ts";
import { IdParams, agentErrors, commonErrors } from "./schemas.ts";

/** Routes reachable without a user's credentials (hosts authenticate with their own secrets). */
const PUBLIC = [
  /^\/v1\/auth\/(signup|login)$/,
  /^\/v1\/hosts\/register$/,
  /^\/v1\/hosts\/[^/]+\/heartbeat$/,
];

const JSON_LIMIT = 1 << 20;

export function buildApp(deps: Deps, service: SandboxService, reconciler: Reconciler) {
  const app = new OpenAPIHono<AppEnv>();
  const log: Logger = deps.log;

  app.onError((err, c) => {
    const { status, body, headers } = toErrorResponse(err);
    if (status >= 500) log.error({ err, path: c.req.path }, "request failed");
    return c.json(body, status, headers);
  });
  app.notFound((c) =>
    c.json(errorBody("not_found", `no route ${c.req.method} ${c.req.path}`), 404),
  );

  app.use("/v1/*", async (c, next) => {
    // Only file uploads may be large; they stream.
    if (c.req.path.endsWith("/files/write")) return next();
    return bodyLimit({
      maxSize: JSON_LIMIT,
      onError: (c) =>
        c.json(
          errorBody("invalid_argument", `request bodies are limited to ${JSON_LIMIT} bytes`),
          413,
        ),
    })(c, next);
  });
  const auth = requireAuth(deps);
  app.use("/v1/*", async (c, next) => {
    if (PUBLIC.some((p) => p.test(c.req.path))) return next();
    return auth(c, next);
  });

  app.route("/", accountRoutes(new AccountService(deps), new ApiKeyService(deps), deps.throttles));
  app.route("/", inviteRoutes(new InviteService(deps)));
  app.route("/", quotaRoutes(deps.quotas));
  app.route("/", sandboxRoutes(service));
  app.route("/", fileRoutes(deps, service));
  app.route("/", hostRoutes(new HostService({ ...deps, reconciler })));
  app.route("/", guestFileRoutes(service));
  app.route("/", metricsRoutes(deps.agents, service));
  app.route("/", logRoutes(deps.agents, service));
  app.route("/", terminalDocs());
  // E2B's REST API at E2B's own paths, in E2B's error shape (src/e2b).
  app.route("/", e2bRoutes(deps, service));

  app.openAPIRegistry.registerComponent("securitySchemes", "ApiKeyAuth", {
    type: "apiKey",
    in: "header",
    name: "X-API-Key",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "BearerAuth", {
    type: "http",
    scheme: "bearer",
    description: "A dashboard session token from /v1/auth/login",
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/sandboxes/{id}/exec/stream",
    tags: ["sandboxes"],
    summary: "Run a command with streamed output over a WebSocket",
    description:
      "Upgrade to a WebSocket, send one JSON message shaped like the exec body; receive JSON events " +
      '`{"type":"start","pid"}`, `{"type":"stdout"|"stderr","data":"<base64>"}`, ' +
      '`{"type":"end","exit_code","error"}` or `{"type":"error","code","message"}`. ' +
      "Browsers pass the session as `?token=`. Closing the socket cancels the command.",
    security: [{ ApiKeyAuth: [] }, { BearerAuth: [] }],
    request: { params: IdParams },
    responses: {
      101: { description: "Switching to the WebSocket protocol" },
      ...commonErrors,
      ...agentErrors,
    },
  });

  app.get("/health", async (c) => {
    const db = await pingDatabase(deps.db);
    return c.json({ status: db ? "ok" : "degraded", database: db }, db ? 200 : 503);
  });

  const document = () =>
    app.getOpenAPI31Document({
      openapi: "3.1.0",
      info: {
        title: "Wrenn API",
        version: "1.0.0",
        description:
          'Self-hosted microVM sandboxes. Errors are always `{"error": {"code", "message"}}`.',
      },
    });
  app.get("/openapi.yaml", (c) =>
    c.body(stringify(document(), { aliasDuplicateObjects: false }), 200, {
      "content-type": "application/yaml; charset=utf-8",
    }),
  );
  app.get("/openapi.json", (c) => c.json(document()));
  mountDocs(app);
  mountDashboard(app);
  return app;
}
