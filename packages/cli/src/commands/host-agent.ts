import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { parseListen, startHostAgent } from "@wrenn/host-agent/agent.ts";
import { requireSecretOffLoopback } from "@wrenn/host-agent/listener.ts";
import { mountDataFs } from "@wrenn/host-agent/storage/data-fs.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { dataDir, TEMPLATE_NAME } from "@wrenn/host-agent/image/store.ts";
import { requireTools, type Tool } from "@wrenn/host-agent/image/prerequisites.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { readPem } from "./traffic.ts";
import type { VmmName } from "@wrenn/host-agent/vmm/vmm.ts";
import type { StorageName } from "@wrenn/host-agent/storage/storage.ts";
import { parseAllowPrivate, splitAllowPrivate } from "@wrenn/host-agent/network/private-ranges.ts";

/** What the agent runs on the host, whatever the drivers chosen. */
export const AGENT_TOOLS: readonly Tool[] = [
  { command: "qemu-system-x86_64", aptPackage: "qemu-system-x86" },
  { command: "qemu-img", aptPackage: "qemu-utils" },
  { command: "ip", aptPackage: "iproute2" },
  { command: "nft", aptPackage: "nftables" },
  { command: "e2fsck", aptPackage: "e2fsprogs" },
  { command: "resize2fs", aptPackage: "e2fsprogs" },
];

/** `--allow-private CIDR,...` (repeatable; or WRENN_ALLOW_PRIVATE), shared with `wrenn up`. */
export const ALLOW_PRIVATE_OPTION = {
  "allow-private": {
    type: "string",
    multiple: true,
    default: process.env.WRENN_ALLOW_PRIVATE ? [process.env.WRENN_ALLOW_PRIVATE] : [],
  },
} as const;

/** The private ranges the operator opens to sandboxes, checked (invalid_argument naming the flag). */
export function allowPrivateOf(values: { "allow-private": string[] }): string[] {
  return parseAllowPrivate(splitAllowPrivate(values["allow-private"]));
}

/**
 * `--network-pool N`, `--warm-pool N[,TEMPLATE=N…]` and `--standby-vmms N`
 * (or WRENN_NETWORK_POOL, WRENN_WARM_POOL, WRENN_STANDBY_VMMS), shared with `wrenn up`.
 */
export const POOL_OPTIONS = {
  "network-pool": { type: "string", default: process.env.WRENN_NETWORK_POOL ?? "2" },
  "warm-pool": { type: "string", default: process.env.WRENN_WARM_POOL ?? "2" },
  "standby-vmms": { type: "string", default: process.env.WRENN_STANDBY_VMMS ?? "2" },
} as const;

const MAX_NETWORK_POOL = 64;
const MAX_WARM_POOL = 16;
const MAX_STANDBY_VMMS = 16;

/**
 * Network slots kept built ahead, and warm sandboxes per template in use (0
 * turns either off). `--warm-pool` is a size for every template, then any
 * `TEMPLATE=N` for templates of their own: `2,python=6,big=0`.
 */
export function poolsOf(values: {
  "network-pool": string;
  "warm-pool": string;
  "standby-vmms": string;
}): {
  networkPool: number;
  warmPool: number;
  warmPoolTemplates: Record<string, number>;
  standbyVmms: number;
} {
  const [all = "", ...own] = values["warm-pool"].split(",");
  const warmPoolTemplates: Record<string, number> = {};
  for (const item of own) {
    const eq = item.indexOf("=");
    const name = item.slice(0, eq).trim();
    if (eq < 0 || !TEMPLATE_NAME.test(name)) {
      throw new WrennError(
        "invalid_argument",
        `--warm-pool takes N, then TEMPLATE=N for templates of their own (e.g. 2,python=6,big=0); '${item.trim()}' is not TEMPLATE=N`,
      );
    }
    if (name in warmPoolTemplates) {
      throw new WrennError("invalid_argument", `--warm-pool names template '${name}' twice`);
    }
    warmPoolTemplates[name] = wholeNumber(
      `--warm-pool's ${name}`,
      item.slice(eq + 1),
      MAX_WARM_POOL,
    );
  }
  return {
    networkPool: wholeNumber("--network-pool", values["network-pool"], MAX_NETWORK_POOL),
    warmPool: wholeNumber("--warm-pool", all, MAX_WARM_POOL),
    warmPoolTemplates,
    standbyVmms: wholeNumber("--standby-vmms", values["standby-vmms"], MAX_STANDBY_VMMS),
  };
}

function wholeNumber(what: string, value: string, max: number): number {
  const raw = value.trim();
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > max) {
    throw new WrennError(
      "invalid_argument",
      `${what} must be a whole number from 0 to ${max} (0 turns the pool off), got '${value}'`,
    );
  }
  return n;
}

const vmms: readonly VmmName[] = ["qemu", "firecracker"];
const storages: readonly StorageName[] = ["dm-snapshot", "qcow2", "reflink"];

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]) {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new WrennError("invalid_argument", `${flag} must be one of ${allowed.join(", ")}`);
  }
  return value as T;
}

/**
 * `wrenn host-agent --listen HOST:PORT --data-dir DIR`: the root daemon of a
 * host. With `--secret` (or WRENN_HOST_SECRET) it answers only calls that
 * carry it, i.e. the control plane the host was registered with.
 */
export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: "string", default: "127.0.0.1:7070" },
      "data-dir": { type: "string", default: dataDir() },
      vmm: { type: "string", default: process.env.WRENN_VMM },
      storage: { type: "string", default: process.env.WRENN_STORAGE },
      // Two agents on one machine need different names for their namespaces, links and rules.
      "network-prefix": { type: "string", default: process.env.WRENN_NETWORK_PREFIX },
      // The environment keeps it out of `ps`; the flag is for trying things out.
      secret: { type: "string", default: process.env.WRENN_HOST_SECRET },
      ...ALLOW_PRIVATE_OPTION,
      ...POOL_OPTIONS,
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
    },
  });
  const secret = values.secret || undefined;
  // Before the tools check and the data dir: a daemon refused for its flags should say so first.
  requireSecretOffLoopback(values.listen, parseListen(values.listen).host, secret);
  const allowPrivate = allowPrivateOf(values);
  const pools = poolsOf(values);
  const cert = values["tls-cert"];
  const key = values["tls-key"];
  if (Boolean(cert) !== Boolean(key)) {
    throw new WrennError("invalid_argument", "--tls-cert and --tls-key go together");
  }
  const tls =
    cert && key ? { cert: readPem("--tls-cert", cert), key: readPem("--tls-key", key) } : undefined;
  requireTools(AGENT_TOOLS, { needsRoot: true, hint: " — run `./wrenn setup` as root" });
  const data = resolve(values["data-dir"]);
  // After a reboot: the pool `wrenn setup` made is not mounted yet.
  await mountDataFs(data, { log: createLogger("host-agent") });
  const agent = await startHostAgent({
    listen: values.listen,
    dataDir: data,
    vmm: oneOf("--vmm", values.vmm || undefined, vmms),
    storage: oneOf("--storage", values.storage || undefined, storages),
    networkPrefix: values["network-prefix"] || undefined,
    secret,
    allowPrivate,
    ...pools,
    tls,
  });
  process.stdout.write(`host agent ${agent.hostId} listening on ${agent.url}\n`);
  await new Promise<void>((done) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => void agent.close().then(done));
    }
  });
}
