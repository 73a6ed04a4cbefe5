import { timingSafeEqual } from "node:crypto";
import {
  Agent,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { relayAnswer, relayBody } from "@wrenn/shared/body-relay.ts";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { takeoverLength } from "@wrenn/shared/socket-body.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import {
  ENVD_PORT,
  PROXY_PORT_HEADER,
  PROXY_SANDBOX_HEADER,
  PROXY_SECRET_HEADER,
  endResponse,
  endSocket,
  proxyErrorBody,
  type LocalHop,
} from "@wrenn/shared/sandbox-proxy.ts";
import type { Db } from "../db/open.ts";
import { SandboxDirectory, type ProxyEntry, type Resumer } from "./directory.ts";
import { routeOf, type ProxyRoute } from "./route.ts";

export interface SandboxProxyOptions {
  db: Db;
  log: Logger;
  /** Sandboxes' domain (`<port>-<id>.<domain>`); null: header routing only. */
  domain: string | null;
  /** Resumes a paused sandbox whose owner asked for autoResume. */
  resume: Resumer;
  /** How long a running sandbox's host stays cached (default 2 s). */
  cacheTtlMs?: number;
  /** PEM CAs that sign `https://` agents' certificates (default: the system's). */
  agentCa?: string | undefined;
  /** Agents in this process by registered address: their hop takes requests without a socket. */
  localHops?: ReadonlyMap<string, LocalHop> | undefined;
}

export interface SandboxProxy {
  /** The sandbox port a request is for, or null when it is an API request. */
  route(req: IncomingMessage): ProxyRoute | null;
  web(req: IncomingMessage, res: ServerResponse, route: ProxyRoute): void;
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, route: ProxyRoute): void;
  close(): void;
}

interface Failure {
  status: number;
  body: string;
}

/** How long a request waits for a sandbox another request is resuming. */
const RESUME_WAIT_MS = 60_000;

/**
 * The control plane's half of the traffic proxy: finds the sandbox's host
 * and forwards the request, unchanged and streamed, to that host's agent,
 * which forwards it to the guest. envd's own access token guards envd's
 * port end to end; the traffic access token guards a secure sandbox's other
 * ports unless its owner allowed public traffic.
 */
export function createSandboxProxy(opts: SandboxProxyOptions): SandboxProxy {
  const directory = new SandboxDirectory(opts.db, opts.log, opts.cacheTtlMs);
  const agent = new Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 64 });
  // For agents registered as https:// URLs (`--tls-cert` on the agent).
  const tlsAgent = new HttpsAgent({
    keepAlive: true,
    maxSockets: 512,
    maxFreeSockets: 64,
    ...(opts.agentCa !== undefined ? { ca: opts.agentCa } : {}),
  });
  const proxy = createProxyServer({ agent, xfwd: true, proxyTimeout: 0, selfHandleResponse: true });
  // Answers go on through relayAnswer: large bodies read off the socket past the parser.
  proxy.on("proxyRes", (answer, req, res) =>
    relayAnswer(answer, res as ServerResponse, req.method),
  );

  async function resolve(route: ProxyRoute, req: IncomingMessage): Promise<ProxyEntry | Failure> {
    if (route.error !== undefined) return { status: 400, body: proxyErrorBody(400, route.error) };
    const { sandboxId, port } = route;
    const notFound = {
      status: 502,
      body: proxyErrorBody(502, "The sandbox was not found", { sandboxId }),
    };
    let entry = await directory.lookup(sandboxId);
    if (entry?.status === "paused" && entry.autoResume) {
      opts.log.info({ sandboxId, port }, "proxy: resuming a paused sandbox for a request");
      await directory.resume(entry, opts.resume);
      entry = await directory.lookup(sandboxId);
    }
    const deadline = Date.now() + RESUME_WAIT_MS;
    while (entry?.status === "pending" && entry.autoResume && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      entry = await directory.lookup(sandboxId);
    }
    if (!entry || entry.status !== "running" || !entry.host) {
      if (entry?.status === "paused") {
        return {
          status: 502,
          body: proxyErrorBody(502, "The sandbox is paused", { sandboxId }),
        };
      }
      return notFound;
    }
    if (port !== ENVD_PORT && entry.secure && !entry.allowPublicTraffic) {
      const given = req.headers["e2b-traffic-access-token"];
      if (typeof given !== "string" || !sameSecret(given, entry.trafficAccessToken)) {
        return {
          status: 403,
          body: proxyErrorBody(
            403,
            "this sandbox's ports need its traffic access token in the e2b-traffic-access-token header",
            { sandboxId, port },
          ),
        };
      }
    }
    return entry;
  }

  function hopHeaders(entry: ProxyEntry, port: number): Record<string, string> {
    const host = entry.host as NonNullable<ProxyEntry["host"]>;
    return {
      [PROXY_SANDBOX_HEADER]: entry.sandboxId,
      [PROXY_PORT_HEADER]: String(port),
      ...(host.secret ? { [PROXY_SECRET_HEADER]: host.secret } : {}),
    };
  }

  function forwardOptions(entry: ProxyEntry, port: number) {
    const host = entry.host as NonNullable<ProxyEntry["host"]>;
    const base = host.address.includes("://") ? host.address : `http://${host.address}`;
    return {
      target: base,
      agent: base.startsWith("https:") ? tlsAgent : agent,
      headers: hopHeaders(entry, port),
    };
  }

  /**
   * The agent's hop when it runs in this process: the request gets what the
   * HTTP hop would have carried (the hop's headers, x-forwarded-*) and is
   * handed over as it is, without a second relay through a loopback socket.
   */
  function localHop(
    entry: ProxyEntry,
    port: number,
    req: IncomingMessage,
    upgrade = false,
  ): LocalHop | undefined {
    const hop = entry.host ? opts.localHops?.get(entry.host.address) : undefined;
    if (hop === undefined) return undefined;
    Object.assign(req.headers, hopHeaders(entry, port));
    addForwarded(req, upgrade);
    return hop;
  }

  function agentFailure(entry: ProxyEntry, err: unknown): Failure {
    directory.forget(entry.sandboxId);
    opts.log.warn(
      { sandboxId: entry.sandboxId, host: entry.host?.address, err: messageOf(err) },
      "proxy: the sandbox's host did not answer",
    );
    return {
      status: 502,
      body: proxyErrorBody(502, "The sandbox's host did not answer", {
        sandboxId: entry.sandboxId,
      }),
    };
  }

  function internal(err: unknown, route: ProxyRoute): Failure {
    if (err instanceof WrennError) {
      return {
        status: 502,
        body: proxyErrorBody(502, err.message, { sandboxId: route.sandboxId ?? "" }),
      };
    }
    opts.log.error({ err, sandboxId: route.sandboxId }, "proxy: request failed");
    return { status: 502, body: proxyErrorBody(502, "the proxy failed to route this request") };
  }

  return {
    route: (req) => routeOf(req, opts.domain),
    web(req, res, route) {
      resolve(route, req).then(
        (entry) => {
          if ("body" in entry) return endResponse(res, entry.status, entry.body);
          const port = (route as { port: number }).port;
          const hop = localHop(entry, port, req);
          if (hop) return hop.web(req, res);
          const length = takeoverLength(req);
          if (length !== undefined) {
            // A large body with its length: read off the socket (shared/body-relay.ts).
            const { target, agent: sockets, headers } = forwardOptions(entry, port);
            addForwarded(req, false);
            const url = new URL(req.url ?? "/", target);
            const send = url.protocol === "https:" ? httpsRequest : httpRequest;
            const upstream = send(url, {
              method: req.method,
              headers: { ...req.headers, ...headers },
              agent: sockets,
            });
            return relayBody(req, res, length, upstream, (err) => {
              const f = agentFailure(entry, err);
              endResponse(res, f.status, f.body);
            });
          }
          proxy.web(req, res, forwardOptions(entry, port), (err) => {
            const f = agentFailure(entry, err);
            endResponse(res, f.status, f.body);
          });
        },
        (err: unknown) => {
          const f = internal(err, route);
          endResponse(res, f.status, f.body);
        },
      );
    },
    ws(req, socket, head, route) {
      resolve(route, req).then(
        (entry) => {
          if ("body" in entry) return endSocket(socket, entry.status, entry.body);
          const port = (route as { port: number }).port;
          const hop = localHop(entry, port, req, true);
          if (hop) return hop.ws(req, socket, head);
          proxy.ws(req, socket, head, forwardOptions(entry, port), (err) => {
            const f = agentFailure(entry, err);
            endSocket(socket, f.status, f.body);
          });
        },
        (err: unknown) => {
          const f = internal(err, route);
          endSocket(socket, f.status, f.body);
        },
      );
    },
    close() {
      agent.destroy();
      tlsAgent.destroy();
    },
  };
}

function sameSecret(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return want.length > 0 && a.length === b.length && timingSafeEqual(a, b);
}

/** The x-forwarded-* headers the HTTP hop adds (http-proxy-3's `xfwd`), for the in-process hop. */
function addForwarded(req: IncomingMessage, upgrade: boolean): void {
  const encrypted = req.socket instanceof TLSSocket && req.socket.encrypted;
  const host = req.headers.host ?? "";
  const values = {
    for: req.socket.remoteAddress ?? "",
    port: /:(\d+)/.exec(host)?.[1] ?? (encrypted ? "443" : "80"),
    proto: (upgrade ? "ws" : "http") + (encrypted ? "s" : ""),
  };
  for (const [name, value] of Object.entries(values)) {
    const had = req.headers[`x-forwarded-${name}`];
    req.headers[`x-forwarded-${name}`] = had ? `${String(had)},${value}` : value;
  }
  req.headers["x-forwarded-host"] ||= host;
}
