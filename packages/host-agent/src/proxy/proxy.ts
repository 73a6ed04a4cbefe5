import { createHash, timingSafeEqual } from "node:crypto";
import { Agent, request, type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { relayAnswer, relayBody } from "@wrenn/shared/body-relay.ts";
import { WrennError, isWrennError, messageOf } from "@wrenn/shared/errors.ts";
import { takeoverLength } from "@wrenn/shared/socket-body.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import {
  PROXY_PORT_HEADER,
  PROXY_SANDBOX_HEADER,
  PROXY_SECRET_HEADER,
  SANDBOX_ID,
  type LocalHop,
  endResponse,
  endSocket,
  parsePort,
  proxyErrorBody,
} from "@wrenn/shared/sandbox-proxy.ts";

/** The control plane's headers for this hop: they never reach the guest. */
const HOP_HEADERS = [PROXY_SANDBOX_HEADER, PROXY_PORT_HEADER, PROXY_SECRET_HEADER];

/** What the proxy needs of the sandbox manager. */
export interface GuestDirectory {
  /**
   * Where the host reaches a running sandbox's guest, and a signal that
   * aborts when this run of its VM ends (pause, destroy, crash); throws when
   * it is not running.
   */
  guestAddress(sandboxId: string): { host: string; gone: AbortSignal };
}

/** The hop's handlers also serve a control plane in this process (LocalHop). */
export interface GuestProxy extends LocalHop {
  /** True when the request is a proxied one (it carries the sandbox header). */
  matches(req: IncomingMessage): boolean;
  close(): void;
}

interface Target {
  sandboxId: string;
  port: number;
  host: string;
  pool: GuestPool;
}

/**
 * Kept-alive sockets to one run of one guest. Slot addresses are reused by
 * the next sandbox, so sockets never outlive the VM run they were opened
 * to: a pooled socket to a dead guest would meet the next guest's RST. When
 * the run ends, its sockets close at once, in-flight and upgraded ones too,
 * so a client sees the sandbox go instead of waiting on a silent socket.
 */
class GuestPool {
  readonly agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 16 });
  /** Both ends of upgraded connections: the caller's and the guest's. */
  readonly #upgraded = new Set<Duplex>();
  #closed = false;

  /**
   * Destroyed (not ended) when the run ends: an end() to a guest that is
   * gone waits in FIN-WAIT-1 for an answer that never comes, and its handle
   * kept the agent's process alive.
   */
  track(socket: Duplex): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#upgraded.add(socket);
    socket.once("close", () => this.#upgraded.delete(socket));
  }

  close(): void {
    this.#closed = true;
    this.agent.destroy();
    for (const s of this.#upgraded) s.destroy();
    this.#upgraded.clear();
  }
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
  const pools = new Map<AbortSignal, GuestPool>();
  const poolOf = (gone: AbortSignal): GuestPool => {
    let pool = pools.get(gone);
    if (!pool) {
      const created = new GuestPool();
      pools.set(gone, created);
      gone.addEventListener(
        "abort",
        () => {
          created.close();
          pools.delete(gone);
        },
        { once: true },
      );
      pool = created;
    }
    return pool;
  };
  const proxy = createProxyServer({ xfwd: false, proxyTimeout: 0, selfHandleResponse: true });
  // Answers go on through relayAnswer: large bodies read off the socket past the parser.
  proxy.on("proxyRes", (answer, req, res) =>
    relayAnswer(answer, res as ServerResponse, req.method),
  );
  proxy.on("proxyReq", (proxyReq) => {
    for (const name of HOP_HEADERS) proxyReq.removeHeader(name);
  });
  /** The pool of each upgrade in flight, for its guest-side socket. */
  const upgrading = new WeakMap<IncomingMessage, GuestPool>();
  proxy.on("proxyReqWs", (proxyReq, req) => {
    for (const name of HOP_HEADERS) proxyReq.removeHeader(name);
    const pool = upgrading.get(req);
    if (pool) proxyReq.once("upgrade", (_res, guestSocket: Duplex) => pool.track(guestSocket));
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
      const { host, gone } = directory.guestAddress(sandboxId);
      if (gone.aborted) throw new WrennError("unavailable", "its VM is gone");
      return { sandboxId, port, host, pool: poolOf(gone) };
    } catch (err) {
      if (isWrennError(err, "resource_exhausted")) {
        // Here and running, but stopped until it can write (its disk is full).
        return { status: 503, body: proxyErrorBody(503, err.message, { sandboxId }) };
      }
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
        endResponse(res, target.status, target.body);
        return;
      }
      const length = takeoverLength(req);
      if (length !== undefined) {
        const headers = { ...req.headers };
        for (const name of HOP_HEADERS) delete headers[name];
        const upstream = request({
          host: target.host,
          port: target.port,
          method: req.method,
          path: req.url,
          headers,
          agent: target.pool.agent,
        });
        relayBody(req, res, length, upstream, (err) => {
          const { status, body } = failure(target, err);
          endResponse(res, status, body);
        });
        return;
      }
      const options = {
        target: { host: target.host, port: target.port },
        agent: target.pool.agent,
      };
      proxy.web(req, res, options, (err) => {
        const { status, body } = failure(target, err);
        endResponse(res, status, body);
      });
    },
    ws(req, socket, head) {
      const target = resolve(req);
      if ("status" in target) {
        endSocket(socket, target.status, target.body);
        return;
      }
      target.pool.track(socket);
      upgrading.set(req, target.pool);
      proxy.ws(req, socket, head, { target: { host: target.host, port: target.port } }, (err) => {
        const { status, body } = failure(target, err);
        endSocket(socket, status, body);
      });
    },
    request(sandboxId, port, options) {
      let guest: { host: string; gone: AbortSignal };
      try {
        guest = directory.guestAddress(sandboxId);
        if (guest.gone.aborted) throw new WrennError("unavailable", "its VM is gone");
      } catch (err) {
        // As the hop answers 502 over HTTP: the host's trouble, not the caller's.
        throw new WrennError(
          "unavailable",
          `sandbox '${sandboxId}' is not running on this host: ${messageOf(err)}`,
        );
      }
      return request({ ...options, host: guest.host, port, agent: poolOf(guest.gone).agent });
    },
    close() {
      for (const pool of pools.values()) pool.close();
      pools.clear();
    },
  };
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

function str(v: string | string[] | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}
