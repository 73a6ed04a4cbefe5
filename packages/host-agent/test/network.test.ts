/**
 * Network slots for real: namespaces, veths, TAPs and nftables on this host
 * (root). Every test runs under a leak check; resources use the prefix
 * "wnt" and slot indexes from 1001 so neither a running agent ("wrenn") nor
 * other test files are touched.
 *
 * The guest. A VM's virtio-net sends and receives Ethernet frames through
 * the slot's TAP; without a VMM nothing holds the TAP open, so it has no
 * carrier and drops everything. The tests therefore replace `tap0` (after
 * checking the real one) with a veth named `tap0` whose peer sits in a
 * small "guest" namespace holding 169.254.0.21/30 with the guest MAC and a
 * default route via 169.254.0.22 — what the kernel `ip=` argument gives the
 * VM. From the slot namespace's side this is the same: an Ethernet link
 * named tap0 carrying 169.254.0.22/30, ARP and routing over it, and the
 * same netfilter hooks and rules (they match the name and addresses, not
 * the link type). Only the far end differs: a kernel stack instead of a VM.
 *
 * "Outside" is another namespace ("wnt-up", 198.51.100.2 and a fake
 * metadata service at 169.254.169.254) behind a host link that the manager
 * is told is the egress interface; no traffic is sent to real addresses.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { connect, createServer, type AddressInfo, type Server } from "node:net";
import { CommandError, runCommand, type Runner } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import { createNetworkManager, type NetnsNetworkOptions } from "../src/network/netns-network.ts";
import { GUEST_IP, GUEST_MAC, TAP_IP, TAP_MAC, type NetworkSlot } from "../src/network/network.ts";
import { slotAddresses, slotNames } from "../src/network/addresses.ts";
import { defaultRouteInterface } from "../src/network/ip.ts";
import { assertNoLeaks, snapshotHostResources, type LeakScope } from "./leaks.ts";
import { networkCapabilityProblem } from "./network-capability.ts";

const PREFIX = "wnt";
/** Put on the command line of every process the tests start, so the leak check finds them. */
const MARKER = `wrenn-network-test-${process.pid}`;
const SCOPE: LeakScope = { prefix: PREFIX, markers: [MARKER] };
const UPSTREAM_PORT = 8080;
const UPSTREAM_NS = `${PREFIX}-up`;
const UPSTREAM_LINK = `${PREFIX}-upl`;
const UPSTREAM_HOST_IP = "198.51.100.1";
const UPSTREAM_IP = "198.51.100.2";
const METADATA_IP = "169.254.169.254";
/** How long a probe waits before calling a connection dropped. */
const DROP_MS = 700;

const log = createLogger("network-test", process.env.WRENN_LOG_LEVEL ?? "warn");

const skipReason = await networkCapabilityProblem(PREFIX);
if (skipReason) console.warn(`\n!!! SKIPPING network tests: ${skipReason}\n`);

function manager(options: NetnsNetworkOptions = {}) {
  return createNetworkManager({ prefix: PREFIX, firstIndex: 1001, log, ...options });
}

/** Runs `body` between a resource snapshot and a leak check, with cleanups in reverse order. */
function leakChecked(body: (cleanup: Cleanups) => Promise<void>) {
  return async (t: TestContext) => {
    if (skipReason) {
      t.skip(skipReason);
      return;
    }
    const before = await snapshotHostResources(SCOPE);
    const cleanup = new Cleanups();
    let failure: unknown = null;
    try {
      await body(cleanup);
    } catch (err) {
      failure = err;
    }
    await cleanup.run();
    try {
      await assertNoLeaks(before);
    } catch (leak) {
      if (failure) {
        throw new AggregateError([failure, leak], "test failed and leaked", { cause: leak });
      }
      throw leak;
    }
    if (failure) throw failure;
  };
}

class Cleanups {
  readonly #steps: Array<() => Promise<unknown>> = [];
  add(step: () => Promise<unknown>): void {
    this.#steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.#steps.reverse()) {
      await step().catch((err: unknown) => console.warn("cleanup step failed:", err));
    }
  }
}

const ip = (...args: string[]) => runCommand("ip", args);
const ipBatch = (ns: string | null, lines: string[]) =>
  runCommand("ip", [...(ns ? ["-n", ns] : []), "-batch", "-"], { input: lines.join("\n") + "\n" });

async function exists(kind: "netns" | "link", name: string): Promise<boolean> {
  const { stdout } = await ip("-j", ...(kind === "netns" ? ["netns", "list"] : ["link", "show"]));
  if (stdout.trim() === "") return false;
  const key = kind === "netns" ? "name" : "ifname";
  return (JSON.parse(stdout) as Array<Record<string, unknown>>).some((e) => e[key] === name);
}

async function hostTableLoaded(): Promise<boolean> {
  const { stdout } = await runCommand("nft", ["list", "tables"]);
  return stdout.split("\n").includes(`table inet ${PREFIX}`);
}

// ---------------------------------------------------------------------------
// Probes: one small node process per namespace that serves TCP (answering with
// the peer address it sees) and makes TCP connections on request.

const PROBE = `
const net = require("node:net");
const rl = require("node:readline").createInterface({ input: process.stdin });
const server = net.createServer((s) => s.end(s.remoteAddress + "\\n"));
server.listen(Number(process.argv[1]), "0.0.0.0", () => console.log(JSON.stringify({ ready: true })));
rl.on("line", (line) => {
  const { id, host, port, timeoutMs } = JSON.parse(line);
  const s = net.connect({ host, port });
  let data = "", settled = false;
  const done = (r) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    s.destroy();
    console.log(JSON.stringify({ id, ...r }));
  };
  const timer = setTimeout(() => done({ ok: false, error: "timeout" }), timeoutMs);
  s.on("data", (d) => (data += d));
  s.on("end", () => done({ ok: true, data: data.trim() }));
  s.on("error", (e) => done({ ok: false, error: e.code }));
});
rl.on("close", () => process.exit(0));
`;

interface ProbeResult {
  ok: boolean;
  data?: string;
  error?: string;
}

class Probe {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiting = new Map<number, (r: ProbeResult) => void>();
  readonly #exited: Promise<void>;
  #next = 0;

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  /** Starts a probe inside `netns` listening on `port`. */
  static async start(netns: string, port: number): Promise<Probe> {
    const child = spawn("ip", [
      "netns",
      "exec",
      netns,
      process.execPath,
      "-e",
      PROBE,
      String(port),
      MARKER,
    ]);
    const probe = new Probe(child);
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const ready = new Promise<void>((resolve, reject) => {
      child.once("exit", (code) =>
        reject(new Error(`probe in ${netns} exited ${code}: ${stderr}`)),
      );
      createInterface({ input: child.stdout }).on("line", (line) => {
        const msg = JSON.parse(line) as ProbeResult & { id?: number; ready?: boolean };
        if (msg.ready) resolve();
        else if (msg.id !== undefined) {
          const { id, ...result } = msg;
          probe.#waiting.get(id)?.(result);
        }
      });
    });
    await ready;
    return probe;
  }

  connect(host: string, port: number, timeoutMs = DROP_MS): Promise<ProbeResult> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#child.stdin.write(JSON.stringify({ id, host, port, timeoutMs }) + "\n");
    });
  }

  async stop(): Promise<void> {
    this.#child.kill("SIGKILL");
    await this.#exited;
  }
}

/** Connects from the host (this process) and returns what the server said. */
function hostConnect(host: string, port: number, timeoutMs = 3000): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let data = "";
    const done = (r: ProbeResult) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, error: "timeout" }), timeoutMs);
    s.on("data", (d: Buffer) => (data += d.toString()));
    s.on("end", () => done({ ok: true, data: data.trim() }));
    s.on("error", (e: NodeJS.ErrnoException) => done({ ok: false, error: e.code }));
  });
}

// ---------------------------------------------------------------------------
// Fixtures.

/** "Outside": a namespace behind a host link, serving on 198.51.100.2 and 169.254.169.254. */
async function startUpstream(cleanup: Cleanups): Promise<Probe> {
  await ip("netns", "add", UPSTREAM_NS);
  cleanup.add(() => ip("netns", "del", UPSTREAM_NS));
  await ipBatch(null, [
    `link add ${UPSTREAM_LINK} type veth peer name eth0 netns ${UPSTREAM_NS}`,
    `addr add ${UPSTREAM_HOST_IP}/24 dev ${UPSTREAM_LINK}`,
    `link set ${UPSTREAM_LINK} up`,
    // So a guest's attempt at the "metadata service" has somewhere to go if it is not dropped.
    `route add ${METADATA_IP}/32 via ${UPSTREAM_IP} dev ${UPSTREAM_LINK}`,
  ]);
  cleanup.add(() => ip("link", "del", UPSTREAM_LINK));
  await ipBatch(UPSTREAM_NS, [
    `link set lo up`,
    `addr add ${METADATA_IP}/32 dev lo`,
    `addr add ${UPSTREAM_IP}/24 dev eth0`,
    `link set eth0 up`,
    // An outside host that tries to reach the sandboxes through this host.
    `route add 10.11.0.0/16 via ${UPSTREAM_HOST_IP}`,
    `route add 10.12.0.0/16 via ${UPSTREAM_HOST_IP}`,
  ]);
  const probe = await Probe.start(UPSTREAM_NS, UPSTREAM_PORT);
  cleanup.add(() => probe.stop());
  return probe;
}

/**
 * Swaps the slot's TAP for a veth (with the TAP's MAC) into a "guest"
 * namespace (see the top of this file).
 */
async function attachGuest(slot: NetworkSlot, cleanup: Cleanups): Promise<Probe> {
  const tapMac = await assertRealTap(slot);
  const guestNs = `${PREFIX}-g-${slot.index}`;
  await ip("netns", "add", guestNs);
  cleanup.add(() => ip("netns", "del", guestNs));
  await ipBatch(slot.netns, [
    `link del ${slot.tapName}`,
    `link add ${slot.tapName} address ${tapMac} type veth peer name eth0 netns ${guestNs}`,
    `addr add ${TAP_IP}/30 dev ${slot.tapName}`,
    `link set ${slot.tapName} up`,
  ]);
  await ipBatch(guestNs, [
    `link set lo up`,
    `link set eth0 address ${GUEST_MAC}`,
    `addr add ${GUEST_IP}/30 dev eth0`,
    `link set eth0 up`,
    `route add default via ${TAP_IP}`,
  ]);
  const probe = await Probe.start(guestNs, ENVD_PORT);
  cleanup.add(() => probe.stop());
  return probe;
}

async function startHostServer(cleanup: Cleanups): Promise<number> {
  const server: Server = createServer((s) => s.end(`host ${s.remoteAddress}\n`));
  // All addresses: the guests must not reach any of them.
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  cleanup.add(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as AddressInfo).port;
}

/** Checks the slot's TAP as the manager made it; returns its MAC. */
async function assertRealTap(slot: NetworkSlot): Promise<string> {
  const { stdout } = await ip("-d", "-j", "-n", slot.netns, "addr", "show", "dev", slot.tapName);
  const [tap] = JSON.parse(stdout) as Array<{
    address: string;
    flags: string[];
    linkinfo?: { info_kind?: string; info_data?: { type?: string } };
    addr_info: Array<{ family: string; local: string; prefixlen: number }>;
  }>;
  assert.ok(tap, `${slot.tapName} exists in ${slot.netns}`);
  assert.equal(tap.linkinfo?.info_kind, "tun");
  assert.equal(tap.linkinfo?.info_data?.type, "tap");
  assert.ok(tap.flags.includes("UP"));
  assert.deepEqual(
    tap.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
    [`${TAP_IP}/30`],
  );
  assert.equal(tap.address, TAP_MAC);
  return tap.address;
}

// ---------------------------------------------------------------------------

test(
  "three slots: the host reaches each guest, guests are isolated, egress leaves through NAT",
  leakChecked(async (cleanup) => {
    const upstream = await startUpstream(cleanup);
    const hostPort = await startHostServer(cleanup);
    const net = manager({ egressInterface: UPSTREAM_LINK });
    cleanup.add(() => net.removeHostRules());

    const started = performance.now();
    const slots = [await net.acquire(), await net.acquire(), await net.acquire()];
    const setupMs = (performance.now() - started) / slots.length;
    console.log(`slot setup: ${setupMs.toFixed(1)} ms per slot (sequential, incl. host rules)`);
    for (const slot of slots) cleanup.add(() => net.release(slot));

    assert.deepEqual(
      slots.map((s) => s.index),
      [1001, 1002, 1003],
    );
    assert.deepEqual(
      slots.map((s) => s.hostAddress),
      ["10.11.3.233", "10.11.3.234", "10.11.3.235"],
    );
    for (const slot of slots) {
      assert.equal(slot.netns, `${PREFIX}-ns-${slot.index}`);
      assert.equal(slot.guestIpArg, "ip=169.254.0.21::169.254.0.22:255.255.255.252::eth0:off");
    }
    const guests = await Promise.all(slots.map((slot) => attachGuest(slot, cleanup)));
    const [a, b, c] = slots as [NetworkSlot, NetworkSlot, NetworkSlot];
    const [guestA] = guests as [Probe, Probe, Probe];
    const addrA = slotAddresses(a.index);
    const addrB = slotAddresses(b.index);

    // Guest C "was restored from a snapshot taken in another slot": its ARP
    // cache still holds the old gateway MAC, which must be this slot's too,
    // or what the guest sends first (before anyone ARPs it) goes nowhere.
    const [, , guestC] = guests as [Probe, Probe, Probe];
    await ip(
      ...["-n", `${PREFIX}-g-${c.index}`, "neigh", "replace", TAP_IP, "lladdr", TAP_MAC],
      ...["dev", "eth0", "nud", "reachable"],
    );
    assert.deepEqual(await guestC.connect(UPSTREAM_IP, UPSTREAM_PORT, 2000), {
      ok: true,
      data: UPSTREAM_HOST_IP,
    });

    // The host reaches every guest at 10.11.x.y, as the agent reaches envd.
    for (const slot of slots) {
      const r = await hostConnect(slot.hostAddress, ENVD_PORT);
      assert.deepEqual(r, { ok: true, data: slotAddresses(slot.index).hostVethIp });
    }

    // Egress: the outside sees the host's address, not the slot's or the guest's.
    assert.deepEqual(await guestA.connect(UPSTREAM_IP, UPSTREAM_PORT, 3000), {
      ok: true,
      data: UPSTREAM_HOST_IP,
    });

    const defaultIf = await defaultRouteInterface(runCommand);
    const hostIps = defaultIf ? await interfaceAddresses(defaultIf) : [];
    const blocked: Array<[string, string, number]> = [
      ["another guest's host address", b.hostAddress, ENVD_PORT],
      ["another slot's namespace", addrB.nsVethIp, ENVD_PORT],
      ["another slot's host veth", addrB.hostVethIp, hostPort],
      ["own gateway (the host)", addrA.hostVethIp, hostPort],
      ["the host's upstream address", UPSTREAM_HOST_IP, hostPort],
      ...hostIps.map((h): [string, string, number] => [
        `the host's ${defaultIf} address`,
        h,
        hostPort,
      ]),
    ];
    const results = await Promise.all(blocked.map(([, host, port]) => guestA.connect(host, port)));
    blocked.forEach(([what, host, port], i) => {
      assert.deepEqual(
        results[i],
        { ok: false, error: "timeout" },
        `guest → ${what} ${host}:${port}`,
      );
    });
    // Private ranges (link-local here: a cloud metadata service) are refused at once, not dropped.
    assert.deepEqual(
      await guestA.connect(METADATA_IP, UPSTREAM_PORT),
      { ok: false, error: "ECONNREFUSED" },
      `guest → a link-local metadata service ${METADATA_IP}`,
    );
    // 127.0.0.1 in the guest is the guest itself: nothing of the host's listens there.
    assert.equal((await guestA.connect("127.0.0.1", hostPort)).ok, false);

    // Nothing outside may open connections into a slot through the host.
    for (const target of [a.hostAddress, addrA.nsVethIp]) {
      assert.deepEqual(
        await upstream.connect(target, ENVD_PORT),
        { ok: false, error: "timeout" },
        `outside → ${target}`,
      );
    }

    // A released slot is gone from the host and unreachable.
    await net.release(b);
    assert.equal(await exists("netns", b.netns), false);
    assert.equal(await exists("link", slotNames(PREFIX, b.index).hostVeth), false);
    assert.notEqual((await hostConnect(b.hostAddress, ENVD_PORT, DROP_MS)).ok, true);
    // …and the others still work.
    assert.equal((await hostConnect(a.hostAddress, ENVD_PORT)).ok, true);
  }),
);

async function interfaceAddresses(dev: string): Promise<string[]> {
  const { stdout } = await ip("-j", "-4", "addr", "show", "dev", dev);
  const parsed = JSON.parse(stdout) as Array<{ addr_info: Array<{ local: string }> }>;
  return parsed.flatMap((l) => l.addr_info.map((a) => a.local));
}

test(
  "concurrent acquires get distinct slots; released indexes are reused; release is idempotent",
  leakChecked(async (cleanup) => {
    const net = manager({ firstIndex: 1040, egressInterface: "lo" });
    cleanup.add(() => net.removeHostRules());
    const slots = await Promise.all([net.acquire(), net.acquire(), net.acquire()]);
    for (const slot of slots) cleanup.add(() => net.release(slot));
    assert.deepEqual(slots.map((s) => s.index).sort(), [1040, 1041, 1042]);
    assert.deepEqual(net.inUse, [1040, 1041, 1042]);

    const middle = slots.find((s) => s.index === 1041) as NetworkSlot;
    await Promise.all([net.release(middle), net.release(middle)]);
    await net.release(middle);
    assert.deepEqual(net.inUse, [1040, 1042]);
    const again = await net.acquire();
    cleanup.add(() => net.release(again));
    assert.equal(again.index, 1041);
    await assertRealTap(again);
  }),
);

test(
  "a slot another agent holds is skipped, and the next acquire does not try it again",
  leakChecked(async (cleanup) => {
    // Another agent on this host (its own prefix), holding the first index.
    const other = createNetworkManager({
      prefix: `${PREFIX}o`,
      firstIndex: 1090,
      lastIndex: 1093,
      log,
      egressInterface: "lo",
    });
    cleanup.add(() => other.removeHostRules());
    const held = await other.acquire();
    cleanup.add(() => other.release(held));
    assert.equal(held.index, 1090);

    let tries = 0;
    const net = manager({
      firstIndex: 1090,
      lastIndex: 1093,
      egressInterface: "lo",
      runner: hookedRunner((_cmd, args, input) => {
        if (`${args.join(" ")}\n${input}`.includes(`${held.hostAddress}/32`)) tries++;
        return null;
      }),
    });
    cleanup.add(() => net.removeHostRules());
    const a = await net.acquire();
    cleanup.add(() => net.release(a));
    const b = await net.acquire();
    cleanup.add(() => net.release(b));
    assert.deepEqual([a.index, b.index], [1091, 1092]);
    assert.equal(tries, 1, "the held slot was tried once, then remembered");
  }),
);

/** A runner that hands every call to `hook`, which may alter or fail it. */
function hookedRunner(
  hook: (cmd: string, args: string[], input: string, real: Runner) => ReturnType<Runner> | null,
): Runner {
  return (cmd, args, options = {}) =>
    hook(cmd, args, String(options.input ?? ""), runCommand) ?? runCommand(cmd, args, options);
}

const isHostBatch = (cmd: string, args: string[]) => cmd === "ip" && args.join(" ") === "-batch -";
const isNamespaceStep = (cmd: string) => cmd === "nsenter";

test(
  "a failure at any step of slot setup leaves nothing behind and frees the index",
  leakChecked(async (cleanup) => {
    const failures: Array<[string, Parameters<typeof hookedRunner>[0]]> = [
      [
        "host batch fails midway (line 4)",
        (cmd, args, input, real) =>
          isHostBatch(cmd, args)
            ? real(cmd, args, { input: input.replace(/link set \S+ up/, "link set wnt-nope up") })
            : null,
      ],
      [
        "namespace step fails before running",
        (cmd, args) =>
          isNamespaceStep(cmd)
            ? Promise.reject(new CommandError(`${cmd} ${args.join(" ")}`, 1, "injected"))
            : null,
      ],
      [
        "namespace step fails halfway (TAP made, no NAT)",
        (cmd, args, input, real) =>
          isNamespaceStep(cmd)
            ? real(cmd, args, { input: input.replace("nft -f -", "false\nnft -f -") })
            : null,
      ],
      [
        "namespace step completes, then reports failure",
        (cmd, args, input, real) =>
          isNamespaceStep(cmd)
            ? real(cmd, args, { input }).then(() => {
                throw new CommandError(`${cmd} ${args.join(" ")}`, null, "injected after");
              })
            : null,
      ],
    ];
    for (const [what, hook] of failures) {
      const net = manager({ firstIndex: 1050, egressInterface: "lo", runner: hookedRunner(hook) });
      cleanup.add(() => net.removeHostRules());
      await assert.rejects(net.acquire(), CommandError, what);
      assert.deepEqual(net.inUse, [], `${what}: index freed`);
      assert.equal(await exists("netns", `${PREFIX}-ns-1050`), false, `${what}: namespace gone`);
      assert.equal(await exists("link", `${PREFIX}-vh-1050`), false, `${what}: veth gone`);
    }

    // Host rules failing to load: nothing is created, and the next attempt retries them.
    let failNft = true;
    const net = manager({
      firstIndex: 1050,
      egressInterface: "lo",
      runner: hookedRunner((cmd) =>
        cmd === "nft" && failNft ? Promise.reject(new CommandError("nft", 1, "injected")) : null,
      ),
    });
    cleanup.add(() => net.removeHostRules());
    await assert.rejects(net.acquire(), CommandError);
    assert.equal(await exists("netns", `${PREFIX}-ns-1050`), false);
    failNft = false;
    const slot = await net.acquire();
    assert.equal(slot.index, 1050);
    assert.equal(await hostTableLoaded(), true);
    await net.release(slot);
  }),
);

test(
  "a failed teardown keeps the index out of use until a release succeeds",
  leakChecked(async (cleanup) => {
    let failTeardown = false;
    const net = manager({
      firstIndex: 1055,
      egressInterface: "lo",
      runner: hookedRunner((cmd, args) =>
        failTeardown && cmd === "ip" && args[0] === "-force"
          ? Promise.reject(new CommandError("ip -force -batch -", 1, "Device or resource busy"))
          : null,
      ),
    });
    cleanup.add(() => net.removeHostRules());
    const slot = await net.acquire();
    cleanup.add(() => net.release(slot));
    failTeardown = true;
    await assert.rejects(net.release(slot), /resource busy/);
    assert.deepEqual(net.inUse, [slot.index]);
    const other = await net.acquire();
    cleanup.add(() => net.release(other));
    assert.notEqual(other.index, slot.index);
    failTeardown = false;
    await net.release(slot);
    assert.equal(await exists("netns", slot.netns), false);
    assert.deepEqual(net.inUse, [other.index]);
  }),
);

test(
  "an index held by someone else is skipped and left alone",
  leakChecked(async (cleanup) => {
    // A foreign namespace with our name for 1060, and a foreign route for 1062's host address.
    await ip("netns", "add", `${PREFIX}-ns-1060`);
    cleanup.add(() => ip("netns", "del", `${PREFIX}-ns-1060`));
    await ipBatch(null, [
      // veth, not dummy: this kernel may lack the dummy driver.
      `link add ${PREFIX}-dum0 type veth peer name ${PREFIX}-dum1`,
      `link set ${PREFIX}-dum0 up`,
      `route add ${slotAddresses(1062).hostAddress}/32 dev ${PREFIX}-dum0`,
    ]);
    cleanup.add(() => ip("link", "del", `${PREFIX}-dum0`));

    const net = manager({ firstIndex: 1060, egressInterface: "lo" });
    cleanup.add(() => net.removeHostRules());
    const first = await net.acquire();
    cleanup.add(() => net.release(first));
    const second = await net.acquire();
    cleanup.add(() => net.release(second));
    assert.deepEqual([first.index, second.index], [1061, 1063]);
    assert.equal(await exists("netns", `${PREFIX}-ns-1060`), true, "foreign namespace untouched");
    assert.equal(await exists("netns", `${PREFIX}-ns-1062`), false, "1062 rolled back");
    assert.equal(await exists("link", `${PREFIX}-vh-1062`), false, "1062 rolled back");
    const { stdout } = await ip("route", "show", `${slotAddresses(1062).hostAddress}/32`);
    assert.match(stdout, new RegExp(`dev ${PREFIX}-dum0`), "foreign route untouched");
  }),
);

test(
  "cleanupStale removes a dead agent's slots except those kept, and reloads the host rules",
  leakChecked(async (cleanup) => {
    const dead = manager({ firstIndex: 1070, egressInterface: "lo" });
    cleanup.add(() => dead.removeHostRules());
    const slots = await Promise.all([dead.acquire(), dead.acquire(), dead.acquire()]);
    assert.deepEqual(slots.map((s) => s.index).sort(), [1070, 1071, 1072]);
    // Half-made leftovers: a host veth without its namespace, a namespace without its veth.
    await ip(
      "link",
      "add",
      `${PREFIX}-vh-1080`,
      "type",
      "veth",
      "peer",
      "name",
      `${PREFIX}-vp-1080`,
    );
    cleanup.add(() => ip("link", "del", `${PREFIX}-vh-1080`).catch(() => undefined));
    await ip("netns", "add", `${PREFIX}-ns-1081`);
    cleanup.add(() => ip("netns", "del", `${PREFIX}-ns-1081`).catch(() => undefined));
    // A stale host table with an extra rule that the reload must drop.
    await runCommand("nft", ["add", "chain", "inet", PREFIX, "stale"]);

    const restarted = manager({ firstIndex: 1070, egressInterface: "lo" });
    await restarted.cleanupStale([1071]);
    for (const index of [1070, 1072, 1081]) {
      assert.equal(await exists("netns", `${PREFIX}-ns-${index}`), false, `ns ${index} removed`);
    }
    for (const index of [1070, 1072, 1080]) {
      assert.equal(await exists("link", `${PREFIX}-vh-${index}`), false, `veth ${index} removed`);
    }
    assert.equal(await exists("netns", `${PREFIX}-ns-1071`), true, "kept slot survives");
    const { stdout } = await runCommand("nft", ["list", "table", "inet", PREFIX]);
    assert.doesNotMatch(stdout, /chain stale/);
    assert.match(stdout, /chain forward/);

    // The kept slot is re-adopted and still in use; new slots take the freed indexes.
    const kept = restarted.adopt(1071);
    assert.deepEqual(
      kept,
      slots.find((s) => s.index === 1071),
    );
    const fresh = await restarted.acquire();
    assert.equal(fresh.index, 1070);
    await restarted.release(fresh);
    await restarted.release(kept);
    assert.deepEqual(restarted.inUse, []);
    assert.equal(await exists("netns", `${PREFIX}-ns-1071`), false);
  }),
);
