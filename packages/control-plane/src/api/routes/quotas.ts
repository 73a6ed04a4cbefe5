import { createRoute } from "@hono/zod-openapi";
import type { Quotas, TeamLimits as Limits } from "../../quotas.ts";
import { router, security } from "../router.ts";
import {
  SetTeamLimitsBody,
  TeamLimits,
  TeamParams,
  commonErrors,
  jsonBody,
  jsonResponse,
} from "../schemas.ts";

const limitsJson = (teamId: string, l: Limits) => {
  const one = (k: keyof Limits["limits"]) => ({
    limit: l.limits[k],
    used: l.usage[k],
    custom: l.custom[k],
  });
  return {
    team_id: teamId,
    sandboxes: one("sandboxes"),
    vcpus: one("vcpus"),
    memory_mb: one("memoryMb"),
    disk_mb: one("diskMb"),
  };
};

/** A platform admin reads and sets a team's limits. */
export function quotaRoutes(quotas: Quotas) {
  const app = router();

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/admin/teams/{id}/limits",
      tags: ["admin"],
      summary: "A team's limits (its own or the default) and what it uses now",
      security,
      request: { params: TeamParams },
      responses: { 200: jsonResponse(TeamLimits, "Limits and usage"), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      return c.json(limitsJson(id, await quotas.get(c.get("caller"), id)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "put",
      path: "/v1/admin/teams/{id}/limits",
      tags: ["admin"],
      summary:
        "Set a team's limits; creates and resumes past one answer 429 quota_exceeded naming it",
      security,
      request: { params: TeamParams, body: jsonBody(SetTeamLimitsBody) },
      responses: { 200: jsonResponse(TeamLimits, "The limits now"), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const b = c.req.valid("json");
      const l = await quotas.set(c.get("caller"), id, {
        sandboxes: b.sandboxes,
        vcpus: b.vcpus,
        memoryMb: b.memory_mb,
        diskMb: b.disk_mb,
      });
      return c.json(limitsJson(id, l), 200);
    },
  );

  return app;
}
