import { createRoute, z } from "@hono/zod-openapi";
import type { AgentPool } from "../../agents.ts";
import type { SandboxService } from "../../sandboxes.ts";
import { router, security } from "../router.ts";
import { IdParams, agentErrors, commonErrors, jsonResponse } from "../schemas.ts";

/** The agent reads at most this much per call. */
const MAX_READ = 1 << 20;

export const SandboxLogs = z
  .object({
    text: z.string().openapi({ description: "The console's bytes as UTF-8" }),
    offset: z.number().int().openapi({
      description: "Where `text` starts: the offset asked for, or the oldest byte still kept",
    }),
    next_offset: z
      .number()
      .int()
      .openapi({ description: "Ask again from here to read what follows (to follow the log)" }),
  })
  .openapi("SandboxLogs");

const LogsQuery = z.object({
  offset: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().openapi({
    description:
      "Absolute byte offset (a previous answer's `next_offset`); absent: the oldest kept",
  }),
  limit: z.coerce.number().int().min(1).max(MAX_READ).default(MAX_READ).openapi({
    description: "Most bytes to return",
  }),
});

/**
 * A running sandbox's log: the guest's serial console (kernel, init and envd
 * output) of its VM's current run, which its host agent keeps (bounded).
 */
export function logRoutes(agents: AgentPool, service: SandboxService) {
  const app = router();
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/sandboxes/{id}/logs",
      tags: ["sandboxes"],
      summary: "The guest's console (kernel and envd output) of a running sandbox, by byte offset",
      security,
      request: { params: IdParams, query: LogsQuery },
      responses: {
        200: jsonResponse(SandboxLogs, "Console text from `offset`"),
        ...commonErrors,
        ...agentErrors,
      },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const q = c.req.valid("query");
      const { host } = await service.running(c.get("caller"), id, "read the log of");
      const res = await agents.call(
        host,
        (a, o) =>
          a.getSandboxLogs(
            {
              sandboxId: id,
              ...(q.offset !== undefined ? { offset: BigInt(q.offset) } : {}),
              limit: q.limit,
            },
            o,
          ),
        15_000,
      );
      return c.json(
        { text: res.text, offset: Number(res.offset), next_offset: Number(res.nextOffset) },
        200,
      );
    },
  );
  return app;
}
