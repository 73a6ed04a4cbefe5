import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Process } from "@wrenn/proto/process/process_pb.js";
import { Filesystem } from "@wrenn/proto/filesystem/filesystem_pb.js";
import { wrennErrorInterceptor } from "@wrenn/shared/connect-errors.ts";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import type { EnvdContext } from "./context.ts";
import { initialState, type EnvdState } from "./state.ts";
import { processService } from "./process/service.ts";
import { filesystemService } from "./filesystem/service.ts";
import { WatcherRegistry } from "./filesystem/watchers.ts";
import { handleHttp } from "./http/routes.ts";
import { sameSecret } from "./http/auth.ts";
import { leanStreams, streamRoute, type StreamCall } from "./connect-stream.ts";
import { controlChannel, isControlUpgrade } from "./control.ts";

export interface EnvdOptions {
  port: number;
  host?: string;
  defaultUser?: string;
  log?: Logger;
  state?: EnvdState;
}

export interface Envd {
  server: Server;
  context: EnvdContext;
  /** Live directory watchers (polled and streamed), so tests can see none leak. */
  watchers: WatcherRegistry;
  url: string;
  close(): Promise<void>;
}

function checkAccessToken(state: EnvdState, header: (name: string) => string | null): void {
  const token = state.accessToken;
  if (token !== undefined && !sameSecret(header("x-access-token") ?? "", token)) {
    throw new ConnectError("missing or wrong X-Access-Token", Code.Unauthenticated);
  }
}

/** Rejects RPCs without the access token once /init has set one. */
function accessTokenInterceptor(state: EnvdState): Interceptor {
  return (next) => async (req) => {
    checkAccessToken(state, (name) => req.header.get(name));
    return next(req);
  };
}

/**
 * How long an idle kept-alive connection stays open. A warm pool entry
 * waits for its claim, often longer than a minute; with 65 s, each claim
 * after 70 s opened a new connection (three of three, counted), and
 * `/init` on a new connection (closed after it) took the guest's VMM
 * 2.8–10.9 ms more CPU than on a kept one (TCG, 2026-12-05). Finite, so
 * that a socket a clone inherits from its boot snapshot, whose peer is
 * gone, still closes.
 */
export const KEEP_ALIVE_MS = 60 * 60_000;

export async function startEnvd(options: EnvdOptions): Promise<Envd> {
  const log = options.log ?? createLogger("envd");
  const state = options.state ?? initialState(options.defaultUser ?? "user");
  const context: EnvdContext = { state, log };
  const watchers = new WatcherRegistry();

  const processes = processService(context);
  // Exec latency is what users feel most: Start and Connect skip the generic adapter.
  const lean = leanStreams(
    [
      streamRoute(Process.method.start, processes.start),
      streamRoute(Process.method.connect, processes.connect),
    ],
    (call: StreamCall) => checkAccessToken(state, call.header),
  );
  const rpc = connectNodeAdapter({
    routes(router) {
      router.service(Process, processes.service);
      router.service(Filesystem, filesystemService(context, watchers));
    },
    interceptors: [accessTokenInterceptor(state), wrennErrorInterceptor()],
    // Our server is HTTP/1.1 only, so the request is always an IncomingMessage.
    fallback: (req, res) => {
      void handleHttp(req as IncomingMessage, res as ServerResponse, context);
    },
  });

  // No request or headers timeout: streams live as long as their process.
  const server = createServer(
    {
      requestTimeout: 0,
      keepAliveTimeout: KEEP_ALIVE_MS,
      shouldUpgradeCallback: isControlUpgrade,
    },
    (req, res) => {
      if (!lean(req, res)) rpc(req, res);
    },
  );
  server.headersTimeout = 0;
  const control = controlChannel(context, KEEP_ALIVE_MS);
  // A plain HTTP server's upgrade socket is its net.Socket.
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    control.upgrade(req, socket as Socket, head),
  );
  const wildcard =
    options.host === undefined || options.host === "0.0.0.0" || options.host === "::";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const listening = () => {
      server.off("error", reject);
      resolve();
    };
    // A wildcard goes to listen() as no host at all: given one, Node resolves
    // it through dns.lookup (c-ares, the IP regexes), ≈8 % of envd's start.
    // Without, it binds :: dual-stack (IPv4 too), or 0.0.0.0 where IPv6 is off.
    if (wildcard) server.listen(options.port, listening);
    else server.listen(options.port, options.host, listening);
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${wildcard ? "127.0.0.1" : options.host}:${port}`;
  log.info({ url, version: state.version }, "envd listening");
  return {
    server,
    context,
    watchers,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        watchers.closeAll();
        control.closeAll();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
