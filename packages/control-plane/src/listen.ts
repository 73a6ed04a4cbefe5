import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";

/** PEM certificate chain and key: the listener speaks HTTPS. */
export interface TlsFiles {
  cert: string;
  key: string;
}

export interface Listener {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * An HTTP (or HTTPS) listener whose requests and upgrades go to `onRequest`
 * and `onUpgrade`. Requests run as long as they stream (exec streams, file
 * transfers, proxied long polls): no request timeout.
 */
export async function listen(opts: {
  host: string;
  port: number;
  tls?: TlsFiles | undefined;
  onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  onClientError?: (err: Error & { code?: string }, socket: Duplex) => void;
}): Promise<Listener> {
  const serverOptions = { requestTimeout: 0 };
  const server: Server = opts.tls
    ? (createHttpsServer({
        ...serverOptions,
        cert: opts.tls.cert,
        key: opts.tls.key,
      }) as unknown as Server)
    : createHttpServer(serverOptions);
  server.on("request", opts.onRequest);
  server.on("upgrade", opts.onUpgrade);
  if (opts.onClientError) server.on("clientError", opts.onClientError);
  // Longer than clients' idle pools (undici: 4 s hint, load balancers: 60 s), so the
  // server never closes a kept-alive socket just as a client reuses it.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        new WrennError(
          "unavailable",
          `cannot listen on ${opts.host}:${opts.port}: ${messageOf(err)}`,
        ),
      ),
    );
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(":") ? `[${address}]` : address;
  return {
    server,
    port,
    url: `${opts.tls ? "https" : "http"}://${host}:${port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
