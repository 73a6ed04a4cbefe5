import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import type { PGlite } from "@electric-sql/pglite";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { AgentPool } from "./agents.ts";
import { buildApp } from "./api/app.ts";
import type { Deps } from "./context.ts";
import { attachExecStream } from "./api/exec-stream.ts";
import { createSessions } from "./auth/sessions.ts";
import { createThrottles, type RateLimits } from "./auth/throttle.ts";
import { newSecret, sha256 } from "./auth/tokens.ts";
import { HostSecret } from "./api/schemas.ts";
import { hosts } from "./db/schema.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { errorBody } from "./errors.ts";
import { openDatabase, type Db } from "./db/open.ts";
import { Expiry } from "./expiry.ts";
import { Quotas, type TeamQuota } from "./quotas.ts";
import { Reconciler } from "./reconciler.ts";
import { SandboxService, systemCaller } from "./sandboxes.ts";
import { listen, type Listener, type TlsFiles } from "./listen.ts";
import { createSandboxProxy } from "./proxy/proxy.ts";
import { proxyErrorBody, type LocalHop } from "@wrenn/shared/sandbox-proxy.ts";
import { DEFAULT_OVERCOMMIT, Placement, type Overcommit } from "./scheduler.ts";

export interface ControlPlaneOptions {
  port?: number;
  host?: string;
  /** PostgreSQL; without it an embedded PGlite under `dataDir`. */
  databaseUrl?: string;
  dataDir?: string;
  /** An open PGlite to use instead (tests). */
  pglite?: PGlite;
  jwtSecret?: string;
  reconcileIntervalMs?: number;
  /** Unheard-of hosts turn `unreachable` after this long (default 3 reconcile intervals). */
  hostTimeoutMs?: number;
  /** Pending rows the agent does not know turn `error` after this long (default 15 min). */
  pendingGraceMs?: number;
  overcommit?: Partial<Overcommit>;
  /** Deadline of lifecycle calls to agents (create, pause, resume, snapshot); default 120 s. */
  agentTimeoutMs?: number;
  /** Sandbox traffic's domain (`<port>-<sandboxId>.<domain>`), returned by E2B's API as `domain`. */
  domain?: string;
  /** How often ended E2B sandboxes are paused or killed (default 1 s). */
  expiryIntervalMs?: number;
  /** A second listener that only proxies to sandboxes (default: the API's listener does). */
  proxyPort?: number;
  /** What a team may hold at once unless an admin sets its own limits (defaults in quotas.ts). */
  teamQuota?: Partial<TeamQuota>;
  /** Let anyone sign up; by default only the first user (the admin) and those with an invite may. */
  openSignup?: boolean;
  /** Limits on sign-ups, logins and refused credentials per client address (defaults in auth/throttle.ts). */
  rateLimits?: Partial<RateLimits>;
  /**
   * Reverse proxies (addresses or CIDRs) whose X-Forwarded-For names the
   * client that rate limits count (`--trust-proxy`); by default none: the
   * peer's address counts, whatever the headers say.
   */
  trustProxy?: string[];
  /** Serve HTTPS (the API and the proxy) with this certificate and key (PEM). */
  tls?: TlsFiles;
  /**
   * PEM CA certificates that sign the host agents' TLS certificates
   * (`--agent-ca`): `https://` agents are verified against them, for RPC and
   * the traffic proxy's hop alike.
   */
  agentCa?: string;
  /**
   * Host agents running in this process (`wrenn up`), by the address they
   * are registered at: sandbox traffic and REST file bytes go to their hop
   * without a loopback socket, which on a small host was a third of what a
   * transfer cost in CPU. Agents elsewhere are reached over HTTP as ever.
   */
  localHops?: ReadonlyMap<string, LocalHop>;
  log?: Logger;
}

export interface ControlPlane {
  url: string;
  /** The proxy-only listener's URL, when `proxyPort` was given. */
  proxyUrl: string | null;
  /** The Hono app, for in-process requests and route listings. */
  app: ReturnType<typeof buildApp>;
  port: number;
  db: Db;
  reconciler: Reconciler;
  /**
   * Registers a host agent by address without a token (for `wrenn up` and
   * `--host-agent`, where the operator starts both daemons) and polls it once.
   * `secret` is the one the agent was started with; without it calls carry none.
   */
  addHost(address: string, options?: { secret?: string }): Promise<string>;
  close(): Promise<void>;
}

/**
 * Requests Node's HTTP parser refuses before the app sees them (a URL or
 * headers past 16 KiB, a malformed request line) get the API's error shape
 * too, instead of Node's bare status line.
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const [status, reason, message] = tooLarge
    ? [431, "Request Header Fields Too Large", "the URL and headers are limited to 16 KiB"]
    : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [408, "Request Timeout", "the request did not arrive in time"]
      : [400, "Bad Request", `malformed HTTP request (${err.code ?? err.message})`];
  const code = status === 408 ? "cancelled" : "invalid_argument";
  const body = JSON.stringify(errorBody(code, message));
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = options.log ?? createLogger("control-plane");
  const database = await openDatabase({
    log,
    ...(options.databaseUrl ? { url: options.databaseUrl } : {}),
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    ...(options.pglite ? { pglite: options.pglite } : {}),
  });
  const { db } = database;
  const agents = new AgentPool({ defaultTimeoutMs: options.agentTimeoutMs, ca: options.agentCa });
  const deps: Deps = {
    db,
    agents,
    log,
    sessions: await createSessions(db, options.jwtSecret ? { secret: options.jwtSecret } : {}),
    throttles: createThrottles(options.rateLimits, options.trustProxy),
    placement: new Placement(
      db,
      { ...DEFAULT_OVERCOMMIT, ...options.overcommit },
      database.kind === "postgres",
    ),
    quotas: new Quotas(db, options.teamQuota),
    domain: options.domain ?? null,
    openSignup: options.openSignup ?? false,
    localHops: options.localHops,
  };
  const intervalMs = options.reconcileIntervalMs ?? 10_000;
  const reconciler = new Reconciler(db, agents, log, {
    intervalMs,
    hostTimeoutMs: options.hostTimeoutMs ?? 3 * intervalMs,
    ...(options.pendingGraceMs !== undefined ? { pendingGraceMs: options.pendingGraceMs } : {}),
  });
  const service = new SandboxService(deps);
  const expiry = new Expiry(db, service, log, options.expiryIntervalMs ?? 1_000);
  const app = buildApp(deps, service, reconciler);

  const proxy = createSandboxProxy({
    db,
    log,
    agentCa: options.agentCa,
    localHops: options.localHops,
    domain: options.domain?.toLowerCase() ?? null,
    resume: async (entry) => {
      // The proxy acts for the sandbox's team: only its owner could have asked for autoResume.
      await service.resume(systemCaller(entry.teamId), entry.sandboxId);
    },
  });
  const honoListener = getRequestListener(app.fetch);
  // WebSocket routes of the API attach here; the listener hands them the upgrades it does not proxy.
  const apiUpgrades = new EventEmitter();
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const route = proxy.route(req);
    if (route) proxy.web(req, res, route);
    else void honoListener(req, res);
  };
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const route = proxy.route(req);
    if (route) proxy.ws(req, socket, head, route);
    else apiUpgrades.emit("upgrade", req, socket, head);
  };
  const host = options.host ?? "127.0.0.1";
  const main = await listen({
    host,
    port: options.port ?? 8080,
    tls: options.tls,
    onRequest,
    onUpgrade,
    onClientError: answerClientError,
  });
  let proxyListener: Listener | null = null;
  if (options.proxyPort !== undefined) {
    const notForProxy = (): string =>
      proxyErrorBody(
        400,
        "this port only reaches sandboxes: name one with the Host <port>-<sandboxId>.<domain> or the E2b-Sandbox-Id and E2b-Sandbox-Port headers",
      );
    proxyListener = await listen({
      host,
      port: options.proxyPort,
      tls: options.tls,
      onRequest: (req, res) => {
        const route = proxy.route(req);
        if (route) proxy.web(req, res, route);
        else res.writeHead(400, { "content-type": "application/json" }).end(notForProxy());
      },
      onUpgrade: (req, socket, head) => {
        const route = proxy.route(req);
        if (route) proxy.ws(req, socket, head, route);
        else socket.destroy();
      },
      onClientError: answerClientError,
    }).catch(async (err: unknown) => {
      await main.close();
      throw err;
    });
  }
  const detachWs = attachExecStream(apiUpgrades, deps, service);
  reconciler.start();
  expiry.start();
  const url = main.url;
  log.info({ url, database: database.kind }, "control plane listening");

  return {
    url,
    proxyUrl: proxyListener?.url ?? null,
    app,
    port: main.port,
    db,
    reconciler,
    async addHost(address, { secret } = {}) {
      if (secret !== undefined && !HostSecret.safeParse(secret).success) {
        throw new WrennError(
          "invalid_argument",
          "a host secret must be 16-256 printable ASCII characters without spaces",
        );
      }
      // Without a secret nobody can push heartbeats for this host: it is polled only.
      const auth = secret ? { secret, secretHash: sha256(secret) } : {};
      const [host] = await db
        .insert(hosts)
        .values({ address, secretHash: newSecret("wrs").hash, ...auth })
        .onConflictDoUpdate({ target: hosts.address, set: { status: "ready", ...auth } })
        .returning();
      if (!host) throw new WrennError("internal", "host upsert returned nothing");
      await reconciler.syncHost(host);
      return host.id;
    },
    async close() {
      await reconciler.stop();
      await expiry.stop();
      detachWs();
      proxy.close();
      await Promise.all([main.close(), proxyListener?.close()]);
      agents.close();
      await database.close();
    },
  };
}
