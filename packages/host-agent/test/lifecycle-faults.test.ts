/**
 * The pause rules under real faults, on real VMs: the VMM dying in the middle
 * of a snapshot, and the disk filling up while the memory is written.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, readlink, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { SandboxState } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { runCommand } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { dataDir as imageDataDir } from "../src/image/store.ts";
import { selectVmm } from "../src/vmm/select.ts";
import type { VmmDriver } from "../src/vmm/vmm.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import { driverWith } from "./vmm-wrap.ts";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";
import { Code } from "@connectrpc/connect";

const skip = vmSkipReason("pause fault-injection tests");

/** Sandboxes whose next snapshot finds their VMM killed first. */
const crashOnSnapshot = new Set<string>();
/** Sandboxes whose next restore leaves the VM alive but frozen: envd never answers. */
const hangOnRestore = new Set<string>();
/** Sandboxes whose next restore runs the guest with envd out of the agent's reach. */
const envdUnreachable = new Set<string>();

/** The real driver, with fault hooks on saving memory and on restoring. */
function faulty(real: VmmDriver): VmmDriver {
  return driverWith(real, {
    saveMemory: async (vm, save) => {
      if (crashOnSnapshot.has(vm.vmId)) {
        process.kill(vm.pid, "SIGKILL");
        await vm.exited;
      }
      return real.saveMemory(vm, save);
    },
    restore: async (spec) => {
      const vm = await real.restore(spec);
      if (hangOnRestore.has(spec.vmId)) process.kill(vm.pid, "SIGSTOP");
      if (envdUnreachable.has(spec.vmId)) {
        // The guest runs on; only the agent's packets to it are dropped, in
        // the slot's namespace (which the failed resume removes).
        const rules = `table inet fault {\n chain block {\n  type filter hook forward priority -10\n  tcp dport ${ENVD_PORT} drop\n }\n}\n`;
        await runCommand("ip", ["netns", "exec", spec.netns, "nft", "-f", "-"], { input: rules });
      }
      return vm;
    },
  });
}

const h = new AgentHarness("wf");

async function sha256(path: string): Promise<string> {
  return (await runCommand("sha256sum", [path])).stdout.split(" ")[0] ?? "";
}

async function state(id: string): Promise<SandboxState | undefined> {
  return (await h.client.listSandboxes({})).sandboxes.find((s) => s.sandboxId === id)?.state;
}

describe("pause failure rules", { skip, concurrency: false }, () => {
  before(async () => {
    await h.setUp();
    const real = await selectVmm({
      dataDir: h.root,
      log: createLogger("host-agent", "warn"),
    });
    // Booted sandboxes: their RAM file is the memory snapshot, so a full
    // filesystem under the pause folder fails the pause in the agent. (A
    // clone's RAM is streamed by QEMU, which runs in the slot's mount
    // namespace and does not see a tmpfs mounted after it started.)
    h.configure({ vmmDriver: faulty(real), restoreTimeoutMs: 4000, bootSnapshots: false });
    await h.start();
  });
  after(() => h.tearDown());

  test("the VMM crashing during the snapshot: pause fails, the sandbox is failed, nothing leaks", async () => {
    const id = h.newId();
    await h.create(id);
    crashOnSnapshot.add(id);
    const err = await h.client.pauseSandbox({ sandboxId: id }).catch((e: unknown) => e);
    assert.ok(connectCode(err) !== undefined, `pause should fail, got ${String(err)}`);
    let s = await state(id);
    for (let i = 0; i < 50 && s !== SandboxState.FAILED; i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = await state(id);
    }
    assert.equal(s, SandboxState.FAILED);
    await h.client.destroySandbox({ sandboxId: id });
    crashOnSnapshot.delete(id);
    await h.noLeaks();
  });

  test("the disk full while writing memory: vCPUs resume, the sandbox keeps running, a later pause works", async () => {
    const id = h.newId();
    await h.create(id);
    const keep = join(h.root, "data", "sandboxes", id, "paused");
    await mkdir(keep, { recursive: true });
    // A 1 MiB filesystem where the pause writes the memory: a real ENOSPC.
    await runCommand("mount", ["-t", "tmpfs", "-o", "size=1m", "wrenn-full", keep]);
    try {
      await h.sh(id, "echo alive > /home/user/f");
      const err = await h.client.pauseSandbox({ sandboxId: id }).catch((e: unknown) => e);
      assert.ok(connectCode(err) !== undefined, `pause should fail, got ${String(err)}`);
      assert.equal(await state(id), SandboxState.RUNNING);
      assert.equal((await h.sh(id, "cat /home/user/f")).stdout, "alive\n");
    } finally {
      await runCommand("umount", [keep]);
    }
    await h.client.pauseSandbox({ sandboxId: id });
    await h.client.resumeSandbox({ sandboxId: id });
    assert.equal((await h.sh(id, "cat /home/user/f")).stdout, "alive\n");
    await h.client.destroySandbox({ sandboxId: id });
    await h.noLeaks();
  });

  test("a resumed guest that never answers: resume fails, the sandbox stays paused, a retry works", async () => {
    const id = h.newId();
    await h.create(id);
    await h.sh(id, "echo kept > /home/user/f; sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/pid");
    await h.client.pauseSandbox({ sandboxId: id });
    hangOnRestore.add(id);
    const err = await h.client.resumeSandbox({ sandboxId: id }).catch((e: unknown) => e);
    hangOnRestore.delete(id);
    assert.equal(connectCode(err), Code.Unavailable, String(err));
    assert.equal(await state(id), SandboxState.PAUSED);
    await h.client.resumeSandbox({ sandboxId: id });
    assert.equal((await h.sh(id, "cat /home/user/f")).stdout, "kept\n");
    assert.equal((await h.sh(id, 'kill -0 "$(cat /tmp/pid)" && echo alive')).stdout, "alive\n");
    await h.client.destroySandbox({ sandboxId: id });
    await h.noLeaks();
  });

  test("a resume failing after its guest ran and wrote leaves the paused disk as it was", async () => {
    const id = h.newId();
    await h.create(id);
    // Writes to the disk all the time, as a busy guest does the moment it runs.
    await h.sh(
      id,
      "(i=0; while :; do i=$((i+1)); echo $i >> /home/user/ticks; sync; sleep 0.1; done) >/dev/null 2>&1 &",
    );
    await h.sh(id, "sleep 1");
    await h.client.pauseSandbox({ sandboxId: id });
    const kept = h.agent.manager.get(id).record.disk?.path ?? "";
    const before = await sha256(kept);
    envdUnreachable.add(id);
    const err = await h.client.resumeSandbox({ sandboxId: id }).catch((e: unknown) => e);
    envdUnreachable.delete(id);
    assert.equal(connectCode(err), Code.Unavailable, String(err));
    assert.equal(await state(id), SandboxState.PAUSED);
    assert.equal(h.agent.manager.get(id).record.disk?.path, kept);
    assert.equal(await sha256(kept), before, "the failed resume changed the paused disk");
    await h.client.resumeSandbox({ sandboxId: id });
    // The guest goes on from its pause: every tick once, in order, on disk too.
    await h.sh(id, "sleep 1");
    const ticks = (
      await h.sh(id, "sync; echo 3 > /proc/sys/vm/drop_caches; cat /home/user/ticks")
    ).stdout
      .trim()
      .split("\n")
      .map(Number);
    assert.ok(ticks.length > 10, `ticks: ${ticks.length}`);
    assert.deepEqual(
      ticks,
      ticks.map((_, i) => i + 1),
    );
    await h.client.destroySandbox({ sandboxId: id });
    await h.noLeaks();
  });

  test("without reflinks a clone maps its template's memory privately, and still pauses and resumes", async () => {
    const src = h.newId();
    const name = `plain-${src}`;
    await h.create(src);
    const clone = h.newId();
    try {
      await h.sh(src, "echo template > /home/user/t");
      await h.client.createSnapshot({ sandboxId: src, name });
      await h.create(clone, { template: name });
      await h.sh(clone, "echo mine > /home/user/c");
      await h.client.pauseSandbox({ sandboxId: clone });
      await h.client.resumeSandbox({ sandboxId: clone });
      assert.equal((await h.sh(clone, "cat /home/user/t /home/user/c")).stdout, "template\nmine\n");
    } finally {
      await h.client.destroySandbox({ sandboxId: clone }).catch(() => undefined);
      await h.client.destroySandbox({ sandboxId: src }).catch(() => undefined);
      await h.client.deleteSnapshot({ name }).catch(() => undefined);
    }
    await h.noLeaks();
  });

  test("unknown sandboxes and wrong states are refused without side effects", async () => {
    const pause = await h.client.pauseSandbox({ sandboxId: "nosuch" }).catch((e: unknown) => e);
    assert.equal(connectCode(pause), Code.NotFound);
    const resume = await h.client.resumeSandbox({ sandboxId: "nosuch" }).catch((e: unknown) => e);
    assert.equal(connectCode(resume), Code.NotFound);
    await h.noLeaks();
  });
});

describe("a paused sandbox whose kernel file is gone", { skip, concurrency: false }, () => {
  // Its own image dir: the machine's images, and a copy of its kernel under
  // another version name that the test removes while the sandbox is paused
  // (as a kernel upgrade followed by a clean-up would).
  const k = new AgentHarness("wk");
  let images = "";
  before(async () => {
    await k.setUp();
    const real = imageDataDir();
    images = join(k.root, "images-dir");
    const version = (await readlink(join(real, "kernels", "current"))).replace(/\/+$/, "");
    await mkdir(join(images, "kernels"), { recursive: true });
    await cp(join(real, "kernels", version), join(images, "kernels", "old"), { recursive: true });
    await symlink("old", join(images, "kernels", "current"));
    await symlink(join(real, "images"), join(images, "images"));
    k.configure({ imageDir: images, bootSnapshots: false });
    await k.start();
  });
  after(() => k.tearDown());

  test("resumes with the current kernel", async () => {
    const id = k.newId();
    await k.create(id);
    await k.sh(id, "echo kept > /home/user/f");
    await k.client.pauseSandbox({ sandboxId: id });
    const real = imageDataDir();
    const version = (await readlink(join(real, "kernels", "current"))).replace(/\/+$/, "");
    await rm(join(images, "kernels", "old"), { recursive: true });
    await symlink(join(real, "kernels", version), join(images, "kernels", "new"));
    await rm(join(images, "kernels", "current"));
    await symlink("new", join(images, "kernels", "current"));
    await k.client.resumeSandbox({ sandboxId: id });
    assert.equal((await k.sh(id, "cat /home/user/f")).stdout, "kept\n");
    await k.client.destroySandbox({ sandboxId: id });
    await k.noLeaks();
  });
});
