import type { ClientRequest, IncomingMessage, RequestOptions, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

/**
 * The traffic proxy's contract between the control plane and a host agent:
 * the control plane forwards a user's request to the agent that runs the
 * sandbox, naming the sandbox and guest port in these headers (and the
 * host's secret, since the user's own Authorization header passes through
 * untouched); the agent forwards it to the guest and strips them.
 */
export const PROXY_SANDBOX_HEADER = "x-wrenn-proxy-sandbox";
export const PROXY_PORT_HEADER = "x-wrenn-proxy-port";
export const PROXY_SECRET_HEADER = "x-wrenn-host-secret";

/**
 * An agent's end of the hop, for a control plane in the agent's own process
 * (`wrenn up`): it takes a request carrying the proxy headers as the agent's
 * listener would, without the loopback socket between them — each relay of a
 * body costs about 2 CPU-seconds per GiB of socket reads and writes.
 */
export interface LocalHop {
  web(req: IncomingMessage, res: ServerResponse): void;
  ws(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /**
   * A request to `port` of a running sandbox's guest (what `web` forwards
   * to); throws a WrennError `unavailable` when the sandbox does not run here.
   */
  request(sandboxId: string, port: number, options: RequestOptions): ClientRequest;
}

/** envd's port in every guest: the one port the envd access token guards. */
export const ENVD_PORT = 49983;

/** Sandbox ids are lowercase letters and digits (they appear in host names). */
export const SANDBOX_ID = /^[a-z0-9]{1,64}$/;

export interface ProxyErrorBody {
  code: number;
  message: string;
  sandboxId?: string;
  port?: number;
}

/** E2B's proxy answers these as JSON; the SDK reads 502 as "not running". */
export function proxyErrorBody(
  status: number,
  message: string,
  extra: { sandboxId?: string; port?: number } = {},
): string {
  const body: ProxyErrorBody = { code: status, message, ...extra };
  return JSON.stringify(body);
}

/** Parses a guest port (1-65535) from a header or host label; null if malformed. */
export function parsePort(value: string | undefined | null): number | null {
  if (!value || !/^\d{1,5}$/.test(value)) return null;
  const port = Number(value);
  return port >= 1 && port <= 65535 ? port : null;
}

/** Answers on a raw socket (an upgrade that cannot be forwarded), then closes it. */
export function endSocket(
  socket: { writable: boolean; end(data: string): unknown; destroy(): unknown },
  status: number,
  body: string,
): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(
    `HTTP/1.1 ${status} ${status === 502 ? "Bad Gateway" : "Error"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Answers a proxied request that cannot be forwarded (or cuts it, once its head is sent). */
export function endResponse(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "application/json" }).end(body);
}
