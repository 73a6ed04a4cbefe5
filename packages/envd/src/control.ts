/**
 * The host agent's control channel: an HTTP/1.1 upgrade of a connection to
 * envd's port (`GET /control`, `Upgrade: wrenn-control`) into lines of
 * JSON, one request and one answer at a time. It carries what POST /init
 * carries. Under TCG the guest runs envd on V8's interpreter, where Node's
 * HTTP server (the request and response objects, their streams and events)
 * is most of what a request costs the guest: timed in one guest (p50 of
 * 15), a line echoed on a kept connection took its VMM 4.4–5.0 ms of CPU, a
 * small POST to a bare node:http server 6.6–8.8 ms. A warm pool claim's
 * one request to its guest is its /init: its VMM's CPU per claim in bursts
 * of 20 went from 12.9–13.4 ms to 7.7–8.7 ms (2026-12-05, four runs).
 *
 *   → {"token": "<X-Access-Token>", "init": {<POST /init's body>}}\n
 *   ← {"ok": true}\n   or   {"ok": false, "status": 401, "message": "…"}\n
 *
 * `status` is what POST /init would have answered. Every request carries
 * the token, as every HTTP request does: the connection itself grants
 * nothing.
 */
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { CONTROL_PATH, CONTROL_PROTOCOL } from "@wrenn/shared/envd-control.ts";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdContext } from "./context.ts";
import { sameSecret } from "./http/auth.ts";
import { applyInit, checkInit } from "./http/init.ts";
import { statusOf } from "./http/respond.ts";

/** As POST /init's body. */
const MAX_LINE = 1 << 20;

/** For the server's shouldUpgradeCallback: other upgrades (h2c) stay plain requests. */
export function isControlUpgrade(req: IncomingMessage): boolean {
  return req.headers.upgrade?.toLowerCase() === CONTROL_PROTOCOL;
}

/** envd's control connections: the server's 'upgrade' listener, and their end at envd's close. */
export function controlChannel(
  ctx: EnvdContext,
  idleMs: number,
): {
  upgrade: (req: IncomingMessage, socket: Socket, head: Buffer) => void;
  closeAll: () => void;
} {
  // Upgraded, they are no longer the HTTP server's: closeAllConnections() misses them.
  const open = new Set<Socket>();
  return {
    upgrade(req, socket, head) {
      if (req.method !== "GET" || req.url !== CONTROL_PATH) {
        socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      open.add(socket);
      socket.once("close", () => open.delete(socket));
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CONTROL_PROTOCOL}\r\n\r\n`,
      );
      serveControl(socket, head, ctx, idleMs);
    },
    closeAll() {
      for (const socket of open) socket.destroy();
    },
  };
}

function serveControl(socket: Socket, head: Buffer, ctx: EnvdContext, idleMs: number): void {
  // As kept-alive HTTP connections: one a clone inherits from its boot
  // snapshot (its peer gone) must still close.
  socket.setTimeout(idleMs, () => socket.destroy());
  socket.on("error", () => socket.destroy());
  // The agent closed its end (its client closed, or the sandbox is going).
  socket.on("end", () => socket.destroy());
  // Bytes, not text: an HTTP server's socket refuses setEncoding. A newline
  // byte never occurs inside a UTF-8 character.
  let pending = head;
  let queue = Promise.resolve();
  const take = () => {
    for (let nl = pending.indexOf(10); nl >= 0; nl = pending.indexOf(10)) {
      if (nl > MAX_LINE) break;
      const line = pending.toString("utf8", 0, nl);
      pending = pending.subarray(nl + 1);
      queue = queue.then(() => answer(socket, line, ctx));
    }
    if (pending.length > MAX_LINE) {
      // Whatever follows is not a request boundary we can trust: answer and end.
      pending = Buffer.alloc(0);
      socket.pause();
      queue = queue.then(() => {
        socket.end(
          reply(new WrennError("invalid_argument", "control request is larger than 1 MiB")),
        );
      });
    }
  };
  socket.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    take();
  });
  take();
}

async function answer(socket: Socket, line: string, ctx: EnvdContext): Promise<void> {
  if (socket.destroyed) return;
  try {
    await apply(line, ctx);
    socket.write('{"ok":true}\n');
  } catch (err) {
    if (!(err instanceof WrennError)) ctx.log.warn({ err }, "control request failed");
    socket.write(reply(err));
  }
}

async function apply(line: string, ctx: EnvdContext): Promise<void> {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch (err) {
    throw new WrennError("invalid_argument", `control request is not JSON: ${messageOf(err)}`);
  }
  if (typeof request !== "object" || request === null || Array.isArray(request)) {
    throw new WrennError("invalid_argument", "control request must be an object");
  }
  const { token, init } = request as { token?: unknown; init?: unknown };
  const want = ctx.state.accessToken;
  if (want !== undefined && !(typeof token === "string" && sameSecret(token, want))) {
    throw new WrennError("unauthenticated", "missing or wrong access token");
  }
  if (init === undefined) throw new WrennError("invalid_argument", "control request has no 'init'");
  await applyInit(checkInit(init), ctx);
}

function reply(err: unknown): string {
  return `${JSON.stringify({ ok: false, status: statusOf(err), message: messageOf(err) })}\n`;
}
