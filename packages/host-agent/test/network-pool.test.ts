/**
 * The network slot pool on real namespaces, veths, TAPs and nftables (root):
 * slots built ahead, handed out once, refilled in the background, torn
 * down on drain, and cleaned up after a killed agent. Resources use the
 * prefix "wqp" (no other file's prefix starts it or is started by it) and
 * indexes from 2001; every test runs under a leak check of that prefix.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { pino } from "pino";
import { CommandError, runCommand, type Runner } from "@wrenn/shared/command.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { createNetworkManager, type NetnsNetworkOptions } from "../src/network/netns-network.ts";
import { slotNames } from "../src/network/addresses.ts";
import { assertNoLeaks, snapshotHostResources } from "./leaks.ts";
import { networkCapabilityProblem } from "./network-capability.ts";

const PREFIX = "wqp";
const TIMEOUT_MS = 90_000;

const skipReason = await networkCapabilityProblem(PREFIX);
if (skipReason) console.warn(`\n!!! SKIPPING network pool tests: ${skipReason}\n`);

/** Log lines the manager wrote (JSON, parsed), to check what it reported. */
function capturingLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) {
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: pino({ name: "network-pool-test", level: "info" }, sink), lines };
}

function manager(options: NetnsNetworkOptions = {}) {
  return createNetworkManager({
    prefix: PREFIX,
    firstIndex: 2001,
    egressInterface: "lo",
    log: capturingLog().log,
    ...options,
  });
}

type Net = ReturnType<typeof manager>;
type Cleanup = (step: () => Promise<unknown>) => void;

/**
 * A manager past the agent's start-up sweep with `filledTo` slots pooled
 * (its pool's size unless the host has fewer free); its host rules go at cleanup.
 */
async function started(
  cleanup: Cleanup,
  options: NetnsNetworkOptions,
  filledTo = options.poolSize ?? 0,
) {
  const net = manager(options);
  cleanup(() => net.removeHostRules());
  await net.cleanupStale([]);
  await filled(net, filledTo);
  return net;
}

/** A runner that hands every call to `hook`, which may alter or fail it. */
function hookedRunner(
  hook: (cmd: string, args: string[], input: string) => ReturnType<Runner> | null,
): Runner {
  return (cmd, args, options = {}) =>
    hook(cmd, args, String(options.input ?? "")) ?? runCommand(cmd, args, options);
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const filled = (net: Net, n: number) => until(`${n} pooled slots`, () => net.pooled.length === n);

async function namespaces(): Promise<string[]> {
  const { stdout } = await runCommand("ip", ["-j", "netns", "list"]);
  if (stdout.trim() === "") return [];
  return (JSON.parse(stdout) as Array<{ name: string }>)
    .map((e) => e.name)
    .filter((n) => n.startsWith(`${PREFIX}-`))
    .sort();
}

/** The slot is whole: TAP up inside its namespace and its NAT table loaded. */
async function assertSlotBuilt(index: number): Promise<void> {
  const { netns } = slotNames(PREFIX, index);
  const { stdout } = await runCommand("ip", ["-j", "-n", netns, "link", "show", "dev", "tap0"]);
  const [tap] = JSON.parse(stdout) as Array<{ flags: string[] }>;
  assert.ok(tap?.flags.includes("UP"), `tap0 is up in ${netns}`);
  const nft = await nsNft(netns, ["list", "table", "inet", PREFIX]);
  assert.match(nft, /dnat ip to 169\.254\.0\.21/, `${netns} has its NAT rules`);
}

async function nsNft(netns: string, args: string[]): Promise<string> {
  const { stdout } = await runCommand("nsenter", [`--net=/run/netns/${netns}`, "nft", ...args]);
  return stdout;
}

/** Runs `body` between a resource snapshot of the prefix and a leak check; `cleanup` runs first. */
function leakChecked(body: (cleanup: Cleanup) => Promise<void>) {
  return async (t: TestContext) => {
    if (skipReason) {
      t.skip(skipReason);
      return;
    }
    const before = await snapshotHostResources({ prefix: PREFIX, markers: [PREFIX] });
    const steps: Array<() => Promise<unknown>> = [];
    let failure: unknown = null;
    try {
      await body((step) => steps.push(step));
    } catch (err) {
      failure = err;
    }
    for (const step of steps.reverse()) {
      await step().catch((err: unknown) => console.warn("cleanup step failed:", err));
    }
    try {
      await assertNoLeaks(before);
    } catch (leak) {
      if (failure)
        throw new AggregateError([failure, leak], "test failed and leaked", { cause: leak });
      throw leak;
    }
    if (failure) throw failure;
  };
}

test(
  "the pool fills to its size once started; drain tears every pooled slot down",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const net = manager({ poolSize: 3 });
    cleanup(() => net.removeHostRules());
    assert.deepEqual(net.pooled, [], "nothing is built before the agent's start-up sweep");
    await net.cleanupStale([]);
    await filled(net, 3);
    assert.deepEqual(net.pooled, [2001, 2002, 2003]);
    assert.deepEqual(net.inUse, [2001, 2002, 2003], "pooled slots hold their indexes");
    for (const index of net.pooled) await assertSlotBuilt(index);
    // Stays at its size.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(net.pooled.length, 3);

    await net.drain();
    assert.deepEqual(net.pooled, []);
    assert.deepEqual(net.inUse, []);
    assert.deepEqual(await namespaces(), []);
  }),
);

test(
  "acquire takes a prebuilt slot at once, a refill follows, and the slot takes its own egress rules",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const ran: string[] = [];
    const runner = hookedRunner((cmd, args) => {
      ran.push([cmd, ...args].join(" "));
      return null;
    });
    const net = await started(cleanup, { poolSize: 2, runner });
    const ready = net.pooled;

    ran.length = 0;
    const slot = await net.acquire();
    cleanup(() => net.release(slot));
    assert.ok(ready.includes(slot.index), `got a pooled slot (${slot.index} of ${ready})`);
    assert.deepEqual(ran, [], "a pooled acquire runs no command (its refill starts later)");
    assert.deepEqual(
      net.pooled,
      ready.filter((i) => i !== slot.index),
    );
    await filled(net, 2);
    assert.ok(!net.pooled.includes(slot.index), "the handed-out slot is not pooled again");
    await assertSlotBuilt(slot.index);

    // As acquireSlot does for a sandbox with rules: its own, on top of the defaults.
    assert.doesNotMatch(
      await nsNft(slot.netns, ["list", "chain", "inet", PREFIX, "egress"]),
      /ip daddr/,
    );
    await net.setEgress(slot, { allowOut: [], denyOut: ["203.0.113.0/24"] });
    assert.match(
      await nsNft(slot.netns, ["list", "chain", "inet", PREFIX, "egress"]),
      /ip daddr 203\.0\.113\.0\/24/,
    );
    const other = net.pooled[0] as number;
    assert.doesNotMatch(
      await nsNft(slotNames(PREFIX, other).netns, ["list", "chain", "inet", PREFIX, "egress"]),
      /ip daddr/,
      "a pooled slot keeps the default rules",
    );
  }),
);

test(
  "a background acquire builds its own slot and leaves the pool's to requests",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const net = await started(cleanup, { poolSize: 2 });
    const ready = net.pooled;
    const slot = await net.acquire({ background: true });
    cleanup(() => net.release(slot));
    assert.ok(!ready.includes(slot.index), `built its own (${slot.index}, pool ${ready})`);
    assert.deepEqual(net.pooled, ready, "the pool keeps its slots");
    await assertSlotBuilt(slot.index);
  }),
);

test(
  "concurrent acquires never share a slot, pooled or built on the spot",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const net = await started(cleanup, { poolSize: 2 });
    const slots = await Promise.all(Array.from({ length: 5 }, () => net.acquire()));
    for (const slot of slots) cleanup(() => net.release(slot));
    const indexes = slots.map((s) => s.index);
    assert.equal(new Set(indexes).size, 5, `distinct slots: ${indexes}`);
    for (const index of indexes) await assertSlotBuilt(index);
    await filled(net, 2);
    for (const index of net.pooled) assert.ok(!indexes.includes(index));
  }),
);

test(
  "a released slot is torn down, never handed to the next sandbox",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const net = await started(cleanup, { poolSize: 1, lastIndex: 2003 });
    const first = await net.acquire();
    cleanup(() => net.release(first)); // a second release: must not touch the pooled slot
    // Something the first tenant leaves in its slot.
    await runCommand("nsenter", [
      `--net=/run/netns/${first.netns}`,
      "nft",
      "add",
      "table",
      "inet",
      "tenant1",
    ]);
    await filled(net, 1);
    await net.release(first);
    assert.ok(!(await namespaces()).includes(first.netns), "its namespace is gone");

    // The next refill takes the index again (the smallest free), as a new slot.
    const second = await net.acquire();
    cleanup(() => net.release(second));
    await filled(net, 1);
    assert.deepEqual(net.pooled, [first.index]);
    await assertSlotBuilt(first.index);
    assert.doesNotMatch(
      await nsNft(first.netns, ["list", "tables"]),
      /tenant1/,
      "nothing of the first tenant is in it",
    );
    // A stale second release of the first tenant's slot leaves the new one alone.
    await net.release(first);
    assert.deepEqual(net.pooled, [first.index]);
    await assertSlotBuilt(first.index);
  }),
);

test(
  "a failing refill leaves nothing behind, is logged, and acquire still works",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const { log, lines } = capturingLog();
    let failing = true;
    let failures = 0;
    const net = manager({
      poolSize: 2,
      log,
      // The namespace step fails after the host side was made: rollback must undo it.
      runner: hookedRunner((cmd, args) => {
        if (!failing || cmd !== "nsenter" || !args.includes("sh")) return null;
        failures++;
        return Promise.reject(new CommandError(`${cmd} ${args.join(" ")}`, 1, "injected"));
      }),
    });
    cleanup(() => net.removeHostRules());
    await net.cleanupStale([]);
    await until("the refill to fail", () =>
      lines.some((l) => /network pool refill failed/.test(String(l.msg))),
    );
    assert.equal(failures, 1, "one failed build ends the round: no spinning");
    assert.deepEqual(net.pooled, []);
    assert.deepEqual(net.inUse, [], "the index is free again");
    assert.deepEqual(await namespaces(), [], "nothing of the failed slot is left");
    const warn = lines.find((l) => /network pool refill failed/.test(String(l.msg)));
    assert.equal(warn?.level, 40);
    assert.match(String(warn?.err), /injected/);

    // The request's own build fails the same way, and says so.
    await assert.rejects(net.acquire(), /injected/);
    await until("the refill after it", () => failures >= 3);
    await until("no build in progress", () => failures >= 3 && net.inUse.length === 0);

    failing = false;
    const slot = await net.acquire();
    cleanup(() => net.release(slot));
    await assertSlotBuilt(slot.index);
    await filled(net, 2);
  }),
);

test(
  "a killed agent's pooled slots go at the next agent's start; re-adopted slots are kept and never pooled",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    cleanup(async () => {
      // Whatever a failure left of either agent.
      const sweeper = manager();
      await sweeper.cleanupStale([]);
      await sweeper.removeHostRules();
    });
    const killed = manager({ poolSize: 2 });
    await killed.cleanupStale([]);
    await filled(killed, 2);
    const sandbox = await killed.acquire(); // from the pool: 2001
    await filled(killed, 2);
    const orphans = killed.pooled;
    assert.deepEqual(orphans, [2002, 2003]);
    // The agent dies here: no release, no drain.

    const next = manager({ poolSize: 2 });
    cleanup(() => next.removeHostRules());
    const adopted = next.adopt(sandbox.index);
    cleanup(() => next.release(adopted));
    await next.cleanupStale([sandbox.index]);
    await filled(next, 2);
    assert.ok(!next.pooled.includes(sandbox.index), "the adopted index is never pooled");
    assert.deepEqual(sorted(next.pooled), [2002, 2003], "the orphans' indexes are rebuilt fresh");
    await assertSlotBuilt(sandbox.index);
    for (const index of next.pooled) await assertSlotBuilt(index);
    assert.deepEqual(
      await namespaces(),
      [sandbox.index, ...next.pooled].map((i) => slotNames(PREFIX, i).netns).sort(),
    );

    function sorted(xs: number[]) {
      return [...xs].sort((a, b) => a - b);
    }
  }),
);

test(
  "the start-up sweep waits for a refill in progress and keeps the manager's own pooled slots",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const net = manager({ poolSize: 2 });
    cleanup(() => net.removeHostRules());
    await net.cleanupStale([]);
    // A refill is building now; a second sweep must neither cut it nor remove what it built.
    await net.cleanupStale([]);
    await filled(net, 2);
    for (const index of net.pooled) await assertSlotBuilt(index);
    await net.cleanupStale([]);
    assert.equal(net.pooled.length, 2);
    for (const index of net.pooled) await assertSlotBuilt(index);
  }),
);

test(
  "capacity: the pool never takes the last free index, and requests get every index",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const net = await started(cleanup, { poolSize: 5, firstIndex: 2051, lastIndex: 2053 }, 2);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(net.pooled, [2051, 2052], "one index stays free for requests");
    const slots = await Promise.all([net.acquire(), net.acquire(), net.acquire()]);
    for (const slot of slots) cleanup(() => net.release(slot));
    assert.deepEqual(slots.map((s) => s.index).sort(), [2051, 2052, 2053]);
    await assert.rejects(net.acquire(), (e) => isWrennError(e, "resource_exhausted"));
    assert.deepEqual(net.pooled, []);
  }),
);

test(
  "a pool of size 0 builds nothing ahead",
  { timeout: TIMEOUT_MS },
  leakChecked(async (cleanup) => {
    const net = await started(cleanup, { poolSize: 0 });
    const slot = await net.acquire();
    cleanup(() => net.release(slot));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(net.pooled, []);
    assert.deepEqual(net.inUse, [slot.index]);
  }),
);
