import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { z } from "@hono/zod-openapi";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { AgentTarget } from "../../agents.ts";
import { authenticate } from "../../auth/authenticate.ts";
import { fromAgentError, statusOf } from "../../errors.ts";
import type { SandboxService } from "../../sandboxes.ts";
import type { Deps } from "../../context.ts";
import { describeIssues, router, security } from "../router.ts";
import { pacedSender } from "../ws-pacing.ts";
import { FileUser, IdParams, agentErrors, commonErrors } from "../schemas.ts";

export const TERMINAL_PATH = /^\/v1\/sandboxes\/([a-z0-9]{1,64})\/terminal$/;

const TerminalQuery = z.object({
  pid: z.coerce.number().int().min(0).max(4_294_967_295).default(0).openapi({
    description:
      "0 (or absent) starts a login shell; a pid from an earlier `start` reattaches to it",
  }),
  cols: z.coerce.number().int().min(1).max(1000).default(80),
  rows: z.coerce.number().int().min(1).max(1000).default(24),
  user: FileUser.optional(),
  token: z
    .string()
    .optional()
    .openapi({ description: "The session token (browsers cannot set headers)" }),
  team_id: z.string().optional(),
});

const ControlMessage = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("resize"),
    cols: z.number().int().min(1).max(1000),
    rows: z.number().int().min(1).max(1000),
  }),
]);

/** Keystrokes per binary frame; a paste larger than this is a client bug. */
const INPUT_LIMIT = 1 << 16;

/** The terminal's entry in the OpenAPI document (the upgrade itself is not a Hono route). */
export function terminalDocs() {
  const app = router();
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/sandboxes/{id}/terminal",
    tags: ["sandboxes"],
    summary: "An interactive terminal (a PTY in the guest) over a WebSocket",
    description:
      "Binary frames carry the terminal's bytes both ways. Text frames from the client are JSON " +
      '`{"type":"resize","cols","rows"}`; from the server `{"type":"start","pid"}` first, then ' +
      '`{"type":"end","exit_code"}` when the shell exits or `{"type":"error","code","message"}`. ' +
      "The shell outlives the socket: reconnect with `?pid=` to reattach (after a reload or a " +
      "pause and resume).",
    security,
    request: { params: IdParams, query: TerminalQuery },
    responses: {
      101: { description: "Switching to the WebSocket protocol" },
      ...commonErrors,
      ...agentErrors,
    },
  });
  return app;
}

/** Handles an upgrade whose path matched TERMINAL_PATH; errors before the upgrade are thrown. */
export function terminalUpgrade(deps: Deps, service: SandboxService) {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * INPUT_LIMIT });

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const sandboxId = TERMINAL_PATH.exec(url.pathname)?.[1];
    if (!sandboxId) throw new WrennError("not_found", `no WebSocket route at ${url.pathname}`);
    const query = TerminalQuery.safeParse(Object.fromEntries(url.searchParams));
    if (!query.success)
      throw new WrennError("invalid_argument", describeIssues(query.error.issues));
    const auth = req.headers.authorization;
    const caller = await authenticate(
      deps,
      {
        apiKey: headerOf(req, "x-api-key"),
        bearer: auth?.toLowerCase().startsWith("bearer ")
          ? auth.slice(7).trim()
          : (query.data.token ?? null),
        teamId: headerOf(req, "x-team-id") ?? query.data.team_id ?? null,
      },
      deps.throttles.clients.of(req.socket.remoteAddress, req.headers["x-forwarded-for"]),
    );
    const { host } = await service.running(caller, sandboxId, "open a terminal in");
    wss.handleUpgrade(req, socket, head, (ws) => run(ws, sandboxId, host, query.data));
  }

  function run(
    ws: WebSocket,
    sandboxId: string,
    host: AgentTarget,
    q: z.infer<typeof TerminalQuery>,
  ): void {
    const agent = deps.agents.client(host);
    const abort = new AbortController();
    const log = deps.log.child({ sandboxId });
    let pid = q.pid;
    // Keystrokes go one RPC at a time, in order.
    let inputs = Promise.resolve();
    const sendJson = (event: object) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(event));
    };
    const fail = (err: unknown) => {
      const e = err instanceof WrennError ? err : fromAgentError(err, host.address);
      sendJson({ type: "error", code: e.code, status: statusOf(e.code), message: e.message });
      ws.close(1011, e.code.slice(0, 100));
    };
    ws.on("close", () => abort.abort());
    ws.on("error", (err) => {
      log.debug({ err: messageOf(err) }, "terminal socket error");
      abort.abort();
    });
    ws.on("message", (data: RawData, isBinary: boolean) => {
      const bytes = Buffer.isBuffer(data)
        ? data
        : Array.isArray(data)
          ? Buffer.concat(data)
          : Buffer.from(data);
      if (isBinary) {
        if (pid === 0 || bytes.length > INPUT_LIMIT) return;
        const target = pid;
        inputs = inputs
          .then(() =>
            agent.ptyInput({ sandboxId, pid: target, data: bytes }, { timeoutMs: 15_000 }),
          )
          .then(
            () => undefined,
            (err: unknown) => fail(err),
          );
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(bytes.toString("utf8"));
      } catch {
        parsed = undefined;
      }
      const msg = ControlMessage.safeParse(parsed);
      if (!msg.success) {
        fail(
          new WrennError("invalid_argument", 'text frames must be {"type":"resize","cols","rows"}'),
        );
        return;
      }
      if (pid === 0) return;
      const { cols, rows } = msg.data;
      agent
        .ptyResize({ sandboxId, pid, cols, rows }, { timeoutMs: 15_000 })
        .catch((err: unknown) => log.debug({ err: messageOf(err) }, "terminal resize failed"));
    });
    void (async () => {
      try {
        const events = agent.ptyStream(
          { sandboxId, pid: q.pid, cols: q.cols, rows: q.rows, user: q.user ?? "" },
          { signal: abort.signal },
        );
        // A client that does not read holds the shell's output back instead of our memory.
        const paced = pacedSender(ws);
        for await (const ev of events) {
          const e = ev.event;
          if (e.case === "start") {
            pid = e.value.pid;
            sendJson({ type: "start", pid });
            // A reattached shell shows nothing until it prints. The kernel signals SIGWINCH
            // only when the size changes, so step it once: readline and full-screen
            // programs redraw on that signal.
            if (q.pid !== 0) {
              const size = { sandboxId, pid, cols: q.cols };
              await agent
                .ptyResize({ ...size, rows: Math.max(1, q.rows - 1) })
                .then(() => agent.ptyResize({ ...size, rows: q.rows }))
                .catch(() => {});
            }
          } else if (e.case === "data") {
            await paced.send(e.value, true);
          } else if (e.case === "end") {
            sendJson({ type: "end", exit_code: e.value.exitCode, error: e.value.error });
          }
        }
        ws.close(1000, "the shell exited");
      } catch (err) {
        if (!abort.signal.aborted) fail(err);
      }
    })();
    log.info({ pid: q.pid }, q.pid === 0 ? "terminal opened" : "terminal reattached");
  }

  return {
    upgrade,
    close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}

function headerOf(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return typeof v === "string" ? v : null;
}
