import { createRoute, z } from "@hono/zod-openapi";
import type { AgentPool } from "../../agents.ts";
import type { SandboxService } from "../../sandboxes.ts";
import { router, security } from "../router.ts";
import { IdParams, agentErrors, commonErrors, jsonResponse } from "../schemas.ts";

export const MetricSample = z
  .object({
    timestamp_ms: z.number().int(),
    cpu_count: z.number().int(),
    cpu_used_pct: z.number(),
    mem_used_bytes: z.number().int(),
    mem_total_bytes: z.number().int(),
    disk_used_bytes: z.number().int(),
    disk_total_bytes: z.number().int(),
  })
  .openapi("MetricSample");

const MetricsQuery = z.object({
  since_ms: z.coerce.number().int().min(0).default(0).openapi({
    description: "Only samples taken at or after this time (Unix milliseconds)",
  }),
});

/** A running sandbox's resource samples, from its host agent. */
export function metricsRoutes(agents: AgentPool, service: SandboxService) {
  const app = router();
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/sandboxes/{id}/metrics",
      tags: ["sandboxes"],
      summary: "CPU, memory and disk samples of a running sandbox, oldest first",
      security,
      request: { params: IdParams, query: MetricsQuery },
      responses: {
        200: jsonResponse(z.array(MetricSample), "Samples"),
        ...commonErrors,
        ...agentErrors,
      },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const { host } = await service.running(c.get("caller"), id, "read metrics of");
      const res = await agents.call(
        host,
        (a, o) =>
          a.getSandboxMetrics({ sandboxId: id, sinceMs: BigInt(c.req.valid("query").since_ms) }, o),
        15_000,
      );
      return c.json(
        res.metrics.map((m) => ({
          timestamp_ms: Number(m.timestampMs),
          cpu_count: m.cpuCount,
          cpu_used_pct: m.cpuUsedPct,
          mem_used_bytes: Number(m.memUsedBytes),
          mem_total_bytes: Number(m.memTotalBytes),
          disk_used_bytes: Number(m.diskUsedBytes),
          disk_total_bytes: Number(m.diskTotalBytes),
        })),
        200,
      );
    },
  );
  return app;
}
