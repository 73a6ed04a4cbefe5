import type { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { AgentTarget } from "../agents.ts";
import { authenticate } from "../auth/authenticate.ts";
import { fromAgentError, statusOf, toErrorResponse } from "../errors.ts";
import type { SandboxService } from "../sandboxes.ts";
import type { Deps } from "../context.ts";
import { describeIssues } from "./router.ts";
import { pacedSender } from "./ws-pacing.ts";
import { TERMINAL_PATH, terminalUpgrade } from "./routes/terminal.ts";
import { ExecBody } from "./schemas.ts";

/** The exec message's size limit, as for REST bodies. */
const MESSAGE_LIMIT = 1 << 20;

export const EXEC_STREAM_PATH = /^\/v1\/sandboxes\/([a-z0-9]{1,64})\/exec\/stream$/;

/**
 * `GET /v1/sandboxes/{id}/exec/stream` upgraded to a WebSocket. The client
 * sends one JSON text message shaped like the exec body; the server answers
 * with JSON events `{type:"start",pid}`, `{type:"stdout"|"stderr",data}`
 * (data base64), `{type:"end",exit_code,error}` or `{type:"error",code,message}`,
 * then closes. Closing the socket early cancels the command.
 */
export function attachExecStream(
  server: EventEmitter,
  deps: Deps,
  service: SandboxService,
): () => void {
  // Room above the 1 MiB limit, so a message just past it gets an error event, not only a 1009 close.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * MESSAGE_LIMIT });
  // The dashboard's terminal shares this upgrade listener (one listener answers unknown paths).
  const terminal = terminalUpgrade(deps, service);
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void upgrade(req, socket, head).catch((err: unknown) => {
      const { status, body, headers = {} } = toErrorResponse(err);
      const text = JSON.stringify(body);
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
      socket.end(
        `HTTP/1.1 ${status} Error\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n${extra.join("")}connection: close\r\n\r\n${text}`,
      );
    });
  };
  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer) {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (TERMINAL_PATH.test(url.pathname)) return terminal.upgrade(req, socket, head);
    const match = EXEC_STREAM_PATH.exec(url.pathname);
    if (!match?.[1]) throw new WrennError("not_found", `no WebSocket route at ${url.pathname}`);
    checkHandshake(req);
    const auth = req.headers.authorization;
    const caller = await authenticate(
      deps,
      {
        apiKey: header(req, "x-api-key") ?? url.searchParams.get("api_key"),
        // Browsers cannot set headers on a WebSocket: they pass the session as ?token=.
        bearer: auth?.toLowerCase().startsWith("bearer ")
          ? auth.slice(7).trim()
          : url.searchParams.get("token"),
        teamId: header(req, "x-team-id") ?? url.searchParams.get("team_id"),
      },
      deps.throttles.clients.of(req.socket.remoteAddress, req.headers["x-forwarded-for"]),
    );
    const { host } = await service.running(caller, match[1], "exec in");
    const sandboxId = match[1];
    wss.handleUpgrade(req, socket, head, (ws) => run(ws, sandboxId, host));
  }
  function run(ws: WebSocket, sandboxId: string, host: AgentTarget) {
    const abort = new AbortController();
    const send = (event: object) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(event));
    };
    const fail = (err: unknown) => {
      const e = err instanceof WrennError ? err : fromAgentError(err, host.address);
      send({ type: "error", code: e.code, status: statusOf(e.code), message: e.message });
      ws.close(1011, e.code);
    };
    ws.on("close", () => abort.abort());
    // A protocol violation (a frame past maxPayload, bad UTF-8): `ws` closes the socket
    // with the matching code; without a listener the error would crash the process.
    ws.on("error", (err) => {
      deps.log.debug({ sandboxId, err: messageOf(err) }, "exec stream protocol error");
      abort.abort();
    });
    ws.once("message", (data, isBinary) => {
      const size = Array.isArray(data)
        ? data.reduce((n, b) => n + b.length, 0)
        : (data as Buffer | ArrayBuffer).byteLength;
      if (size > MESSAGE_LIMIT) {
        fail(
          new WrennError(
            "invalid_argument",
            `the exec message is limited to ${MESSAGE_LIMIT} bytes, got ${size}`,
          ),
        );
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(isBinary ? "" : String(data));
      } catch {
        fail(
          new WrennError(
            "invalid_argument",
            "the first message must be JSON: {cmd, args, timeout_sec}",
          ),
        );
        return;
      }
      const req = ExecBody.safeParse(parsed);
      if (!req.success) {
        fail(new WrennError("invalid_argument", describeIssues(req.error.issues)));
        return;
      }
      void (async () => {
        try {
          const events = deps.agents.client(host).execStream(
            {
              sandboxId,
              cmd: req.data.cmd,
              args: req.data.args,
              timeoutSec: req.data.timeout_sec,
              envs: req.data.envs ?? {},
              cwd: req.data.cwd ?? "",
              user: req.data.user ?? "",
            },
            { signal: abort.signal, timeoutMs: (req.data.timeout_sec + 15) * 1000 },
          );
          // The next event is read only once the client has taken enough of the last ones.
          const paced = pacedSender(ws);
          for await (const ev of events) {
            const e = ev.event;
            if (e.case === "start") send({ type: "start", pid: e.value.pid });
            else if (e.case === "data" && e.value.output.case) {
              await paced.send(
                JSON.stringify({
                  type: e.value.output.case,
                  data: Buffer.from(e.value.output.value).toString("base64"),
                }),
              );
            } else if (e.case === "end") {
              send({ type: "end", exit_code: e.value.exitCode, error: e.value.error });
            }
          }
          ws.close(1000, "done");
        } catch (err) {
          if (!abort.signal.aborted) fail(err);
          else deps.log.debug({ sandboxId, err: messageOf(err) }, "exec stream cancelled");
        }
      })();
    });
  }
  server.on("upgrade", onUpgrade);
  return () => {
    server.off("upgrade", onUpgrade);
    terminal.close();
    for (const ws of wss.clients) ws.terminate();
    wss.close();
  };
}

/**
 * What `ws` would refuse with a bare text 400, refused first in the API's
 * error shape: anything but a version 13 (or 8) WebSocket GET with a key.
 */
function checkHandshake(req: IncomingMessage): void {
  const key = header(req, "sec-websocket-key") ?? "";
  const version = header(req, "sec-websocket-version");
  if (
    req.method !== "GET" ||
    header(req, "upgrade")?.toLowerCase() !== "websocket" ||
    !/^[+/0-9A-Za-z]{22}==$/.test(key) ||
    (version !== "13" && version !== "8")
  ) {
    throw new WrennError(
      "invalid_argument",
      "this route takes a WebSocket handshake: GET with Upgrade: websocket, Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
    );
  }
}

function header(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return typeof v === "string" ? v : null;
}
