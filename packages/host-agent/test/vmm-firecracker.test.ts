import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test, type TestContext } from "node:test";
import { runCommand } from "@wrenn/shared/command.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { dataDir, findKernel, findTemplate } from "../src/image/store.ts";
import {
  FirecrackerApi,
  FirecrackerApiError,
  type ApiRequest,
} from "../src/vmm/firecracker/api.ts";
import { FirecrackerDriver, STABLE_DIR, STABLE_ROOTFS } from "../src/vmm/firecracker/driver.ts";
import { onPath } from "../src/vmm/select.ts";
import type {
  FirecrackerBootSpec as BootSpec,
  FirecrackerVm as VmHandle,
} from "../src/vmm/firecracker/driver.ts";

const DOUBLE = new URL("./fixtures/firecracker-double.ts", import.meta.url).pathname;
const MAC = "02:fc:00:00:00:05";

/** A real Firecracker runs these same tests when it is installed and KVM works. */
const realFirecracker = (await onPath("firecracker")) !== null;
const skipReason =
  process.getuid?.() !== 0
    ? "needs root (network and mount namespaces)"
    : spawnSync("sh", ["-c", "command -v unshare"]).status !== 0
      ? "unshare (util-linux) missing"
      : null;

function skipLoudly(t: TestContext, extra?: string): boolean {
  const reason = skipReason ?? extra;
  if (!reason) return false;
  console.warn(`\n!!! SKIPPING FIRECRACKER VMM TEST: ${reason}\n`);
  t.skip(reason);
  return true;
}

/** Command lines of live processes containing `needle` (read from /proc: no procps needed). */
function processesMatching(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
      if (cmd.includes(needle)) found.push(`${pid} ${cmd}`);
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

let work = "";
let ns = "";
let kernel = "";
let initrd = "";
let baseDisk = "";
const savedPath = process.env.PATH;

before(async () => {
  work = await mkdtemp(join(tmpdir(), `wrenn-fc-${process.pid}-`));
  if (skipReason) return;
  // Work directories of killed runs (their after() never ran).
  for (const dir of readdirSync(tmpdir())) {
    const m = /^wrenn-fc-(\d+)-/.exec(dir);
    if (m && spawnSync("kill", ["-0", m[1] ?? ""]).status !== 0) {
      await rm(join(tmpdir(), dir), { recursive: true, force: true });
    }
  }
  if (realFirecracker) {
    const data = dataDir();
    const k = await findKernel(data);
    kernel = k.vmlinux;
    initrd = k.initrd;
    baseDisk = (await findTemplate(data, "minimal")).rootfs;
  } else {
    // The double only opens files: any will do.
    kernel = join(work, "vmlinux");
    initrd = join(work, "initrd.img");
    baseDisk = join(work, "base.ext4");
    await Promise.all([
      writeFile(kernel, "kernel"),
      writeFile(initrd, "initrd"),
      writeFile(baseDisk, ""),
    ]);
    const bin = join(work, "bin");
    await mkdir(bin);
    await writeFile(
      join(bin, "firecracker"),
      `#!/bin/sh\nexec '${process.execPath}' '${DOUBLE}' "$@"\n`,
    );
    await chmod(join(bin, "firecracker"), 0o755);
    process.env.PATH = `${bin}:${savedPath}`;
  }
  // Namespaces of killed runs (their after() never ran).
  const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
  for (const m of list.matchAll(/^wrenn-fct-(\d+)/gm)) {
    if (spawnSync("kill", ["-0", m[1] ?? ""]).status !== 0) {
      await runCommand("ip", ["netns", "del", m[0]]).catch(() => undefined);
    }
  }
  ns = `wrenn-fct-${process.pid}`;
  await runCommand("ip", ["netns", "add", ns]);
  await runCommand("ip", ["netns", "exec", ns, "ip", "tuntap", "add", "tap0", "mode", "tap"]);
  await runCommand("ip", ["netns", "exec", ns, "ip", "link", "set", "tap0", "up"]);
});

after(async () => {
  process.env.PATH = savedPath;
  if (ns) await runCommand("ip", ["netns", "del", ns]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
  assert.equal(
    spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout.includes(ns || "\0"),
    false,
    "test namespace leaked",
  );
});

let seq = 0;
async function spec(extra: Partial<BootSpec> = {}): Promise<BootSpec> {
  const vmId = `fc${process.pid}x${++seq}`;
  const runDir = join(work, vmId);
  await mkdir(runDir);
  const disk = join(work, `${vmId}.disk`);
  await runCommand("cp", ["--sparse=always", baseDisk, disk]);
  return {
    vmId,
    vcpus: 1,
    memoryMb: 128,
    kernelPath: kernel,
    initrdPath: initrd,
    bootArgs: "console=ttyS0 reboot=k panic=1 pci=off",
    rootfs: { path: disk, format: "raw" },
    tapName: "tap0",
    guestMac: MAC,
    netns: ns,
    runDir,
    ...extra,
  };
}

async function assertNoLeaks(s: BootSpec): Promise<void> {
  const procs = processesMatching(`${s.vmId}.fc.sock`).join("\n");
  assert.equal(procs, "", "VMM process left behind");
  assert.deepEqual(await readdir(s.runDir), [], "files left in the run directory");
  const mounts = await readFile("/proc/self/mounts", "utf8");
  assert.ok(!mounts.includes(STABLE_DIR), "the per-VM rootfs mount leaked into the host");
}

function tracer() {
  const calls: ApiRequest[] = [];
  const driver = new FirecrackerDriver({ trace: (_vm, req) => calls.push(req) });
  return { calls, driver, take: () => calls.splice(0) };
}

test("firecracker: boot, pause, Full and Diff snapshots — exact API calls", async (t) => {
  if (skipLoudly(t)) return;
  const { driver, take } = tracer();
  const s = await spec({ trackDirtyPages: true });
  let vm: VmHandle | null = null;
  try {
    vm = await driver.boot(s);
    assert.deepEqual(take(), [
      {
        method: "PUT",
        path: "/boot-source",
        body: { kernel_image_path: kernel, boot_args: s.bootArgs, initrd_path: initrd },
      },
      {
        method: "PUT",
        path: "/drives/rootfs",
        body: {
          drive_id: "rootfs",
          path_on_host: STABLE_ROOTFS,
          is_root_device: true,
          is_read_only: false,
        },
      },
      {
        method: "PUT",
        path: "/machine-config",
        body: { vcpu_count: 1, mem_size_mib: 128, smt: false, track_dirty_pages: true },
      },
      {
        method: "PUT",
        path: "/network-interfaces/eth0",
        body: { iface_id: "eth0", host_dev_name: "tap0", guest_mac: MAC },
      },
      { method: "PUT", path: "/actions", body: { action_type: "InstanceStart" } },
    ]);
    // The stable path exists only inside the VM's own mount namespace.
    assert.equal(await readlink(`/proc/${vm.pid}/root${STABLE_ROOTFS}`), s.rootfs.path);
    const netnsOfVm = await readlink(`/proc/${vm.pid}/ns/net`);
    assert.notEqual(
      netnsOfVm,
      await readlink("/proc/self/ns/net"),
      "VMM not in the slot namespace",
    );

    await assert.rejects(
      vm.snapshot({ statePath: join(work, "x.state"), memPath: join(work, "x.mem") }, "full"),
      (err: unknown) => err instanceof FirecrackerApiError && /paused/i.test(err.message),
      "snapshot while running must fail with Firecracker's message",
    );
    take();

    const full = {
      statePath: join(work, `${s.vmId}.full.state`),
      memPath: join(work, `${s.vmId}.full.mem`),
    };
    const diff = {
      statePath: join(work, `${s.vmId}.diff.state`),
      memPath: join(work, `${s.vmId}.diff.mem`),
    };
    await vm.pause();
    await vm.snapshot(full, "full");
    await vm.resume();
    await vm.pause();
    await vm.snapshot(diff, "diff");
    assert.deepEqual(take(), [
      { method: "PATCH", path: "/vm", body: { state: "Paused" } },
      {
        method: "PUT",
        path: "/snapshot/create",
        body: { snapshot_type: "Full", snapshot_path: full.statePath, mem_file_path: full.memPath },
      },
      { method: "PATCH", path: "/vm", body: { state: "Resumed" } },
      { method: "PATCH", path: "/vm", body: { state: "Paused" } },
      {
        method: "PUT",
        path: "/snapshot/create",
        body: { snapshot_type: "Diff", snapshot_path: diff.statePath, mem_file_path: diff.memPath },
      },
    ]);
    for (const f of [full.statePath, full.memPath, diff.statePath, diff.memPath]) {
      assert.ok((await stat(f)).size > 0, `${f} not written`);
    }
    await vm.stop();
    await vm.stop(); // idempotent
    vm = null;
    await assertNoLeaks(s);
  } finally {
    await vm?.stop();
  }
});

test("firecracker: restore through the Uffd backend on another disk, then Diff again", async (t) => {
  if (
    skipLoudly(t, realFirecracker ? "needs the uffd page server to serve a real VM" : undefined)
  ) {
    return;
  }
  const { driver, take } = tracer();
  const s = await spec({ trackDirtyPages: true });
  const files = { statePath: join(work, `${s.vmId}.state`), memPath: join(work, `${s.vmId}.mem`) };
  let vm: VmHandle | null = await driver.boot(s);
  await vm.pause();
  await vm.snapshot(files, "full");
  await vm.stop();
  take();

  // The page server: Firecracker connects once and sends the guest memory regions.
  const uffdSocket = join(work, `${s.vmId}.uffd`);
  const received: string[] = [];
  const server = createServer((c) => {
    let text = "";
    c.on("data", (b: Buffer) => (text += b.toString("utf8")));
    c.on("end", () => received.push(text));
  });
  await new Promise<void>((resolve) => server.listen(uffdSocket, resolve));
  const s2 = await spec({ trackDirtyPages: true });
  try {
    vm = await driver.restoreFiles({ ...s2, snapshot: files, uffdSocket });
    assert.deepEqual(take(), [
      {
        method: "PUT",
        path: "/snapshot/load",
        body: {
          snapshot_path: files.statePath,
          mem_backend: { backend_type: "Uffd", backend_path: uffdSocket },
          track_dirty_pages: true,
          resume_vm: true,
        },
      },
    ]);
    await new Promise((r) => setTimeout(r, 50));
    const regions = JSON.parse(received[0] ?? "[]") as { size: number; page_size: number }[];
    assert.equal(
      regions[0]?.size,
      128 * 1024 * 1024,
      "the page server did not get the memory regions",
    );
    // The snapshot names the stable path; in this VM's namespace it is the new disk.
    assert.equal(await readlink(`/proc/${vm.pid}/root${STABLE_ROOTFS}`), s2.rootfs.path);

    await vm.pause();
    await vm.snapshot({ statePath: `${files.statePath}.2`, memPath: `${files.memPath}.2` }, "diff");
    await vm.stop();
    vm = null;
    await assertNoLeaks(s2);
  } finally {
    await vm?.stop();
    server.close();
  }
});

test("firecracker: fault responses become clear errors and leave nothing behind", async (t) => {
  if (skipLoudly(t)) return;
  const driver = new FirecrackerDriver();
  const s = await spec();
  await assert.rejects(
    driver.boot({ ...s, kernelPath: join(work, "no-such-vmlinux") }),
    (err: unknown) => {
      assert.ok(err instanceof FirecrackerApiError);
      assert.equal(err.code, "failed_precondition");
      assert.match(err.message, /^firecracker PUT \/boot-source: .*no-such-vmlinux/);
      return true;
    },
  );
  await assertNoLeaks(s);

  // Without dirty-page tracking a Diff is refused before Firecracker is asked.
  const vm = await driver.boot({ ...s, trackDirtyPages: false });
  try {
    await vm.pause();
    await assert.rejects(
      vm.snapshot({ statePath: join(work, "d.state"), memPath: join(work, "d.mem") }, "diff"),
      (err: unknown) =>
        isWrennError(err, "failed_precondition") && /trackDirtyPages/.test(err.message),
    );
  } finally {
    await vm.stop();
  }
  await assertNoLeaks(s);
});

test("firecracker: the VMM dying mid-boot is a clean error", async (t) => {
  if (skipLoudly(t, realFirecracker ? "cannot make a real Firecracker crash on cue" : undefined))
    return;
  const driver = new FirecrackerDriver();
  const s = await spec();
  process.env.WRENN_FC_DOUBLE_EXIT_ON = "PUT /actions";
  try {
    await assert.rejects(
      driver.boot(s),
      /firecracker exited during boot \(exit 7\).*dying on PUT \/actions/s,
    );
  } finally {
    delete process.env.WRENN_FC_DOUBLE_EXIT_ON;
  }
  await assertNoLeaks(s);
});

test("firecracker: adopt after an agent restart; kill -9 resolves exited", async (t) => {
  if (skipLoudly(t)) return;
  const s = await spec({ trackDirtyPages: true });
  const first = new FirecrackerDriver();
  const vm = await first.boot(s);
  const record = first.record(vm);
  try {
    const { driver, take } = tracer();
    // A booted VM has no page server: the driver hands back the VM itself.
    const adopted = (await driver.adopt(record)) as VmHandle | null;
    assert.ok(adopted);
    assert.deepEqual(take(), [{ method: "GET", path: "/vm/config" }]);
    await adopted.pause();
    await adopted.snapshot(
      { statePath: join(work, `${s.vmId}.a.state`), memPath: join(work, `${s.vmId}.a.mem`) },
      "diff",
    );
    process.kill(adopted.pid, "SIGKILL");
    await adopted.exited;
    await vm.exited;
    assert.equal(await driver.adopt(record), null, "a dead VM was adopted");
  } finally {
    await vm.stop();
  }
  await assertNoLeaks(s);
});

test("firecracker double: enforces the documented request order", async (t) => {
  if (skipLoudly(t, realFirecracker ? "checks the double itself" : undefined)) return;
  const sock = join(work, "order.sock");
  const child = spawn("firecracker", ["--api-sock", sock], { stdio: "ignore" });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  try {
    await FirecrackerApi.waitReady(sock, { timeoutMs: 10_000 });
    const api = new FirecrackerApi(sock);
    const fault = async (p: Promise<unknown>, re: RegExp) =>
      assert.rejects(
        p,
        (err: unknown) =>
          err instanceof FirecrackerApiError && err.status === 400 && re.test(err.faultMessage),
      );
    await fault(api.call("PUT", "/actions", { action_type: "InstanceStart" }), /kernel/);
    await fault(api.call("PATCH", "/vm", { state: "Paused" }), /Cannot move/);
    await fault(api.call("PUT", "/machine-config", { mem_size_mib: 128 }), /vcpu_count/);
    await api.call("PUT", "/boot-source", { kernel_image_path: kernel, boot_args: "" });
    await fault(api.call("PUT", "/actions", { action_type: "InstanceStart" }), /root block device/);
    await fault(
      api.call("PUT", "/snapshot/load", {
        snapshot_path: "/nonexistent",
        mem_backend: { backend_type: "File", backend_path: "/nonexistent" },
      }),
      /not allowed after configuring/,
    );
    // A failed load ends the process, as Firecracker's does.
    assert.equal(await exited, 1);
  } finally {
    child.kill("SIGKILL");
    await rm(sock, { force: true });
  }
});
