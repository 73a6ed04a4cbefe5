import { createHash, timingSafeEqual } from "node:crypto";
import { Agent, type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import {
  PROXY_PORT_HEADER,
  PROXY_SANDBOX_HEADER,
  PROXY_SECRET_HEADER,
  SANDBOX_ID,
  endSocket,
  parsePort,
  proxyErrorBody,
} from "@wrenn/shared/sandbox-proxy.ts";

/** What the proxy needs of the sandbox manager. */
export interface GuestDirectory {
  /** Where the host reaches a running sandbox's guest; throws when it is not running. */
  guestAddress(sandboxId: string): string;
}

export interface GuestProxy {
  /** True when the request is a proxied one (it carries the sandbox header). */
  matches(req: IncomingMessage): boolean;
  web(req: IncomingMessage, res: ServerResponse): void;
  ws(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

interface Target {
  sandboxId: string;
  port: number;
  host: string;
}

/**
 * The last hop of the traffic proxy: requests the control plane forwards
 * with the proxy headers go to the named port of the sandbox's guest, at
 * its slot address. Bodies stream both ways; WebSocket and other upgrades
 * pass through as raw sockets. The proxy headers never reach the guest.
 */
export function createGuestProxy(
  directory: GuestDirectory,
  opts: { secret?: string | undefined; log: Logger },
): GuestProxy {
  const want = opts.secret === undefined ? null : digest(opts.secret);
  // One pool of kept-alive sockets to every guest: a proxied request costs no handshake.
  const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });
  const proxy = createProxyServer({ agent, xfwd: false, proxyTimeout: 0 });
  proxy.on("proxyReq", (proxyReq) => {
    proxyReq.removeHeader(PROXY_SANDBOX_HEADER);
    proxyReq.removeHeader(PROXY_PORT_HEADER);
    proxyReq.removeHeader(PROXY_SECRET_HEADER);
  });
  proxy.on("proxyReqWs", (proxyReq) => {
    proxyReq.removeHeader(PROXY_SANDBOX_HEADER);
    proxyReq.removeHeader(PROXY_PORT_HEADER);
    proxyReq.removeHeader(PROXY_SECRET_HEADER);
  });

  /** The guest's address, or the status and body to answer with. */
  function resolve(req: IncomingMessage): Target | { status: number; body: string } {
    if (want !== null) {
      const given = req.headers[PROXY_SECRET_HEADER];
      if (typeof given !== "string" || !timingSafeEqual(digest(given), want)) {
        return { status: 401, body: proxyErrorBody(401, "missing or wrong host secret") };
      }
    }
    const sandboxId = req.headers[PROXY_SANDBOX_HEADER];
    const port = parsePort(str(req.headers[PROXY_PORT_HEADER]));
    if (typeof sandboxId !== "string" || !SANDBOX_ID.test(sandboxId) || port === null) {
      return {
        status: 400,
        body: proxyErrorBody(400, `${PROXY_SANDBOX_HEADER} and ${PROXY_PORT_HEADER} are malformed`),
      };
    }
    try {
      return { sandboxId, port, host: directory.guestAddress(sandboxId) };
    } catch (err) {
      const reason = err instanceof WrennError ? err.message : messageOf(err);
      opts.log.debug({ sandbox: sandboxId, reason }, "proxy: sandbox not running here");
      return { status: 502, body: proxyErrorBody(502, "The sandbox was not found", { sandboxId }) };
    }
  }

  function failure(target: Target, err: unknown): { status: number; body: string } {
    const code = (err as { code?: string }).code;
    if (code === "ECONNREFUSED") {
      return {
        status: 502,
        body: proxyErrorBody(502, "The sandbox is running but port is not open", {
          sandboxId: target.sandboxId,
          port: target.port,
        }),
      };
    }
    opts.log.warn(
      { sandbox: target.sandboxId, port: target.port, err: messageOf(err) },
      "proxy: guest connection failed",
    );
    return {
      status: 502,
      body: proxyErrorBody(502, `The sandbox did not answer on port ${target.port}`, {
        sandboxId: target.sandboxId,
        port: target.port,
      }),
    };
  }

  return {
    matches: (req) => req.headers[PROXY_SANDBOX_HEADER] !== undefined,
    web(req, res) {
      const target = resolve(req);
      if ("status" in target) {
        answer(res, target.status, target.body);
        return;
      }
      proxy.web(req, res, { target: { host: target.host, port: target.port } }, (err) => {
        const { status, body } = failure(target, err);
        answer(res, status, body);
      });
    },
    ws(req, socket, head) {
      const target = resolve(req);
      if ("status" in target) {
        endSocket(socket, target.status, target.body);
        return;
      }
      proxy.ws(req, socket, head, { target: { host: target.host, port: target.port } }, (err) => {
        const { status, body } = failure(target, err);
        endSocket(socket, status, body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

function answer(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "application/json" }).end(body);
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

function str(v: string | string[] | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}
