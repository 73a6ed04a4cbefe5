import type { IncomingMessage, ServerResponse } from "node:http";
import { Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { Server } from "node:net";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { LocalHop } from "@wrenn/shared/sandbox-proxy.ts";
import { createLogger, timed, type Logger } from "@wrenn/shared/log.ts";
import { bootSnapshotsDir, findKernel, findTemplate, guestBootArgs } from "./image/store.ts";
import { createNetworkManager } from "./network/netns-network.ts";
import { reflinkInPlaceSupported, reflinkSupported, selectStorage } from "./storage/select.ts";
import { claimPrefix } from "./network/claim.ts";
import { parseAllowPrivate } from "./network/private-ranges.ts";
import type { StorageName } from "./storage/storage.ts";
import { selectVmm } from "./vmm/select.ts";
import { spawnerRunner } from "./spawner/client.ts";
import type { VmmDriver, VmmName } from "./vmm/vmm.ts";
import { SandboxManager } from "./sandbox/manager.ts";
import { MetricsSampler } from "./sandbox/metrics.ts";
import { createGuestProxy } from "./proxy/proxy.ts";
import { AGENT_MESSAGE_MAX_BYTES, hostAgentService } from "./service.ts";
import { HOST_SECRET_PATTERN, hostSecretInterceptor } from "./rpc/auth.ts";
import { checkTls, listenAgent, requireSecretOffLoopback, type AgentTls } from "./listener.ts";

export interface HostAgentOptions {
  /** "HOST:PORT"; port 0 picks a free one. */
  listen: string;
  /** Sandboxes, records and snapshots. */
  dataDir: string;
  /** Kernels and base templates (`wrenn image build`); default: dataDir. */
  imageDir?: string;
  /** Sockets and RAM files; default DATA/run (same filesystem, so pause is a rename). */
  runRoot?: string;
  vmm?: VmmName;
  /** A ready VMM driver (composed by the caller, e.g. wrapped to inject faults); wins over `vmm`. */
  vmmDriver?: VmmDriver;
  storage?: StorageName;
  /** Names this agent's namespaces and links; two agents on one host need different ones. */
  networkPrefix?: string;
  /** Interface guests' traffic leaves through (default: the default route's). */
  egressInterface?: string;
  /**
   * Private ranges sandboxes may reach (`--allow-private`; CIDRs inside
   * network/private-ranges.ts's PRIVATE_RANGES). Default none: no sandbox
   * reaches the host's LAN, CGNAT, link-local or other non-public addresses.
   */
  allowPrivate?: readonly string[];
  /**
   * Network slots built ahead so a create or resume takes one at no cost
   * (`--network-pool`; the CLI's default is 2). Default 0 here: tests and
   * embedders that check the host for leftovers opt in.
   */
  networkPool?: number;
  reapIntervalMs?: number;
  /** How often each running sandbox's guest is sampled for GetSandboxMetrics (default 5000). */
  metricsIntervalMs?: number;
  bootTimeoutMs?: number;
  /**
   * When set, every call must carry `Authorization: Bearer <secret>` (the
   * control plane's). Required unless `listen` is a loopback address.
   */
  secret?: string;
  /**
   * Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate chain and key
   * (PEM): the control plane then verifies the agent (`--agent-ca`).
   */
  tls?: AgentTls;
  /** How long a restored guest's envd may take to answer /init (default 30 s). */
  restoreTimeoutMs?: number;
  /**
   * Creates from a base template restore a boot snapshot of it (default);
   * false boots every one (benchmarks of the cold boot).
   */
  bootSnapshots?: boolean;
  /**
   * Where boot snapshots live (default IMAGES/boot-snapshots, beside the
   * images they are made from and shared by every agent using them); tests
   * and benchmarks keep theirs apart from a user's.
   */
  bootSnapshotDir?: string;
  /**
   * Warm sandboxes kept ready per template in use, so a create claims one
   * instead of restoring it (default 0: off). Each costs an idle VM.
   */
  warmPool?: number;
  /** Warm sandboxes kept per template in use for these templates, instead of `warmPool` (0: none). */
  warmPoolTemplates?: Readonly<Record<string, number>>;
  /**
   * VMMs kept started ahead for resumes, for the machines of recent pauses
   * and resumes, each on a network slot of its own (`--standby-vmms`; the
   * CLI's default is 2). Default 0 here, as `networkPool`.
   */
  standbyVmms?: number;
  log?: Logger;
}

export interface HostAgent {
  url: string;
  hostId: string;
  manager: SandboxManager;
  server: Server;
  /** The traffic proxy's last hop, for a control plane in this process (`wrenn up`). */
  hop: LocalHop;
  /** Stops serving; running VMs stay up for the next agent to re-adopt. */
  close(): Promise<void>;
  /** Destroys every sandbox, removes the host's network rules, and stops serving. */
  shutdown(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(.*):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[2]);
  if (!match?.[1] || !Number.isInteger(port) || port > 65535) {
    throw new WrennError("invalid_argument", `--listen must be HOST:PORT, got '${listen}'`);
  }
  return { host: match[1].replace(/^\[(.*)\]$/, "$1"), port };
}

/** The host's identity survives restarts so the control plane recognises it. */
async function hostIdOf(dataDir: string): Promise<string> {
  const path = join(dataDir, "host-id");
  try {
    return (await readFile(path, "utf8")).trim();
  } catch {
    const id = randomUUID();
    await writeFile(path, `${id}\n`);
    return id;
  }
}

export async function startHostAgent(options: HostAgentOptions): Promise<HostAgent> {
  if (process.getuid?.() !== 0) {
    throw new WrennError(
      "permission_denied",
      "the host agent must run as root (it creates network namespaces, TAP devices and VMs)",
    );
  }
  const { host, port } = parseListen(options.listen);
  requireSecretOffLoopback(options.listen, host, options.secret);
  if (options.tls) checkTls(options.tls);
  if (options.secret !== undefined && !HOST_SECRET_PATTERN.test(options.secret)) {
    throw new WrennError(
      "invalid_argument",
      "the host secret must be 16-256 printable ASCII characters without spaces",
    );
  }
  // Refused before anything starts: a typo must not leave the LAN open or the agent half up.
  const allowPrivate = parseAllowPrivate(options.allowPrivate ?? []);
  const log = options.log ?? createLogger("host-agent");
  const dataDir = options.dataDir;
  const imageDir = options.imageDir ?? dataDir;
  await mkdir(dataDir, { recursive: true });
  const hostId = await hostIdOf(dataDir);

  const reflinkCopies = await reflinkSupported(dataDir);
  const reflinkInPlace = reflinkCopies && (await reflinkInPlaceSupported(dataDir, spawnerRunner));
  if (!reflinkCopies) {
    log.warn(
      { dataDir },
      "the data dir's filesystem has no reflinks: each resume copies the sandbox's RAM file (put it on xfs with reflink=1 or btrfs for instant copies)",
    );
  }
  const vmm =
    options.vmmDriver ??
    (await timed(log, "start.select_vmm", () =>
      selectVmm({ override: options.vmm, dataDir, log, reflinkCopies, reflinkInPlace }),
    ));
  // Host commands run in the spawner: forking this process costs with its size.
  const storage = await selectStorage({
    vmm: vmm.name,
    dataDir,
    override: options.storage,
    log,
    runner: spawnerRunner,
  });
  const network = createNetworkManager({
    runner: spawnerRunner,
    prefix: options.networkPrefix,
    egressInterface: options.egressInterface,
    allowPrivate,
    poolSize: options.networkPool,
    log,
  });
  const releasePrefix = await claimPrefix(network.prefix);
  const manager = new SandboxManager({
    dataDir,
    // Beside the data so a paused VM's RAM file moves into its pause folder by rename.
    runRoot: options.runRoot ?? join(dataDir, "run"),
    vmm,
    storage,
    network,
    log,
    bootTimeoutMs: options.bootTimeoutMs,
    restoreTimeoutMs: options.restoreTimeoutMs,
    bootSnapshotDir:
      options.bootSnapshots === false
        ? null
        : (options.bootSnapshotDir ?? bootSnapshotsDir(imageDir)),
    pool: { size: options.warmPool ?? 0, templates: options.warmPoolTemplates ?? {} },
    standbyVmms: options.standbyVmms ?? 0,
    images: {
      kernel: () => findKernel(imageDir),
      template: (name) => findTemplate(imageDir, name),
      templates: async () => {
        const names = await readdir(join(imageDir, "images")).catch(() => []);
        const found = await Promise.all(
          names.map((n) => findTemplate(imageDir, n).catch(() => null)),
        );
        return found.filter((t) => t !== null);
      },
      bootArgs: guestBootArgs,
    },
  });
  await timed(log, "start.adopt", () => manager.start());
  manager.startReaper(options.reapIntervalMs ?? 5000);
  const metrics = new MetricsSampler({
    source: manager,
    log,
    intervalMs: options.metricsIntervalMs,
  });
  metrics.start();

  const handler = connectNodeAdapter({
    // Every message is bounded: an exec reply holds up to 2 × 16 MiB of output.
    readMaxBytes: AGENT_MESSAGE_MAX_BYTES,
    writeMaxBytes: AGENT_MESSAGE_MAX_BYTES,
    routes(router) {
      router.service(HostAgentService, hostAgentService(manager, hostId, dataDir, metrics));
    },
    interceptors: options.secret ? [hostSecretInterceptor(options.secret)] : [],
  });
  // The traffic proxy shares the agent's listener: the control plane forwards
  // users' requests here with the proxy headers.
  const guestProxy = createGuestProxy(manager, { secret: options.secret, log });
  const listener = await listenAgent({
    listen: options.listen,
    host,
    port,
    tls: options.tls,
    onRequest: (req, res) => {
      if (req instanceof Http2ServerRequest) {
        // The control plane's proxy hop speaks HTTP/1.1 (upgrades need it); HTTP/2 is for Connect.
        if (guestProxy.matches(req as unknown as IncomingMessage)) {
          (res as Http2ServerResponse)
            .writeHead(505, { "content-type": "application/json" })
            .end(JSON.stringify({ code: 505, message: "the traffic proxy hop speaks HTTP/1.1" }));
        } else handler(req, res as Http2ServerResponse);
      } else if (guestProxy.matches(req)) guestProxy.web(req, res as ServerResponse);
      else handler(req, res as ServerResponse);
    },
    onUpgrade: (req, socket, head) => {
      if (guestProxy.matches(req)) guestProxy.ws(req, socket, head);
      else socket.destroy();
    },
  });
  const { url, server } = listener;
  log.info(
    {
      url,
      hostId,
      vmm: vmm.name,
      storage: storage.name,
      authenticated: Boolean(options.secret),
      tls: Boolean(options.tls),
    },
    "host agent listening",
  );
  const close = async (): Promise<void> => {
    metrics.stop();
    await manager.close();
    // Pooled slots belong to no sandbox: nothing re-adopts them.
    await network.drain().catch((err: unknown) => {
      log.warn({ err: messageOf(err) }, "tearing down the pooled network slots failed");
    });
    guestProxy.close();
    await listener.close();
    await releasePrefix();
  };
  return {
    url,
    hostId,
    manager,
    server,
    hop: guestProxy,
    close,
    shutdown: async () => {
      await manager.destroyAll();
      await network.removeHostRules().catch((err: unknown) => {
        log.warn({ err: messageOf(err) }, "removing the host's network rules failed");
      });
      await close();
    },
  };
}
