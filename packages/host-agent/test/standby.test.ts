/**
 * Standby VMMs on real VMs (QEMU on an xfs pool, as `wrenn setup` makes):
 * a create or a pause starts a QEMU for the resume ahead, and the resume
 * runs the sandbox in it — its memory as it was, its own disk under the
 * device the standby started with — and starts the next. One that dies
 * waiting, and the agent's close, leave nothing behind. standbys-unit.test.ts covers the rules on in-memory drivers.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { deviceMapperAvailable } from "../src/storage/select.ts";
import { cmdlineOf } from "../src/util/process.ts";
import { AgentHarness, vmSkipReason } from "./agent-harness.ts";

const skip = vmSkipReason("standby VMM tests");
const h = new AgentHarness("wsb", { standbyVmms: 1 }, { pool: true });

/** The standby QEMUs of a harness's agent (named wrenn-standby-…), by pid. */
async function standbyPids(of = h): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const argv = await cmdlineOf(pid);
    const vm = argv?.[argv.indexOf("-name") + 1];
    if (
      argv?.includes("-name") &&
      vm?.startsWith("wrenn-standby-") &&
      argv.some((a) => a.includes(of.root))
    ) {
      pids.push(pid);
    }
  }
  return pids;
}

async function until<T>(get: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    assert.ok(Date.now() < deadline, `${what} (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The standby QEMU a pause started (a second after it), once it waits: a
 * resume takes no standby still starting. Ready is QEMU dropped to its uid
 * (its start's end) and a moment more.
 */
async function readyStandby(of = h): Promise<number> {
  const [pid] = await until(
    () => standbyPids(of),
    (p) => p.length === 1,
    "the pause starts a standby QEMU",
  );
  await until(
    () => readFile(`/proc/${pid}/status`, "utf8").catch(() => ""),
    (s) => /^Uid:\s+[1-9]/m.test(s),
    "the standby QEMU runs as its own uid",
  );
  await new Promise((r) => setTimeout(r, 300));
  return pid!;
}

async function rootSh(id: string, script: string, of = h): Promise<string> {
  const res = await of.client.exec({
    sandboxId: id,
    cmd: "/bin/sh",
    args: ["-c", script],
    user: "root",
    timeoutSec: 60,
  });
  assert.equal(res.exitCode, 0, Buffer.from(res.stderr).toString());
  return Buffer.from(res.stdout).toString();
}

/** The pid of the QEMU the sandbox runs in, as the agent's record has it. */
const sandboxPid = (id: string, of = h) => of.agent.manager.get(id).record.vm?.pid;

const standbyDirs = async () =>
  (await readdir(join(h.root, "data", "run")).catch((): string[] => [])).filter((d) =>
    d.startsWith("standby-"),
  );

describe("standby VMMs", { skip, concurrency: false }, () => {
  before(() => h.setUp());
  // Each test ends with the agent shut down (a resume that took a standby
  // leaves the next one waiting) and starts its own.
  beforeEach(() => h.start());
  after(() => h.tearDown());

  test("a create starts a standby for its machine: its first pause, resumed at once, runs in it", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      const standby = await readyStandby();
      await h.sh(id, "echo kept > /home/user/f");
      await h.client.pauseSandbox({ sandboxId: id });
      await h.client.resumeSandbox({ sandboxId: id });
      assert.equal(sandboxPid(id), standby, "the sandbox runs in the standby QEMU");
      assert.equal((await h.sh(id, "cat /home/user/f")).stdout, "kept\n");
      await h.client.destroySandbox({ sandboxId: id });
    } finally {
      await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    await h.noLeaksOnceStopped();
  });

  test("a resume runs the sandbox in the QEMU its pause started: memory as it was, its writes on its own disk, adopted by the next agent", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      const sleeper = (await h.sh(id, "sleep 100000 >/dev/null 2>&1 & echo $!")).stdout.trim();
      await rootSh(id, "echo start > /var/tmp/rounds; sync");
      for (const round of [1, 2, 3]) {
        if (round === 3) {
          // A new agent adopts the VM where the standby's files went, and pauses it.
          await h.agent.close();
          await h.start();
        }
        await h.client.pauseSandbox({ sandboxId: id });
        const standby = await readyStandby();
        await h.client.resumeSandbox({ sandboxId: id });
        assert.equal(sandboxPid(id), standby, "the sandbox runs in the standby QEMU");
        assert.equal((await h.sh(id, `kill -0 ${sleeper} && echo alive`)).stdout, "alive\n");
        // Past the guest's page cache: what it reads back is on the disk the device has now.
        const rounds = await rootSh(
          id,
          `echo round-${round} >> /var/tmp/rounds; sync; echo 3 > /proc/sys/vm/drop_caches; cat /var/tmp/rounds`,
        );
        const want = ["start", ...[1, 2, 3].filter((r) => r <= round).map((r) => `round-${r}`)];
        assert.equal(rounds, want.join("\n") + "\n");
        // The take starts the next for the machine, which the next pause finds ready.
        await until(standbyPids, (p) => p.length === 2, "the resume starts the next standby");
      }
      const vm = sandboxPid(id);
      await h.client.destroySandbox({ sandboxId: id });
      await until(standbyPids, (p) => !p.includes(vm!), "its QEMU goes with the sandbox");
    } finally {
      await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    await h.noLeaksOnceStopped();
  });

  test("a standby QEMU killed while it waits gives back its slot and files; the resume starts its own", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      await h.sh(id, "echo kept > /home/user/f; sync");
      await h.client.pauseSandbox({ sandboxId: id });
      const standby = await readyStandby();
      const argv = (await cmdlineOf(standby)) ?? [];
      const dir = argv[argv.indexOf("-name") + 1]?.replace(/^wrenn-/, "");
      process.kill(standby, "SIGKILL");
      await until(standbyDirs, (d) => !d.includes(dir!), "the dead standby's run dir is removed");
      await h.client.resumeSandbox({ sandboxId: id });
      assert.equal((await h.sh(id, "cat /home/user/f")).stdout, "kept\n");
      assert.ok(!(await standbyPids()).includes(sandboxPid(id)!), "it runs in a QEMU of its own");
      await h.client.destroySandbox({ sandboxId: id });
    } finally {
      await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    // The dead standby's slot is torn down, not only its index freed.
    await h.noLeaksOnceStopped();
  });

  test("the agent's close stops a waiting standby; the next agent resumes without one", async () => {
    const id = h.newId();
    await h.create(id);
    try {
      await h.client.pauseSandbox({ sandboxId: id });
      await until(standbyPids, (p) => p.length === 1, "the pause starts a standby QEMU");
      // As at an upgrade: the sandboxes stay for the next agent, the standbys go.
      await h.agent.close();
      assert.deepEqual(await standbyPids(), []);
      assert.deepEqual(await standbyDirs(), []);
      await h.start();
      await h.client.resumeSandbox({ sandboxId: id });
      assert.equal((await h.sh(id, "echo ok")).stdout, "ok\n");
      await h.client.destroySandbox({ sandboxId: id });
    } finally {
      await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
    }
    await h.noLeaksOnceStopped();
  });
});

// Every VM's disk is a raw node over the file's: a standby puts a qcow2 file
// (raw over qcow2 over file) or a dm-snapshot device (host_device) under it
// as it does a reflink copy.
const noDeviceMapper =
  !(await deviceMapperAvailable()) &&
  "this kernel has no usable device-mapper (`dmsetup version` fails)";
if (noDeviceMapper)
  console.warn(`\n!!! SKIPPING standby VMMs with dm-snapshot disks: ${noDeviceMapper}\n`);
for (const storage of ["qcow2", "dm-snapshot"] as const) {
  const skipStorage = skip || (storage === "dm-snapshot" && noDeviceMapper);
  const of = new AgentHarness(
    storage === "qcow2" ? "wsq" : "wsd",
    { standbyVmms: 1, storage },
    { pool: true },
  );
  describe(`standby VMMs with ${storage} disks`, { skip: skipStorage, concurrency: false }, () => {
    before(async () => {
      await of.setUp();
      await of.start();
    });
    after(() => of.tearDown());

    test(`a resume runs the sandbox in a standby QEMU, on its own ${storage} disk`, async () => {
      const id = of.newId();
      await of.create(id);
      try {
        await rootSh(id, "echo before > /var/tmp/rounds; sync", of);
        for (const round of [1, 2]) {
          await of.client.pauseSandbox({ sandboxId: id });
          const standby = await readyStandby(of);
          await of.client.resumeSandbox({ sandboxId: id });
          assert.equal(sandboxPid(id, of), standby, "the sandbox runs in the standby QEMU");
          // Past the guest's page cache: what it reads back is on the disk the device has now.
          const rounds = await rootSh(
            id,
            `echo round-${round} >> /var/tmp/rounds; sync; echo 3 > /proc/sys/vm/drop_caches; cat /var/tmp/rounds`,
            of,
          );
          const want = ["before", ...[1, 2].filter((r) => r <= round).map((r) => `round-${r}`)];
          assert.equal(rounds, want.join("\n") + "\n");
        }
        await of.client.destroySandbox({ sandboxId: id });
      } finally {
        await of.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
      }
      await of.noLeaksOnceStopped();
    });
  });
}
