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
  rmdir,
  stat,
  writeFile,
} from "node:fs/promises";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { runCommand } from "@wrenn/shared/command.ts";
import { isWrennError } from "@wrenn/shared/errors.ts";
import { detectCgroups, vmLimits, type CgroupDriver } from "../src/cgroup/cgroup.ts";
import { dataDir, findKernel, findTemplate } from "../src/image/store.ts";
import { VMM_UID_BASE, vmmIdentity } from "../src/vmm/confine.ts";
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
const JAILER_DOUBLE = new URL("./fixtures/jailer-double.sh", import.meta.url).pathname;
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
/** The jailer the jailed runs use: the double here, the real one beside a real Firecracker. */
let jailer: string | null = null;
let cgroups: CgroupDriver | null = null;
let vmmUid = -1;
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
    jailer = await onPath("jailer");
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
    // The jailer clears the environment: the crash on cue is baked into a binary of its own.
    await writeFile(
      join(bin, "firecracker-dying"),
      `#!/bin/sh\nWRENN_FC_DOUBLE_EXIT_ON='PUT /actions' exec '${process.execPath}' '${DOUBLE}' "$@"\n`,
    );
    // What the Node double needs inside the chroot, bound read-only by the jailer double.
    const binds = ["/bin", "/lib", "/lib64", "/usr", dirname(process.execPath), dirname(DOUBLE)];
    await writeFile(
      join(bin, "jailer"),
      `#!/bin/sh\nJAILER_DOUBLE_BINDS='${binds.filter((b) => existsSync(b)).join(":")}' exec /bin/sh '${JAILER_DOUBLE}' "$@"\n`,
    );
    for (const f of ["firecracker", "firecracker-dying", "jailer"])
      await chmod(join(bin, f), 0o755);
    process.env.PATH = `${bin}:${savedPath}`;
    jailer = join(bin, "jailer");
  }
  cgroups = await detectCgroups();
  // Cgroups of jailed VMs of killed runs (named by their vmIds, our prefix).
  for (const parent of (cgroups?.dirs("x") ?? []).map((d) => dirname(d))) {
    for (const name of existsSync(parent) ? readdirSync(parent) : []) {
      const m = /^fc(\d+)x\d+$/.exec(name);
      if (m && spawnSync("kill", ["-0", m[1] ?? ""]).status !== 0) {
        await rmdir(join(parent, name)).catch(() => undefined);
      }
    }
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
  // A jailed VM's uid is its namespace's (confine.ts): every VM here runs in this one.
  vmmUid = (await vmmIdentity(ns)).uid;
  assert.ok(vmmUid >= VMM_UID_BASE);
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

/** One of the two ways the driver starts Firecracker: as root in a mount namespace, or jailed. */
interface Mode {
  name: string;
  jailed: boolean;
  driver(opts?: {
    binary?: string;
    trace?: (vm: string, req: ApiRequest) => void;
  }): FirecrackerDriver;
}

const MODES: Mode[] = [
  { name: "unjailed", jailed: false, driver: (o = {}) => new FirecrackerDriver(o) },
  {
    name: "jailed",
    jailed: true,
    driver: (o = {}) => new FirecrackerDriver({ ...o, jailerBinary: jailer }),
  },
];

function jailDirOf(s: BootSpec, exe = "firecracker"): string {
  return join(work, ".jail", exe, s.vmId);
}

async function assertNoLeaks(s: BootSpec, mode: Mode): Promise<void> {
  const procs = [
    ...processesMatching(`${s.vmId}.fc.sock`),
    ...processesMatching(`--id=${s.vmId} `),
  ].join("\n");
  assert.equal(procs, "", "VMM process left behind");
  assert.deepEqual(await readdir(s.runDir), [], "files left in the run directory");
  const mounts = await readFile("/proc/self/mounts", "utf8");
  assert.ok(!mounts.includes(STABLE_DIR), "the per-VM rootfs mount leaked into the host");
  assert.ok(!mounts.includes(work), "a mount under the test's directory leaked");
  if (!mode.jailed) return;
  // What the VM was handed (its disk) is root's again: the next VMM with its uid finds nothing.
  if (existsSync(s.rootfs.path)) {
    assert.equal((await stat(s.rootfs.path)).uid, 0, "the disk stayed the VMM's uid's");
  }
  for (const exe of ["firecracker", "firecracker-dying"]) {
    assert.equal(existsSync(jailDirOf(s, exe)), false, `the jail of ${s.vmId} (${exe}) was left`);
  }
  for (const dir of cgroups?.dirs(s.vmId) ?? []) {
    assert.equal(existsSync(dir), false, `cgroup ${dir} was left`);
  }
}

/** What a jailed VMM must be: the VMM user, no groups, its cgroup with the limits, in its chroot. */
async function assertJailed(pid: number, s: BootSpec): Promise<void> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, "m").exec(status)?.[1] ?? "";
  assert.deepEqual(field("Uid").split(/\s+/).map(Number), [vmmUid, vmmUid, vmmUid, vmmUid]);
  assert.equal(field("Groups").trim(), "", "supplementary groups kept");
  assert.equal(await readlink(`/proc/${pid}/root`), join(jailDirOf(s), "root"));
  // Firecracker opens the sandbox's own disk at the stable path: the same
  // inode, its uid's alone while it runs.
  const disk = await stat(s.rootfs.path);
  assert.equal((await stat(`/proc/${pid}/root${STABLE_ROOTFS}`)).ino, disk.ino);
  assert.equal(disk.uid, vmmUid, "the disk is not the VMM's uid's");
  assert.equal(disk.mode & 0o777, 0o600, "the disk is open to other uids");
  if (!cgroups) {
    console.warn("\n!!! no cgroup controllers on this host: jailed VMs' cgroups not checked\n");
    return;
  }
  const limits = vmLimits({ vcpus: s.vcpus, memoryMb: s.memoryMb, overheadMb: 256 });
  const procCgroups = await readFile(`/proc/${pid}/cgroup`, "utf8");
  assert.match(procCgroups, new RegExp(`/wrenn/${s.vmId}$`, "m"), "not in its own cgroup");
  const read = async (dir: string, file: string) =>
    (await readFile(join(dir, file), "utf8")).trim();
  if (cgroups.version === "v2") {
    const [dir] = cgroups.dirs(s.vmId) as [string];
    assert.equal(await read(dir, "cpu.weight"), String(limits.cpuWeight));
    assert.equal(await read(dir, "memory.max"), String(limits.memoryMaxBytes));
    assert.equal(await read(dir, "pids.max"), String(limits.pidsMax));
    assert.match(await read(dir, "cgroup.procs"), new RegExp(`^${pid}$`, "m"));
  } else {
    const [cpu, memory, pids] = cgroups.dirs(s.vmId) as [string, string, string];
    assert.equal(await read(cpu, "cpu.shares"), String((limits.cpuWeight * 1024) / 100));
    assert.equal(await read(memory, "memory.limit_in_bytes"), String(limits.memoryMaxBytes));
    assert.equal(await read(pids, "pids.max"), String(limits.pidsMax));
    for (const dir of [cpu, memory, pids]) {
      assert.match(await read(dir, "cgroup.procs"), new RegExp(`^${pid}$`, "m"));
    }
  }
}

function tracer(mode: Mode) {
  const calls: ApiRequest[] = [];
  const driver = mode.driver({ trace: (_vm, req) => calls.push(req) });
  return { calls, driver, take: () => calls.splice(0) };
}

for (const mode of MODES) {
  const skipMode = (t: TestContext, extra?: string) =>
    skipLoudly(
      t,
      extra ??
        (mode.jailed && !jailer ? "a real Firecracker is installed without its jailer" : undefined),
    );
  /** Paths as Firecracker is told them: inside its chroot when jailed. */
  const at = (host: string, inJail: string) => (mode.jailed ? inJail : host);

  describe(`firecracker ${mode.name}`, { timeout: 60_000 }, () => {
    test("boot, pause, Full and Diff snapshots — exact API calls", async (t) => {
      if (skipMode(t)) return;
      const { driver, take } = tracer(mode);
      const s = await spec({ trackDirtyPages: true });
      let vm: VmHandle | null = null;
      try {
        vm = await driver.boot(s);
        assert.deepEqual(take(), [
          {
            method: "PUT",
            path: "/boot-source",
            body: {
              kernel_image_path: at(kernel, "/boot/vmlinux"),
              boot_args: s.bootArgs,
              initrd_path: at(initrd, "/boot/initrd"),
            },
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
        if (mode.jailed) {
          await assertJailed(vm.pid, s);
          assert.equal(
            vm.controlSocket,
            join(jailDirOf(s), "root", "run", "firecracker.socket"),
            "the API socket is not the one in the chroot",
          );
        } else {
          // The stable path exists only inside the VM's own mount namespace.
          assert.equal(await readlink(`/proc/${vm.pid}/root${STABLE_ROOTFS}`), s.rootfs.path);
        }
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
        const written = (files: typeof full) =>
          mode.jailed
            ? { snapshot_path: "/snapshot/state", mem_file_path: "/snapshot/memory" }
            : { snapshot_path: files.statePath, mem_file_path: files.memPath };
        assert.deepEqual(take(), [
          { method: "PATCH", path: "/vm", body: { state: "Paused" } },
          {
            method: "PUT",
            path: "/snapshot/create",
            body: { snapshot_type: "Full", ...written(full) },
          },
          { method: "PATCH", path: "/vm", body: { state: "Resumed" } },
          { method: "PATCH", path: "/vm", body: { state: "Paused" } },
          {
            method: "PUT",
            path: "/snapshot/create",
            body: { snapshot_type: "Diff", ...written(diff) },
          },
        ]);
        for (const f of [full.statePath, full.memPath, diff.statePath, diff.memPath]) {
          const st = await stat(f);
          assert.ok(st.size > 0, `${f} not written`);
          assert.equal(st.uid, 0, `${f} not given back to root`);
        }
        if (mode.jailed) {
          assert.deepEqual(
            await readdir(join(jailDirOf(s), "root", "snapshot")),
            [],
            "a pause's files were left in the jail",
          );
        }
        await vm.stop();
        await vm.stop(); // idempotent
        vm = null;
        await assertNoLeaks(s, mode);
      } finally {
        await vm?.stop();
      }
    });

    test("restore through the Uffd backend on another disk, then Diff again", async (t) => {
      if (
        skipMode(t, realFirecracker ? "needs the uffd page server to serve a real VM" : undefined)
      ) {
        return;
      }
      const { driver, take } = tracer(mode);
      const s = await spec({ trackDirtyPages: true });
      const files = {
        statePath: join(work, `${s.vmId}.state`),
        memPath: join(work, `${s.vmId}.mem`),
      };
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
              snapshot_path: at(files.statePath, "/restore/state"),
              mem_backend: { backend_type: "Uffd", backend_path: at(uffdSocket, "/run/uffd.sock") },
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
        if (mode.jailed) await assertJailed(vm.pid, s2);
        else assert.equal(await readlink(`/proc/${vm.pid}/root${STABLE_ROOTFS}`), s2.rootfs.path);

        await vm.pause();
        await vm.snapshot(
          { statePath: `${files.statePath}.2`, memPath: `${files.memPath}.2` },
          "diff",
        );
        await vm.stop();
        vm = null;
        await assertNoLeaks(s2, mode);
        await assertNoLeaks(s, mode);
      } finally {
        await vm?.stop();
        server.close();
      }
    });

    test("fault responses become clear errors and leave nothing behind", async (t) => {
      if (skipMode(t)) return;
      const driver = mode.driver();
      const s = await spec();
      await assert.rejects(
        driver.boot({ ...s, kernelPath: join(work, "no-such-vmlinux") }),
        (err: unknown) => {
          if (mode.jailed) {
            // Caught while staging it into the jail, before Firecracker is asked.
            assert.ok(isWrennError(err, "failed_precondition"));
            assert.match(err.message, /no-such-vmlinux does not exist/);
          } else {
            assert.ok(err instanceof FirecrackerApiError);
            assert.equal(err.code, "failed_precondition");
            assert.match(err.message, /^firecracker PUT \/boot-source: .*no-such-vmlinux/);
          }
          return true;
        },
      );
      await assertNoLeaks(s, mode);

      // Firecracker's own fault, after the start: a vCPU count it refuses.
      await assert.rejects(driver.boot({ ...s, vcpus: 64 }), (err: unknown) => {
        assert.ok(err instanceof FirecrackerApiError);
        assert.match(err.message, /^firecracker PUT \/machine-config: The vCPU number is invalid/);
        return true;
      });
      await assertNoLeaks(s, mode);

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
      await assertNoLeaks(s, mode);
    });

    test("the VMM dying mid-boot is a clean error", async (t) => {
      if (skipMode(t, realFirecracker ? "cannot make a real Firecracker crash on cue" : undefined))
        return;
      const driver = mode.driver({ binary: "firecracker-dying" });
      const s = await spec();
      await assert.rejects(
        driver.boot(s),
        /firecracker exited during boot \(exit 7\).*dying on PUT \/actions/s,
      );
      await assertNoLeaks(s, mode);
    });

    test("a block-device disk (a dm or loop node) is opened at the stable path", async (t) => {
      if (skipMode(t, realFirecracker ? "boots a real guest from the template instead" : undefined))
        return;
      const s = await spec();
      await runCommand("truncate", ["-s", "4M", s.rootfs.path]);
      const dev = await runCommand("losetup", ["--find", "--show", s.rootfs.path]).then(
        (r) => r.stdout.trim(),
        (err: unknown) => {
          console.warn(`\n!!! SKIPPING: no loop device (${String(err)})\n`);
          return null;
        },
      );
      if (dev === null) {
        t.skip("no loop device");
        return;
      }
      let vm: VmHandle | null = null;
      try {
        vm = await mode.driver().boot({ ...s, rootfs: { path: dev, format: "raw" } });
        const inVm = `/proc/${vm.pid}/root${STABLE_ROOTFS}`;
        if (mode.jailed) {
          // A node of its own in the chroot, the VMM user's alone; the host's stays root's.
          const [node, host] = await Promise.all([stat(inVm), stat(dev)]);
          assert.ok(node.isBlockDevice(), "not a block device in the jail");
          assert.equal(node.rdev, host.rdev);
          assert.equal(node.uid, vmmUid);
          assert.equal(node.mode & 0o777, 0o600);
          assert.equal(host.uid, 0);
        } else {
          assert.equal(await readlink(inVm), dev);
        }
        await vm.stop();
        vm = null;
        await assertNoLeaks(s, mode);
      } finally {
        await vm?.stop();
        await runCommand("losetup", ["-d", dev]);
        assert.equal(
          (await runCommand("losetup", ["-j", s.rootfs.path])).stdout.trim(),
          "",
          "loop device left",
        );
      }
    });

    test("adopt after an agent restart; kill -9 resolves exited", async (t) => {
      if (skipMode(t)) return;
      const s = await spec({ trackDirtyPages: true });
      const first = mode.driver();
      const vm = await first.boot(s);
      const record = first.record(vm);
      try {
        const { driver, take } = tracer(mode);
        // A booted VM has no page server: the driver hands back the VM itself.
        const adopted = (await driver.adopt(record)) as VmHandle | null;
        assert.ok(adopted);
        assert.equal(adopted.pid, vm.pid);
        assert.deepEqual(take(), [{ method: "GET", path: "/vm/config" }]);
        await adopted.pause();
        await adopted.snapshot(
          { statePath: join(work, `${s.vmId}.a.state`), memPath: join(work, `${s.vmId}.a.mem`) },
          "diff",
        );
        assert.ok((await stat(join(work, `${s.vmId}.a.mem`))).size > 0);
        process.kill(adopted.pid, "SIGKILL");
        await adopted.exited;
        await vm.exited;
        assert.equal(await driver.adopt(record), null, "a dead VM was adopted");
      } finally {
        await vm.stop();
      }
      await assertNoLeaks(s, mode);
    });
  });
}

test("jailer double: refuses unknown and missing arguments as the jailer does (exit 1)", async (t) => {
  if (skipLoudly(t, realFirecracker ? "checks the double itself" : undefined)) return;
  const run = (...args: string[]) =>
    spawnSync("sh", [JAILER_DOUBLE, ...args], { encoding: "utf8" });
  const base = ["--id", "x1", "--exec-file", "/bin/true", "--uid", "1", "--gid", "1"];
  for (const [args, re] of [
    [[...base, "--bogus"], /Found argument '--bogus'/],
    [base.slice(2), /'id' required/],
    [["--id", "x1", "--uid"], /requires a value/],
    [base, /must contain "firecracker"/],
    [[...base, "--id", "bad_id"], /Invalid instance ID/],
  ] as const) {
    const r = run(...args);
    assert.equal(r.status, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
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
