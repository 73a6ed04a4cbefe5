/**
 * The warm pool on real VMs: a create of a template in use is served by a
 * sandbox restored ahead of time, which gets the create's own identity
 * (token, env, fresh randomness); a refill that fails leaks nothing; a
 * template sized on its own keeps no more; a deleted template takes its
 * entries with it; a killed agent's entries are destroyed by the next one.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { createLogger } from "@wrenn/shared/log.ts";
import { detectCgroups } from "../src/cgroup/cgroup.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import { EnvdClient } from "../src/envd/client.ts";
import { WARM_FILE } from "../src/sandbox/warm-up.ts";
import { selectVmm } from "../src/vmm/select.ts";
import type { VmmDriver } from "../src/vmm/vmm.ts";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";
import { driverWith } from "./vmm-wrap.ts";

const skip = vmSkipReason("warm pool tests");

/** While set, a pool entry's VM dies right after its restore (a refill failing half-way). */
let failPoolRestores = false;
/** While set, pool entries' VM handles say they wait for disk space (vmm-qemu.test.ts makes a real one). */
let poolNoSpace = false;

function faulty(real: VmmDriver): VmmDriver {
  return driverWith(real, {
    restore: async (spec) => {
      const vm = await real.restore(spec);
      if (!spec.vmId.startsWith("pool-")) return vm;
      if (failPoolRestores) process.kill(vm.pid, "SIGKILL");
      Object.defineProperty(vm, "waitsForSpace", { get: () => poolNoSpace });
      return vm;
    },
  });
}

const h = new AgentHarness("wp");
/** A snapshot template the agent keeps at most one warm entry of (`--warm-pool 2,NAME=1`). */
const tplName = `wp-tpl-${process.pid}`;

function poolReady(): number {
  return h.agent.manager.warmSandboxes();
}

async function until(what: string, cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function create(id: string, env: Record<string, string>, token = "") {
  const res = await h.client.createSandbox({
    sandboxId: id,
    template: "minimal",
    vcpus: 1,
    memoryMb: 256,
    timeoutSec: 600,
    envVars: env,
    envdAccessToken: token,
  });
  return res.sandbox;
}

/** The name a sandbox's host resources live under (a pool entry's, when it was claimed). */
function homeOf(id: string): string {
  const { record } = h.agent.manager.get(id);
  return record.home ?? record.id;
}

/** The pool's entries on disk (records), and every sandbox record. */
async function recordDirs(of = h): Promise<string[]> {
  return readdir(join(of.root, "data", "sandboxes")).catch(() => []);
}

/** A VM's CPU share in its cgroup (v1 shares or v2 weight); null on a host without cgroups. */
async function cpuShare(vmId: string): Promise<number | null> {
  const cgroups = await detectCgroups();
  if (cgroups === null) return null;
  const [dir] = cgroups.dirs(vmId) as [string];
  const file = cgroups.version === "v1" ? "cpu.shares" : "cpu.weight";
  return Number((await readFile(join(dir, file), "utf8")).trim());
}

describe("warm pool", { skip, concurrency: false, timeout: 600_000 }, () => {
  before(async () => {
    await h.setUp();
    const real = await selectVmm({ dataDir: h.root, log: createLogger("host-agent", "warn") });
    h.configure({ vmmDriver: faulty(real), warmPool: 2, warmPoolTemplates: { [tplName]: 1 } });
    await h.start();
  });
  after(() => h.tearDown());

  test("a create fills the pool; the next is claimed and personalised", async () => {
    const a = h.newId();
    await create(a, { WHO: "a" });
    assert.equal(homeOf(a), a, "the first create restores on the request path");
    await until("a warm entry", () => poolReady() === 1);
    // The entry waits at a quarter of a vCPU's CPU share; claimed, it gets its vCPUs' share.
    const entry = (await recordDirs()).find((n) => n.startsWith("pool-")) ?? "";
    const running = await cpuShare(a);
    if (running === null) console.warn("no cgroups on this host: CPU shares not checked");
    else
      assert.equal(await cpuShare(entry), running / 4, "an entry's share: a quarter of a vCPU's");
    // The host reports it (the admin's hosts page), apart from its running sandboxes.
    const info = await h.client.getHostInfo({});
    assert.equal(info.warmSandboxes, 1);
    assert.equal(info.runningSandboxes, 1);
    // Entries are no one's sandboxes: not listed.
    assert.deepEqual(
      (await h.client.listSandboxes({})).sandboxes.map((s) => s.sandboxId),
      [a],
    );

    const b = h.newId();
    const token = "b-token-0123456789";
    await create(b, { WHO: "b" }, token);
    assert.match(homeOf(b), /^pool-/, "served from the pool");
    assert.equal(homeOf(b), entry);
    // Its warm-up opened envd's control channel, and the claim's /init went over it (a
    // failed channel would have closed, the /init sent again as a POST); a create restored
    // on the request path has one /init, a POST, and no channel.
    assert.equal(h.agent.manager.get(b).envd?.controlOpen, true, "the claim's channel is open");
    assert.equal(h.agent.manager.get(a).envd?.controlOpen, false, "no channel for one /init");
    if (running !== null)
      assert.equal(await cpuShare(entry), running, "claimed: a sandbox's share");
    assert.equal((await h.sh(b, "echo $WHO")).stdout, "b\n");
    // The warm-up wrote, read and removed a file: none is left for the user.
    assert.equal(
      (await h.sh(b, `test -e ${WARM_FILE} && echo left || echo gone`)).stdout,
      "gone\n",
    );
    // The claim set the create's token: the entry's own is gone, none is refused.
    const envd = (t: string) =>
      new EnvdClient(`${h.agent.manager.get(b).slot?.hostAddress}:${ENVD_PORT}`, t);
    const withToken = envd(token);
    const wrong = envd("not-the-token");
    try {
      assert.ok((await withToken.metrics(5000)).mem_total > 0);
      await assert.rejects(wrong.metrics(5000), "a wrong token is refused");
    } finally {
      withToken.close();
      wrong.close();
    }

    // Demand refills it (two creates in a minute: up to two entries).
    await until("the pool refilled", () => poolReady() >= 1);
    const c = h.newId();
    await create(c, { WHO: "c" });
    assert.match(homeOf(c), /^pool-/);
    assert.notEqual(homeOf(c), homeOf(b));

    // Restored from one memory snapshot, yet each draws its own random bytes.
    const draw = async (id: string) =>
      (await h.sh(id, "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'")).stdout;
    const bytes = await Promise.all([a, b, c].map(draw));
    assert.equal(new Set(bytes).size, 3, `distinct random bytes: ${bytes.join(" ")}`);
    // And each its own name (the kernel's, /etc/hostname, /etc/hosts' 127.0.1.1
    // line): the pool's entries were restored under their snapshot's.
    for (const id of [a, b, c]) {
      const names = await h.sh(
        id,
        "hostname; cat /etc/hostname; awk '$1 == \"127.0.1.1\" { print $2 }' /etc/hosts",
      );
      assert.equal(names.stdout, `${id}\n${id}\n${id}\n`);
    }
    assert.equal((await h.sh(c, "echo $WHO")).stdout, "c\n");

    // Pause and resume keep the claimed sandbox whole (its files live under the entry's name).
    await h.sh(c, "echo kept > /tmp/k");
    await h.client.pauseSandbox({ sandboxId: c });
    await h.client.resumeSandbox({ sandboxId: c });
    assert.equal((await h.sh(c, "cat /tmp/k")).stdout, "kept\n");

    for (const id of [a, b, c]) await h.client.destroySandbox({ sandboxId: id });
  });

  test("a refill that fails leaves nothing behind; creates still work", async () => {
    await h.agent.manager.destroyAll();
    assert.equal(poolReady(), 0);
    failPoolRestores = true;
    try {
      const a = h.newId();
      await create(a, {});
      // The refill's VM dies during its start: it is undone, and waits before trying again.
      await new Promise((r) => setTimeout(r, 5000));
      assert.equal(poolReady(), 0);
      const b = h.newId();
      await create(b, {});
      assert.equal(homeOf(b), b, "no entry: the slow path");
      assert.equal((await h.sh(b, "echo ok")).stdout, "ok\n");
      await new Promise((r) => setTimeout(r, 3000));
      for (const id of [a, b]) await h.client.destroySandbox({ sandboxId: id });
    } finally {
      failPoolRestores = false;
    }
    await h.agent.manager.destroyAll();
    assert.deepEqual(await recordDirs(), [], "no record left by the failed refills");
    await h.noLeaks();
  });

  test("a create skips an entry whose VM waits for disk space: it is destroyed and the create takes the slow path", async () => {
    await h.agent.manager.destroyAll();
    const a = h.newId();
    await create(a, {});
    await until("a warm entry", () => poolReady() === 1);
    const entries = (await recordDirs()).filter((d) => d.startsWith("pool-"));
    assert.equal(entries.length, 1);
    poolNoSpace = true;
    try {
      const b = h.newId();
      await create(b, {});
      assert.equal(homeOf(b), b, "no entry claimed: the slow path");
      assert.equal((await h.sh(b, "echo ok")).stdout, "ok\n");
      const left = await recordDirs();
      assert.deepEqual(
        entries.filter((e) => left.includes(e)),
        [],
        "the waiting entry is destroyed",
      );
      for (const id of [a, b]) await h.client.destroySandbox({ sandboxId: id });
    } finally {
      poolNoSpace = false;
    }
    await h.agent.manager.destroyAll();
    assert.deepEqual(await recordDirs(), [], "no entry's record left");
    await h.noLeaks();
  });

  test("a template sized on its own keeps no more; deleting it takes its warm entries with it", async () => {
    const src = h.newId();
    await create(src, {});
    const name = tplName;
    const { template } = await h.client.createSnapshot({ sandboxId: src, name });
    // Its size on the host (disk and memory as allocated), for the dashboard's templates page.
    assert.ok(Number(template?.sizeBytes) > 1 << 20, `size ${template?.sizeBytes}`);
    await h.client.destroySandbox({ sandboxId: src });
    await h.agent.manager.destroyAll(); // the base template's entries: only the template's below

    const first = h.newId();
    await h.client.createSandbox({
      sandboxId: first,
      template: name,
      vcpus: 1,
      memoryMb: 256,
      timeoutSec: 600,
    });
    await until("a warm entry of the template", () => poolReady() === 1);
    const second = h.newId();
    await h.client.createSandbox({
      sandboxId: second,
      template: name,
      vcpus: 1,
      memoryMb: 256,
      timeoutSec: 600,
    });
    assert.match(homeOf(second), /^pool-/);
    // Two creates in the last minute ask for two entries; the template's own size is one.
    const ofTemplate = () => h.agent.manager.poolCounts()[`template:${name}`];
    await until("the template's entry refilled", () => ofTemplate() === 1);
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(ofTemplate(), 1, "no second entry of a template sized 1");
    // In use by sandboxes: refused, as without a pool.
    const err = await h.client.deleteSnapshot({ name }).catch((e: unknown) => e);
    assert.equal(connectCode(err), Code.FailedPrecondition);
    for (const id of [first, second]) await h.client.destroySandbox({ sandboxId: id });
    // Only warm entries left (a refill may be under way): the delete drains them.
    await h.client.deleteSnapshot({ name });
    assert.equal(poolReady(), 0);
    assert.deepEqual(await recordDirs(), []);
    await h.noLeaks();
  });
});

/** Its own agent, as a process that can be killed (the pool as `wrenn up` runs it). */
const k = new AgentHarness("wk", { warmPool: 1 });

describe("warm pool across an agent crash", { skip, timeout: 300_000 }, () => {
  before(async () => {
    await k.setUp();
    await k.startProcess();
  });
  after(() => k.tearDown());

  test("a killed agent's entries are destroyed by the next agent", async () => {
    const a = k.newId();
    await k.client.createSandbox({
      sandboxId: a,
      template: "minimal",
      vcpus: 1,
      memoryMb: 256,
      timeoutSec: 600,
    });
    // The entry is made by the agent process: its record appears beside the sandbox's.
    const deadline = Date.now() + 60_000;
    let dirs: string[] = [];
    while (Date.now() < deadline) {
      dirs = await recordDirs(k);
      if (dirs.some((d) => d.startsWith("pool-"))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(
      dirs.some((d) => d.startsWith("pool-")),
      `an entry was made: ${dirs.join(" ")}`,
    );
    // Let the entry finish starting (its record says running), then kill the agent.
    await new Promise((r) => setTimeout(r, 5000));
    k.process?.kill("SIGKILL");
    await k.processExit();
    await k.start();
    assert.deepEqual(
      (await k.client.listSandboxes({})).sandboxes.map((s) => s.sandboxId),
      [a],
    );
    assert.deepEqual(
      (await recordDirs(k)).filter((d) => d.startsWith("pool-")),
      [],
      "the entry was destroyed",
    );
    await k.client.destroySandbox({ sandboxId: a });
    await k.agent.manager.destroyAll();
    await k.noLeaks();
  });
});
