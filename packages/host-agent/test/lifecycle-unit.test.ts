/**
 * The sandbox lifecycle on in-memory drivers: a failure at each step of
 * create, pause and resume gives back exactly what that step's operation
 * took, keeps saved state, and leaves the sandbox where the rules say
 * (gone, running, paused, or failed with its memory and disk kept). The
 * real-VM tests (lifecycle, lifecycle-faults) check the same on real VMs.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@wrenn/shared/log.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { SandboxManager, type CreateParams } from "../src/sandbox/manager.ts";
import { TemplateStore, type SnapshotMeta } from "../src/sandbox/templates.ts";
import {
  Faults,
  MemoryNetwork,
  MemoryStorage,
  MemoryVmm,
  memoryImages,
  startStandInEnvd,
} from "./in-memory-drivers.ts";

const log = createLogger("test", "silent");

describe("sandbox lifecycle on in-memory drivers", { timeout: 60_000 }, () => {
  let root: string;
  let envd: Awaited<ReturnType<typeof startStandInEnvd>>;
  const faults = new Faults();
  let vmm: MemoryVmm;
  let storage: MemoryStorage;
  let network: MemoryNetwork;
  let manager: SandboxManager;
  let seq = 0;

  const newManager = async () =>
    new SandboxManager({
      dataDir: join(root, "data"),
      runRoot: join(root, "run"),
      vmm,
      storage,
      network,
      images: await memoryImages(join(root, "images")),
      log,
      bootSnapshotDir: null,
      restoreTimeoutMs: 2000,
    });

  /** A new agent on the same drivers and data dir, started (it adopts what the last one left). */
  const startManager = async () => {
    manager = await newManager();
    await manager.start();
  };

  /** Holds the network's slot teardowns open until the returned function is called. */
  const holdTeardowns = (): (() => void) => {
    let open!: () => void;
    network.releaseGate = new Promise((r) => (open = r));
    return () => {
      network.releaseGate = null;
      open();
    };
  };

  /** `step` is still under way 50 ms in; once `release` is called, it ends. */
  async function assertWaitsFor(step: Promise<unknown>, release: () => void, what: string) {
    let ended = false;
    const done = step.then(() => (ended = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(ended, false, what);
    release();
    await done;
  }

  const params = (): CreateParams => ({
    id: `u${++seq}`,
    template: "minimal",
    vcpus: 1,
    memoryMb: 256,
    diskSizeMb: 64,
    timeoutSec: 0,
    envVars: {},
  });

  /** Nothing held by any driver, no record, no run dir. */
  async function assertNothingHeld(): Promise<void> {
    assert.deepEqual([...vmm.running], [], "VMs left running");
    assert.deepEqual([...storage.disks.keys()], [], "disks left");
    assert.deepEqual([...storage.copies], [], "working copies of paused disks left");
    assert.deepEqual([...network.held], [], "network slots left");
    assert.deepEqual(await readdir(join(root, "data", "sandboxes")).catch(() => []), []);
    assert.deepEqual(await readdir(join(root, "run")).catch(() => []), []);
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "wrenn-unit-"));
    envd = await startStandInEnvd(faults);
  });

  after(async () => {
    await envd.close();
    await rm(root, { recursive: true, force: true });
  });

  beforeEach(async () => {
    faults.clear();
    vmm = new MemoryVmm(faults);
    storage = new MemoryStorage(faults);
    network = new MemoryNetwork(faults, envd.address);
    await rm(root + "/data", { recursive: true, force: true });
    await rm(root + "/run", { recursive: true, force: true });
    await startManager();
  });

  test("create, pause, resume, destroy: nothing is left", async () => {
    const p = params();
    const record = await manager.create(p);
    assert.equal(record.status, "running");
    assert.deepEqual([...vmm.running], [p.id]);
    await manager.pause(p.id);
    assert.equal(manager.get(p.id).record.status, "paused");
    assert.deepEqual([...vmm.running], []);
    assert.deepEqual([...network.held], []);
    await manager.resume(p.id);
    assert.equal(manager.get(p.id).record.status, "running");
    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  for (const step of ["network.acquire", "storage.create", "vmm.boot", "envd.init"] as const) {
    test(`a create failing at ${step} gives back everything it took`, async () => {
      faults.arm(step);
      const p = params();
      await assert.rejects(manager.create(p), /injected fault/);
      assert.throws(
        () => manager.get(p.id),
        (err: unknown) => isWrennError(err, "not_found"),
      );
      await assertNothingHeld();
    });
  }

  for (const step of ["storage.attach", "network.acquire", "vmm.restore", "envd.init"] as const) {
    test(`a resume failing at ${step} leaves the sandbox paused, and a retry resumes it`, async () => {
      const p = params();
      await manager.create(p);
      await manager.pause(p.id);
      const keep = join(root, "data", "sandboxes", p.id, "paused");
      faults.arm(step);
      await assert.rejects(manager.resume(p.id), /injected fault|envd/);
      const { record } = manager.get(p.id);
      assert.equal(record.status, "paused");
      assert.equal(storage.disks.get(p.id), keep, "the disk is still in the pause folder");
      assert.ok(!storage.copies.has(p.id), "the resume's working copy is gone");
      assert.deepEqual([...vmm.running], [], "no VM left running");
      assert.deepEqual([...network.held], [], "no slot left held");
      assert.deepEqual((await readdir(keep)).sort(), ["memfile", "state"], "memory kept");
      await manager.resume(p.id);
      assert.equal(manager.get(p.id).record.status, "running");
      await manager.destroy(p.id);
      await assertNothingHeld();
    });
  }

  test("a pause failing before the VM stops leaves it running, vCPUs resumed", async () => {
    const p = params();
    await manager.create(p);
    faults.arm("vmm.saveMemory");
    await assert.rejects(manager.pause(p.id), /injected fault/);
    assert.equal(manager.get(p.id).record.status, "running");
    assert.equal(vmm.vms.get(p.id)?.paused, false, "vCPUs resumed");
    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  test("a pause failing after the VM stopped (storage.detach) keeps its memory and disk, across a restart", async () => {
    const p = params();
    await manager.create(p);
    faults.arm("storage.detach");
    await assert.rejects(manager.pause(p.id), /injected fault/);
    const { record } = manager.get(p.id);
    assert.equal(record.status, "failed");
    assert.match(record.error ?? "", /kept until it is destroyed/);
    assert.ok(storage.disks.has(p.id), "the disk is kept");
    const keep = join(root, "data", "sandboxes", p.id, "paused");
    assert.deepEqual((await readdir(keep)).sort(), ["memfile", "state"]);

    // A restarted agent neither deletes it nor holds its slot.
    await manager.close();
    await startManager();
    assert.equal(manager.get(p.id).record.status, "failed");
    assert.deepEqual((await readdir(keep)).sort(), ["memfile", "state"]);
    assert.deepEqual([...network.held], []);

    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  test("a pause answers before its slot's teardown ends; destroy and close wait for it", async () => {
    const p = params();
    await manager.create(p);
    const [index] = network.held;
    let release = holdTeardowns();
    try {
      await manager.pause(p.id);
      assert.equal(manager.get(p.id).record.status, "paused");
      assert.deepEqual([...network.held], [index], "the slot is still being torn down");

      // A resume meanwhile takes a slot of its own, and pauses again.
      await manager.resume(p.id);
      assert.equal(network.held.size, 2, "the old slot's index is not handed out again yet");
      await manager.pause(p.id);

      await assertWaitsFor(manager.destroy(p.id), release, "destroy waits for the teardowns");
    } finally {
      release();
    }
    await assertNothingHeld();

    // The agent's close waits for them too.
    const q = params();
    await manager.create(q);
    release = holdTeardowns();
    try {
      await manager.pause(q.id);
      await assertWaitsFor(manager.close(), release, "close waits for the teardown");
    } finally {
      release();
    }
    assert.deepEqual([...network.held], []);
    await startManager();
    await manager.destroy(q.id);
    await assertNothingHeld();
  });

  test("a pause whose slot teardown fails is still a pause; a restart frees the slot's index", async () => {
    const p = params();
    await manager.create(p);
    const [index] = network.held;
    faults.arm("network.release");
    await manager.pause(p.id);
    assert.equal(manager.get(p.id).record.status, "paused");
    const keep = join(root, "data", "sandboxes", p.id, "paused");
    assert.deepEqual((await readdir(keep)).sort(), ["memfile", "state"]);
    assert.deepEqual([...network.held], [index], "a failed teardown keeps its index taken");

    await manager.close();
    await startManager();
    assert.deepEqual([...network.held], [], "the restart's cleanup freed it");
    await manager.resume(p.id);
    assert.equal(manager.get(p.id).record.status, "running");
    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  test("a TTL pause that fails keeps the sandbox running; the next pass pauses it", async () => {
    const p = { ...params(), timeoutSec: 1 };
    await manager.create(p);
    faults.arm("vmm.saveMemory");
    await manager.reap(Date.now() + 5000);
    assert.equal(manager.get(p.id).record.status, "running", "not destroyed, not paused");
    await manager.reap(Date.now() + 5000);
    assert.equal(manager.get(p.id).record.status, "paused");
    assert.deepEqual(manager.autoPausedIds(), [p.id]);
    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  test("a VM that dies on its own frees everything and is reported failed", async () => {
    const p = params();
    await manager.create(p);
    vmm.vms.get(p.id)?.crash();
    for (let i = 0; i < 100 && manager.get(p.id).record.status !== "failed"; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const { record } = manager.get(p.id);
    assert.equal(record.status, "failed");
    assert.match(record.error ?? "", /exited unexpectedly/);
    assert.deepEqual([...storage.disks.keys()], []);
    assert.deepEqual([...network.held], []);
    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  test("a sandbox whose VM waits for disk space: its guest requests fail at once with resource_exhausted, and work once it runs on", async () => {
    const p = params();
    await manager.create(p);
    const vm = vmm.vms.get(p.id);
    assert.ok(vm);
    vm.waitsForSpace = true;
    await assert.rejects(
      manager.ping(p.id),
      (e: unknown) =>
        isWrennError(e, "resource_exhausted") && /data disk has space/.test((e as Error).message),
    );
    assert.throws(
      () => manager.guestAddress(p.id),
      (e: unknown) => isWrennError(e, "resource_exhausted"),
    );
    assert.equal(manager.get(p.id).record.status, "running", "still running, only stopped");
    assert.deepEqual(manager.sampleTargets(), [], "no metrics sample asked of it");
    vm.waitsForSpace = false;
    await manager.ping(p.id);
    assert.deepEqual(
      manager.sampleTargets().map((t) => t.record.id),
      [p.id],
    );
    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  test("a restarted agent adopts a VM that waits for disk space, though it does not answer, and resumes it to retry", async () => {
    const p = params();
    await manager.create(p);
    await manager.close();
    const vm = vmm.vms.get(p.id);
    assert.ok(vm);
    // As QEMU holds it: stopped, its guest silent; resumed, it finds no space again.
    vm.waitsForSpace = true;
    vm.paused = true;
    faults.envdDown = true;
    await startManager();
    assert.equal(manager.get(p.id).record.status, "running");
    assert.equal(vm.paused, false, "resumed, to retry its write");
    assert.deepEqual([...vmm.running], [p.id], "its VM is kept");
    faults.envdDown = false;
    vm.waitsForSpace = false;
    await manager.ping(p.id);
    await manager.destroy(p.id);
    await assertNothingHeld();
  });

  test("a restarted agent re-adopts a running VM and removes one that is gone", async () => {
    const alive = params();
    const dead = params();
    await manager.create(alive);
    await manager.create(dead);
    await manager.close();
    vmm.running.delete(dead.id); // died while no agent watched it
    await startManager();
    assert.equal(manager.get(alive.id).record.status, "running");
    assert.throws(
      () => manager.get(dead.id),
      (err: unknown) => isWrennError(err, "not_found"),
    );
    assert.deepEqual(manager.reapedIds(), [dead.id]);
    assert.deepEqual([...network.held], [1], "only the adopted sandbox's slot");
    await manager.destroy(alive.id);
    await assertNothingHeld();
  });
  test("an unreadable record is moved aside with its files, never deleted, and reported", async () => {
    const p = params();
    await manager.create(p);
    await manager.pause(p.id);
    await manager.close();
    const dir = join(root, "data", "sandboxes", p.id);
    await writeFile(join(dir, "record.json"), "{ torn");
    await startManager();
    assert.throws(
      () => manager.get(p.id),
      (err: unknown) => isWrennError(err, "not_found"),
    );
    assert.deepEqual(manager.reapedIds(), [p.id]);
    const aside = (await readdir(join(root, "data", "sandboxes"))).filter((n) =>
      n.startsWith(`.unreadable-${p.id}-`),
    );
    assert.equal(aside.length, 1);
    const kept = join(root, "data", "sandboxes", aside[0] as string, "paused");
    assert.deepEqual((await readdir(kept)).sort(), ["memfile", "state"], "memory kept");
    await rm(join(root, "data", "sandboxes", aside[0] as string), { recursive: true });
    storage.disks.clear(); // the operator's clean-up of the disk it held
  });

  test("a template overwrite cut between its renames: the old template comes back", async () => {
    const store = new TemplateStore(join(root, "templates"));
    const meta = (name: string, sourceSandbox: string): SnapshotMeta => ({
      name,
      vmm: "qemu",
      vcpus: 1,
      memoryMb: 256,
      diskSizeMb: 64,
      baseTemplate: "minimal",
      sourceSandbox,
      envdAccessToken: "",
      createdAtMs: 0,
    });
    const first = await store.begin("t1");
    await writeFile(join(first.dir, "rootfs.ext4"), "first");
    await first.commit(meta("t1", "first"));
    // What a crash right after `rename(target, old)` leaves: no t1, the old one aside,
    // a finished build beside it (pid 2^22+1 is above Linux's pid_max: never alive).
    const dead = 4194305;
    await rename(store.path("t1"), join(root, "templates", `.old-t1-${dead}-1`));
    await mkdir(join(root, "templates", `.building-t1-${dead}-2`));
    await store.cleanupPartial();
    assert.equal((await store.get("t1"))?.sourceSandbox, "first");
    assert.equal(await readFile(join(store.path("t1"), "rootfs.ext4"), "utf8"), "first");
    assert.deepEqual(await readdir(join(root, "templates")), ["t1"]);
  });
});
