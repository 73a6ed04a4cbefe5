import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo, Server as NetServer, Socket } from "node:net";
import { createSecureContext } from "node:tls";
import type { Duplex } from "node:stream";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";

/** PEM certificate chain and private key: the agent serves HTTPS (HTTP/2 and HTTP/1.1). */
export interface AgentTls {
  cert: string;
  key: string;
}

export type AgentRequest = IncomingMessage | Http2ServerRequest;
export type AgentResponse = ServerResponse | Http2ServerResponse;

export interface AgentListener {
  server: NetServer;
  /** `http://` or `https://` and the address it listens on. */
  url: string;
  /** Stops listening and drops every open connection (streams included). */
  close(): Promise<void>;
}

/** Addresses only this machine reaches. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * The agent drives VMs as root: reachable from other machines, it answers
 * only the control plane holding its secret. Refused rather than warned
 * about, since a warning in a daemon's log is read after the fact.
 */
export function requireSecretOffLoopback(
  listen: string,
  host: string,
  secret: string | undefined,
): void {
  if (secret === undefined && !isLoopback(host)) {
    throw new WrennError(
      "invalid_argument",
      `--listen ${listen} is reachable from other machines: give the agent a --secret (or WRENN_HOST_SECRET) and register the host with it, or listen on 127.0.0.1`,
    );
  }
}

/** Refuses a certificate and key that do not load (or do not match) before the agent starts. */
export function checkTls(tls: AgentTls): void {
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (err) {
    throw new WrennError(
      "invalid_argument",
      `--tls-cert/--tls-key: not a usable PEM certificate chain and matching key (${messageOf(err)})`,
    );
  }
}

/**
 * The agent's one listener, for Connect calls and the traffic proxy's hop.
 * With `tls` it speaks HTTPS, HTTP/2 and HTTP/1.1 on one port (ALPN);
 * upgrades (the proxy's WebSockets) come over HTTP/1.1. Requests may run as
 * long as they stream: no request timeout.
 */
export async function listenAgent(opts: {
  listen: string;
  host: string;
  port: number;
  tls?: AgentTls | undefined;
  onRequest: (req: AgentRequest, res: AgentResponse) => void;
  onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}): Promise<AgentListener> {
  const sockets = new Set<Socket>();
  let server: NetServer;
  let closeConnections: () => void;
  if (opts.tls) {
    checkTls(opts.tls);
    const secure = createSecureServer(
      { cert: opts.tls.cert, key: opts.tls.key, allowHTTP1: true },
      opts.onRequest,
    );
    // HTTP/1.1 over this server defaults to a 300 s request timeout: file transfers and exec streams run longer.
    // Longer than the control plane's idle pools keep sockets (see below).
    Object.assign(secure, { requestTimeout: 0, keepAliveTimeout: 65_000 });
    secure.on("upgrade", opts.onUpgrade);
    secure.on("secureConnection", (socket: Socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    });
    server = secure;
    closeConnections = () => {
      for (const s of sockets) s.destroy();
    };
  } else {
    const plain = createServer({ requestTimeout: 0 }, opts.onRequest);
    plain.on("upgrade", opts.onUpgrade);
    // Longer than the control plane's idle pools keep sockets, so the agent never
    // closes a kept-alive socket just as the control plane reuses it.
    plain.keepAliveTimeout = 65_000;
    server = plain;
    closeConnections = () => plain.closeAllConnections();
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(new WrennError("unavailable", `cannot listen on ${opts.listen}: ${messageOf(err)}`)),
    );
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    server,
    url: `${opts.tls ? "https" : "http"}://${host}:${port}`,
    async close() {
      closeConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
