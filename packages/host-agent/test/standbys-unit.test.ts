/**
 * Standby VMMs on in-memory drivers: a pause starts one for its machine on
 * a slot of its own, the resume takes it (and its slot) and starts the next
 * for that machine, and whatever goes
 * wrong — it dies waiting, it fails to start, the resume into it fails, a
 * pause of another machine replaces it, the agent closes — no slot, run dir
 * or VMM is left and the sandbox keeps its saved state. standby.test.ts
 * checks the same on real VMs.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@wrenn/shared/log.ts";
import { SandboxManager, type CreateParams } from "../src/sandbox/manager.ts";
import {
  Faults,
  MemoryNetwork,
  MemoryStorage,
  MemoryVmm,
  memoryImages,
  startStandInEnvd,
} from "./in-memory-drivers.ts";

const log = createLogger("test", "silent");

describe("standby VMMs on in-memory drivers", { timeout: 60_000 }, () => {
  let root: string;
  let envd: Awaited<ReturnType<typeof startStandInEnvd>>;
  const faults = new Faults();
  let vmm: MemoryVmm;
  let network: MemoryNetwork;
  let storage: MemoryStorage;
  let manager: SandboxManager;
  let seq = 0;

  const params = (memoryMb = 256): CreateParams => ({
    id: `s${++seq}`,
    template: "minimal",
    vcpus: 1,
    memoryMb,
    diskSizeMb: 64,
    timeoutSec: 0,
    envVars: {},
  });

  /** Waits until `check` holds (the standbys start in the background). */
  async function until(check: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 600 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(check(), what);
  }

  const standbyDirs = async () =>
    (await readdir(join(root, "run")).catch((): string[] => [])).filter((d) =>
      d.startsWith("standby-"),
    );

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "wrenn-standby-unit-"));
    envd = await startStandInEnvd(faults);
  });

  after(async () => {
    await envd.close();
    await rm(root, { recursive: true, force: true });
  });

  beforeEach(async () => {
    faults.clear();
    await manager?.close();
    vmm = new MemoryVmm(faults);
    network = new MemoryNetwork(faults, envd.address);
    await rm(join(root, "data"), { recursive: true, force: true });
    await rm(join(root, "run"), { recursive: true, force: true });
    storage = new MemoryStorage(faults);
    await startManager(1);
  });

  /** An agent on this test's drivers and data dir (adopting what the last one left). */
  async function startManager(standbyVmms: number): Promise<void> {
    manager = new SandboxManager({
      dataDir: join(root, "data"),
      runRoot: join(root, "run"),
      vmm,
      storage,
      network,
      images: await memoryImages(join(root, "images")),
      log,
      bootSnapshotDir: null,
      restoreTimeoutMs: 2000,
      standbyVmms,
    });
    await manager.start();
  }

  /** A sandbox, paused, with a standby started for its resume. */
  async function pausedWithStandby(memoryMb = 256): Promise<string> {
    const p = params(memoryMb);
    await manager.create(p);
    await manager.pause(p.id);
    await until(() => vmm.standbys.size === 1, "a pause starts a standby VMM");
    return p.id;
  }

  /** A sandbox, paused, whose standby's VMM is starting until `start` or `fail` is called. */
  async function pausedWhileStandbyStarts() {
    let start!: () => void;
    let fail!: (err: Error) => void;
    vmm.standbyGate = new Promise<void>((resolve, reject) => {
      start = resolve;
      fail = reject;
    });
    const p = params();
    await manager.create(p);
    await manager.pause(p.id);
    await until(() => network.held.size === 1, "the starting standby holds a slot");
    return {
      id: p.id,
      start: () => {
        start();
        vmm.standbyGate = null;
      },
      fail: (err: Error) => {
        fail(err);
        vmm.standbyGate = null;
      },
    };
  }

  test("a pause starts a standby on a slot of its own; the resume runs the sandbox in it, on its slot, and starts the next", async () => {
    const id = await pausedWithStandby();
    const [standby] = [...vmm.standbys.values()];
    assert.ok(standby);
    await until(() => network.held.size === 1, "the sandbox's slot is torn down");
    const slot = [...network.held][0];
    await manager.resume(id);
    assert.deepEqual(vmm.restoredInto, [standby.vmId]);
    assert.equal(manager.get(id).record.vm?.vmId, standby.vmId, "the record names the VM");
    assert.equal(manager.get(id).record.slotIndex, slot, "the sandbox runs on the standby's slot");
    assert.ok(network.held.has(slot!));
    assert.ok((await readdir(join(root, "run"))).includes(id));
    assert.ok(!(await standbyDirs()).includes(standby.vmId), "its run dir became the sandbox's");
    // A second after the resume, the next for the machine starts, on a slot
    // of its own: a resume right after the next pause finds it ready.
    await until(
      () => vmm.standbys.size === 1 && network.held.size === 2,
      "the resume starts the next standby",
    );
    const [next] = [...vmm.standbys.keys()];
    await manager.pause(id);
    assert.equal(vmm.standbys.size, 1, "the pause starts no second one for the same machine");
    await manager.resume(id);
    assert.deepEqual(
      vmm.restoredInto,
      [standby.vmId, next],
      "the resume right after the pause took it",
    );
    // A destroy leaves only the standby that follows; the agent's close stops it.
    await manager.destroy(id);
    await until(() => vmm.standbys.size === 1, "the last resume starts the next standby");
    await manager.close();
    assert.deepEqual([...vmm.running], []);
    assert.equal(vmm.standbys.size, 0);
    await until(() => network.held.size === 0, "no slot is left");
    assert.deepEqual(await standbyDirs(), []);
  });

  test("a resume in the standby's second of waiting starts its own VMM; the next resume takes the standby", async () => {
    const p = params();
    await manager.create(p);
    await manager.pause(p.id);
    await manager.resume(p.id);
    assert.deepEqual(vmm.restoredInto, [], "the resume did not wait for the standby");
    await until(() => vmm.standbys.size === 1, "the standby is ready");
    await manager.pause(p.id);
    await manager.resume(p.id);
    assert.equal(vmm.restoredInto.length, 1, "the next resume took it");
    await manager.destroy(p.id);
  });

  test("a resume while the standby's VMM is starting waits for it and runs in it", async () => {
    const standby = await pausedWhileStandbyStarts();
    const resumed = manager.resume(standby.id);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(manager.get(standby.id).record.status, "paused", "the resume waits for it");
    standby.start();
    await resumed;
    assert.equal(vmm.restoredInto.length, 1, "it runs in the standby");
    assert.equal(network.held.size, 1, "on the standby's slot, none of its own");
    await manager.destroy(standby.id);
  });

  test("a standby whose VMM is slow to start is not waited for long: the resume starts its own, and the standby is stopped once started", async () => {
    const standby = await pausedWhileStandbyStarts();
    await manager.resume(standby.id);
    assert.deepEqual(vmm.restoredInto, [], "its own VMM");
    standby.start();
    await until(() => network.held.size === 1, "the late standby's slot is freed");
    assert.equal(vmm.standbys.size, 0, "and it is stopped");
    assert.deepEqual(await standbyDirs(), [], "its run dir removed");
    await manager.destroy(standby.id);
  });

  test("a standby whose VMM fails to start while a resume waits for it leaves nothing; the resume starts its own VMM", async () => {
    const standby = await pausedWhileStandbyStarts();
    const resumed = manager.resume(standby.id);
    await new Promise((r) => setTimeout(r, 100));
    standby.fail(new Error("QEMU did not start"));
    await resumed;
    assert.equal(manager.get(standby.id).record.status, "running");
    assert.deepEqual(vmm.restoredInto, [], "its own VMM");
    assert.equal(network.held.size, 1, "the failed standby's slot is freed");
    assert.deepEqual(await standbyDirs(), [], "and its run dir");
    await manager.destroy(standby.id);
  });

  test("a standby that dies waiting gives back its slot and run dir; the resume starts its own VMM", async () => {
    const id = await pausedWithStandby();
    await until(() => network.held.size === 1, "the sandbox's slot is torn down");
    [...vmm.standbys.values()][0]?.crash();
    await until(() => network.held.size === 0, "the dead standby's slot is freed");
    assert.deepEqual(await standbyDirs(), []);
    await manager.resume(id);
    assert.deepEqual(vmm.restoredInto, [], "no standby was there to take");
    assert.equal(manager.get(id).record.status, "running");
    await manager.destroy(id);
    await until(() => network.held.size === 0, "no slot is left");
  });

  test("a standby that fails to start leaves nothing; the resume starts its own VMM", async () => {
    faults.arm("vmm.startStandby");
    const p = params();
    await manager.create(p);
    await manager.pause(p.id);
    await until(() => network.held.size === 0, "the failed standby's slot is freed");
    assert.deepEqual(await standbyDirs(), []);
    await manager.resume(p.id);
    assert.equal(manager.get(p.id).record.status, "running");
    await manager.destroy(p.id);
  });

  test("a resume into a standby that fails leaves the sandbox paused, frees the slot once, and the next resume works", async () => {
    const id = await pausedWithStandby();
    await until(() => network.held.size === 1, "the sandbox's slot is torn down");
    faults.arm("vmm.restore");
    await assert.rejects(manager.resume(id));
    assert.equal(manager.get(id).record.status, "paused", "its saved state is kept");
    assert.equal(vmm.restoredInto.length, 1, "the resume took the standby");
    // The next for its machine starts, for the retry: the failed
    // one's slot and run dir went with the failed resume.
    await until(() => vmm.standbys.size === 1, "the failed resume starts the next standby");
    assert.equal(network.held.size, 1, "only the next standby holds a slot");
    assert.deepEqual(await readdir(join(root, "run")), await standbyDirs(), "no other run dir");
    await manager.resume(id);
    assert.equal(manager.get(id).record.status, "running");
    assert.equal(vmm.restoredInto.length, 2, "the retry took the next standby");
    await manager.destroy(id);
  });

  test("a pause of another machine replaces the standby; a resume of the first starts its own VMM", async () => {
    const small = await pausedWithStandby(256);
    const first = [...vmm.standbys.keys()];
    const big = params(512);
    await manager.create(big);
    await manager.pause(big.id);
    await until(
      () => vmm.standbys.size === 1 && !vmm.standbys.has(first[0] ?? ""),
      "the 512 MiB pause's standby replaced the 256 MiB one's",
    );
    await until(() => network.held.size === 1, "the replaced standby's slot is freed");
    await manager.resume(small);
    assert.deepEqual(vmm.restoredInto, [], "no standby for its machine");
    await manager.resume(big.id);
    assert.equal(vmm.restoredInto.length, 1);
    await manager.destroy(small);
    await manager.destroy(big.id);
  });

  test("with room for two, one machine's resumes in quick succession each take one; another machine's pause takes the oldest's place", async () => {
    await manager.close();
    await startManager(2);
    const id = await pausedWithStandby();
    await manager.resume(id);
    // The resume's next and this pause's fill both places for the one machine.
    await manager.pause(id);
    await until(() => vmm.standbys.size === 2, "two standbys for the one machine");
    await manager.resume(id);
    await manager.pause(id);
    await manager.resume(id);
    assert.equal(vmm.restoredInto.length, 3, "each resume in quick succession took one");
    await until(() => vmm.standbys.size === 2, "the takes start the next two");
    const small = [...vmm.standbys.values()].map((s) => s.key);
    const big = params(512);
    await manager.create(big);
    await manager.pause(big.id);
    await until(
      () => [...vmm.standbys.values()].some((s) => s.key !== small[0]),
      "the 512 MiB pause's standby starts",
    );
    assert.equal(vmm.standbys.size, 2, "in the oldest's place");
    await until(() => network.held.size === 3, "the replaced one's slot is freed");
    await manager.resume(big.id);
    assert.equal(vmm.restoredInto.length, 4, "the 512 MiB resume took its own");
    await manager.destroy(id);
    await manager.destroy(big.id);
  });

  test("a create from a template starts a standby for its machine, but only in a free place", async () => {
    for (const [name, memoryMb] of [
      ["big", 512],
      ["small", 256],
    ] as const) {
      const p = params(memoryMb);
      await manager.create(p);
      await manager.createSnapshot(p.id, name, false);
      await manager.destroy(p.id);
    }
    await manager.close();
    await startManager(1);
    // The next agent has none: a create from a template starts one.
    const clone = { ...params(), template: "big" };
    await manager.create(clone);
    await until(() => vmm.standbys.size === 1, "the create starts a standby for its machine");
    const [spare] = [...vmm.standbys.keys()];
    await manager.pause(clone.id);
    assert.deepEqual([...vmm.standbys.keys()], [spare], "the pause finds it; it starts none");
    await manager.resume(clone.id);
    assert.deepEqual(vmm.restoredInto, [spare], "its first resume runs in it");
    await until(() => vmm.standbys.size === 1, "the take starts the next");
    const [next] = [...vmm.standbys.keys()];
    // Another machine's create does not replace the one kept.
    await manager.create({ ...params(), template: "small" });
    await new Promise((r) => setTimeout(r, 1300));
    assert.deepEqual([...vmm.standbys.keys()], [next]);
  });

  test("destroying every sandbox (the agent's shutdown, before it removes the host's rules) stops the standbys, and the one a resume is about to start", async () => {
    const id = await pausedWithStandby();
    await manager.resume(id);
    await manager.destroyAll();
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(vmm.standbys.size, 0, "no standby starts after it");
    assert.deepEqual([...vmm.running], []);
    assert.deepEqual([...network.held], []);
    assert.deepEqual(await standbyDirs(), []);
  });

  test("closing the agent before a standby's start (a second after its pause) starts none", async () => {
    const p = params();
    await manager.create(p);
    await manager.pause(p.id);
    await manager.close();
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(vmm.standbys.size, 0);
    assert.deepEqual([...network.held], []);
    assert.deepEqual(await standbyDirs(), []);
  });

  test("closing the agent stops the standbys and frees their slots", async () => {
    const id = await pausedWithStandby();
    await until(() => network.held.size === 1, "the sandbox's slot is torn down");
    await manager.close();
    assert.equal(vmm.standbys.size, 0);
    assert.deepEqual([...network.held], []);
    assert.deepEqual(await standbyDirs(), []);
    // The next agent resumes it without one.
    await startManager(0);
    await manager.resume(id);
    assert.deepEqual(vmm.restoredInto, []);
    await manager.destroy(id);
  });
});
