import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm, stat, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, test, type TestContext } from "node:test";
import { pino } from "pino";
import { CommandError, runCommand, type Runner } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { prepareDataDir, removeDataFs } from "../src/storage/data-fs.ts";
import { reflinkInPlaceSupported } from "../src/storage/select.ts";
import { detectCgroups } from "../src/cgroup/cgroup.ts";
import { dataDir, findKernel, findTemplate, guestBootArgs } from "../src/image/store.ts";
import { VMM_UID_BASE, vmmIdentity } from "../src/vmm/confine.ts";
import { currentPlatform, legacyPlatform, paths } from "../src/vmm/qemu/args.ts";
import { QemuDriver } from "../src/vmm/qemu/driver.ts";
import { STATE_MAGIC, readStateHeader } from "../src/vmm/qemu/state-file.ts";
import type { QemuVm as VmHandle } from "../src/vmm/qemu/driver.ts";
import type { BootSpec, VmRecord } from "../src/vmm/vmm.ts";

const GUEST = "169.254.0.21";
const GATEWAY = "169.254.0.22";
const ENVD = `http://${GUEST}:49983`;
const MAC = "02:fc:00:00:00:05";
const MEMORY_MB = 256;

function has(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
}

async function images(): Promise<{ kernel: string; initrd: string; rootfs: string } | string> {
  try {
    const data = dataDir();
    const [kernel, template] = await Promise.all([findKernel(data), findTemplate(data, "minimal")]);
    return { kernel: kernel.vmlinuz, initrd: kernel.initrd, rootfs: template.rootfs };
  } catch (err) {
    return `no guest image (${(err as Error).message})`;
  }
}

const found = await images();
const skipReason =
  process.getuid?.() !== 0
    ? "needs root (network namespaces, TAP)"
    : !has("qemu-system-x86_64") || !has("qemu-img")
      ? "qemu-system-x86_64/qemu-img not installed (apt-get install qemu-system-x86 qemu-utils)"
      : typeof found === "string"
        ? found
        : null;

function skipLoudly(t: TestContext): boolean {
  if (!skipReason) return false;
  console.warn(`\n!!! SKIPPING QEMU VMM TEST: ${skipReason}\n`);
  t.skip(skipReason);
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
const namespaces = new Set<string>();
/** Pids of VMs this run started, killed if the run itself is interrupted. */
const running = new Set<number>();

/**
 * VMs are detached on purpose (they outlive an agent restart), so a test run
 * that was killed leaves its VMs and namespaces behind: remove those whose
 * test process is gone, before starting.
 */
async function sweepKilledRuns(): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const line of processesMatching("qemu-system-x86_64 -name wrenn-vt")) {
    const m = /^(\d+) .*-name wrenn-vt(\d+)x/.exec(line);
    if (m && !alive(Number(m[2]))) process.kill(Number(m[1]), "SIGKILL");
  }
  const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
  for (const m of list.matchAll(/^wrenn-vmmt-(\d+)-\w+/gm)) {
    if (!alive(Number(m[1]))) await runCommand("ip", ["netns", "del", m[0]]).catch(() => undefined);
  }
  for (const dir of readdirSync(tmpdir())) {
    const m = /^wrenn-vmm-(\d+)-/.exec(dir);
    if (m && !alive(Number(m[1]))) {
      // What a killed run left mounted: its xfs pool, a full-disk test's tmpfs.
      const under = `${join(tmpdir(), dir)}/`;
      for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
        const point = line.split(" ")[1];
        if (point?.startsWith(under)) await runCommand("umount", [point]).catch(() => undefined);
      }
      await rm(join(tmpdir(), dir), { recursive: true, force: true });
    }
  }
}

before(async () => {
  if (!skipReason) await sweepKilledRuns();
  work = await mkdtemp(join(tmpdir(), `wrenn-vmm-${process.pid}-`));
});

// A run stopped with Ctrl-C or `timeout` still stops its VMs.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    for (const pid of running) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    for (const ns of namespaces) spawnSync("ip", ["netns", "del", ns]);
    process.exit(130);
  });
}

after(async () => {
  for (const ns of namespaces) await runCommand("ip", ["netns", "del", ns]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

/** A network namespace with the slot's TAP, as the network driver makes it. */
async function slot(name: string): Promise<string> {
  const ns = `wrenn-vmmt-${process.pid}-${name}`;
  await runCommand("ip", ["netns", "add", ns]);
  namespaces.add(ns);
  const inNs = (...args: string[]) => runCommand("ip", ["netns", "exec", ns, "ip", ...args]);
  await inNs("tuntap", "add", "tap0", "mode", "tap");
  await inNs("addr", "add", `${GATEWAY}/30`, "dev", "tap0");
  await inNs("link", "set", "tap0", "up");
  await inNs("link", "set", "lo", "up");
  return ns;
}

async function dropSlot(ns: string): Promise<void> {
  await runCommand("ip", ["netns", "del", ns]);
  namespaces.delete(ns);
}

/** Runs `script` under a pinned Node inside `ns` (the guest is only reachable there); its stdout. */
async function inNs(ns: string, script: string, arg: unknown): Promise<string> {
  const { stdout } = await runCommand("ip", [
    "netns",
    "exec",
    ns,
    process.execPath,
    "-e",
    script,
    JSON.stringify(arg),
  ]);
  return stdout.trim();
}

interface NsResponse {
  status: number;
  body: string;
}

/**
 * An HTTP request from inside a namespace (the guest is only reachable
 * there): a short-lived pinned Node does the fetch.
 */
async function nsFetch(
  ns: string,
  path: string,
  opts: { method?: string; form?: Record<string, string>; timeoutMs?: number } = {},
): Promise<NsResponse | null> {
  const script = `
    const o = JSON.parse(process.argv[1]);
    let body;
    if (o.form) { body = new FormData(); for (const [k, v] of Object.entries(o.form)) body.append(k, new Blob([v]), "f"); }
    fetch(o.url, { method: o.method, body, signal: AbortSignal.timeout(o.timeoutMs) })
      .then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))
      .catch(() => console.log("null"));`;
  const out = await inNs(ns, script, {
    url: ENVD + path,
    method: opts.method ?? "GET",
    form: opts.form,
    timeoutMs: opts.timeoutMs ?? 10_000,
  });
  return JSON.parse(out) as NsResponse | null;
}

async function waitHealthy(ns: string, timeoutMs = 300_000): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    const r = await nsFetch(ns, "/health", { timeoutMs: 3000 });
    if (r && r.status >= 200 && r.status < 300) return performance.now() - start;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`envd /health did not answer in ${timeoutMs} ms`);
}

async function sha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Processes whose command line names this VM: none may outlive `stop`. */
function vmProcesses(vmId: string): string {
  return processesMatching(`-name wrenn-${vmId} `).join("\n");
}

async function assertNoLeaks(vmId: string, runDir: string): Promise<void> {
  assert.equal(vmProcesses(vmId), "", "QEMU process left behind");
  assert.deepEqual(await readdir(runDir), [], "files left in the run directory");
}

/** A qcow2 overlay at `path` over the template's disk. */
async function overlay(path: string): Promise<string> {
  if (typeof found === "string") throw new Error(found);
  await runCommand("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-b",
    found.rootfs,
    "-F",
    "raw",
    path,
  ]);
  return path;
}

let seq = 0;
async function bootSpec(ns: string): Promise<BootSpec> {
  if (typeof found === "string") throw new Error(found);
  const vmId = `vt${process.pid}x${++seq}`;
  const runDir = join(work, vmId);
  await runCommand("mkdir", ["-p", runDir]);
  // The VM writes its disk: give it a qcow2 overlay over the template, never the template.
  const disk = await overlay(join(work, `${vmId}.qcow2`));
  return {
    vmId,
    vcpus: 1,
    memoryMb: MEMORY_MB,
    kernelPath: found.kernel,
    initrdPath: found.initrd,
    bootArgs: guestBootArgs({
      guestIp: GUEST,
      gatewayIp: GATEWAY,
      netmask: "255.255.255.252",
      hostname: vmId,
    }),
    rootfs: { path: disk, format: "qcow2" },
    tapName: "tap0",
    guestMac: MAC,
    netns: ns,
    runDir,
  };
}

/** Stops whatever a failed test left running, then checks nothing leaked. */
async function cleanup(vm: VmHandle | null, spec: BootSpec): Promise<void> {
  await vm?.stop();
  await assertNoLeaks(spec.vmId, spec.runDir);
}

const driver = new QemuDriver({ accel: "tcg" });

/** The machine options and CPU model a running QEMU was started with (`-M`, `-cpu`). */
function platformOf(pid: number): { machine?: string; cpu?: string } {
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  const after = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const cpu = after("-cpu");
  return { machine: after("-M")?.replace(/,memory-backend=ram0$/, ""), ...(cpu ? { cpu } : {}) };
}

/** Rewrites a state file's header (our JSON line), keeping QEMU's stream after it. */
async function rewriteHeader(
  from: string,
  to: string,
  edit: (header: { machine: Record<string, unknown> }) => void,
): Promise<void> {
  const buf = await readFile(from);
  const nl = buf.indexOf(10);
  const header = JSON.parse(buf.subarray(STATE_MAGIC.length, nl).toString("utf8")) as {
    machine: Record<string, unknown>;
  };
  edit(header);
  await writeFile(
    to,
    Buffer.concat([Buffer.from(STATE_MAGIC + JSON.stringify(header)), buf.subarray(nl)]),
  );
}

function track<T extends VmHandle | null>(vm: T): T {
  if (vm) running.add(vm.pid);
  return vm;
}

test("qemu: boot, pause, resume, snapshot, restore into another slot, clone", async (t) => {
  if (skipLoudly(t)) return;
  const ns = await slot("a");
  const spec = await bootSpec(ns);
  let vm: VmHandle | null = null;
  let restored: VmHandle | null = null;
  let clone: VmHandle | null = null;
  const snapDir = join(work, `${spec.vmId}-snap`);
  await runCommand("mkdir", ["-p", snapDir]);
  const files = { statePath: join(snapDir, "state"), memPath: join(snapDir, "mem") };
  try {
    const t0 = performance.now();
    vm = track(await driver.boot(spec));
    const launched = performance.now() - t0;
    const healthMs = await waitHealthy(ns);
    console.log(
      `qemu(tcg) boot-to-health: ${Math.round(launched + healthMs)} ms (QEMU up in ${Math.round(launched)} ms)`,
    );

    await vm.pause();
    assert.equal(await nsFetch(ns, "/health", { timeoutMs: 1500 }), null, "paused VM answered");
    await vm.resume();
    await waitHealthy(ns, 120_000);

    const marker = `wrenn-${Date.now()}`;
    const put = await nsFetch(ns, "/files?path=/tmp/marker&username=root", {
      method: "POST",
      form: { file: marker },
    });
    assert.ok(
      put && put.status < 300,
      `writing a file through envd failed: ${JSON.stringify(put)}`,
    );

    assert.deepEqual(
      platformOf(vm.pid),
      { machine: "microvm,pit=off", cpu: "qemu64,+arat" },
      "a TCG boot's machine: ARAT and no PIT, so the idle guest is tickless",
    );
    await vm.pause();
    const s0 = performance.now();
    await vm.snapshot(files, "full");
    const saveMs = performance.now() - s0;
    assert.deepEqual(
      (await readStateHeader(files.statePath)).machine.platform,
      currentPlatform("tcg"),
      "the state records the machine it must be restored into",
    );
    await vm.stop();
    vm = null;
    await assertNoLeaks(spec.vmId, spec.runDir);
    const stateBytes = (await stat(files.statePath)).size;
    console.log(
      `qemu snapshot: save ${Math.round(saveMs)} ms, state ${Math.round(stateBytes / 1024)} KiB`,
    );
    assert.ok(stateBytes < 4 * 1024 * 1024, "guest RAM leaked into the state file");
    assert.equal((await stat(files.memPath)).size, MEMORY_MB * 1024 * 1024);

    // Restore into a different slot: a snapshot must not depend on where it was taken.
    await dropSlot(ns);
    const ns2 = await slot("b");
    const memBefore = await sha256(files.memPath);
    const r0 = performance.now();
    clone = track(
      await driver.restoreFiles({ ...spec, netns: ns2, snapshot: files, privateMemory: true }),
    );
    const cloneMs = performance.now() - r0;
    await waitHealthy(ns2, 120_000);
    const cloneRead = await nsFetch(ns2, "/files?path=/tmp/marker&username=root");
    assert.equal(cloneRead?.body, marker, "the clone lost the guest's state");
    await nsFetch(ns2, "/files?path=/tmp/clone-only&username=root", {
      method: "POST",
      form: { file: "x".repeat(100_000) },
    });
    // A clone's RAM is in no file of its own: its snapshot carries RAM in the state stream.
    const cloneFiles = {
      statePath: join(snapDir, "clone.state"),
      memPath: join(snapDir, "clone.mem"),
    };
    await clone.pause();
    await clone.snapshot(cloneFiles, "full");
    await clone.stop();
    clone = null;
    await assertNoLeaks(spec.vmId, spec.runDir);
    assert.equal(await sha256(files.memPath), memBefore, "a private clone changed the RAM file");
    clone = track(await driver.restoreFiles({ ...spec, netns: ns2, snapshot: cloneFiles }));
    await waitHealthy(ns2, 120_000);
    const again = await nsFetch(ns2, "/files?path=/tmp/clone-only&username=root");
    assert.equal(again?.body.length, 100_000, "the clone's snapshot lost its writes");
    await clone.stop();
    clone = null;
    await assertNoLeaks(spec.vmId, spec.runDir);

    const r1 = performance.now();
    restored = track(await driver.restoreFiles({ ...spec, netns: ns2, snapshot: files }));
    const restoreMs = performance.now() - r1;
    console.log(
      `qemu restore (launch to running): shared ${Math.round(restoreMs)} ms, private clone ${Math.round(cloneMs)} ms`,
    );
    await waitHealthy(ns2, 120_000);
    const read = await nsFetch(ns2, "/files?path=/tmp/marker&username=root");
    assert.equal(read?.body, marker, "the restored VM lost the guest's state");
    const gone = await nsFetch(ns2, "/files?path=/tmp/clone-only&username=root");
    assert.notEqual(gone?.status, 200, "the clone's writes leaked into the snapshot");

    // Pause the resumed VM into new files (its RAM file moves there), then
    // resume it: the snapshot must stay as it was while the VM runs on.
    const files2 = { statePath: join(snapDir, "state2"), memPath: join(snapDir, "mem2") };
    await restored.pause();
    await restored.snapshot(files2, "diff");
    await restored.resume();
    await waitHealthy(ns2, 120_000);
    await nsFetch(ns2, "/files?path=/tmp/marker&username=root", {
      method: "POST",
      form: { file: "changed after the snapshot" },
    });
    await restored.stop();
    restored = null;
    await assertNoLeaks(spec.vmId, spec.runDir);
    restored = track(await driver.restoreFiles({ ...spec, netns: ns2, snapshot: files2 }));
    await waitHealthy(ns2, 120_000);
    const kept = await nsFetch(ns2, "/files?path=/tmp/marker&username=root");
    assert.equal(kept?.body, marker, "resuming after a snapshot changed the snapshot");
    await restored.stop();
    restored = null;
    await assertNoLeaks(spec.vmId, spec.runDir);
    await dropSlot(ns2);
  } finally {
    await cleanup(vm, spec).catch(() => undefined);
    await cleanup(clone, spec).catch(() => undefined);
    await cleanup(restored, spec);
  }
});

test("qemu: kill -9 resolves exited, stop cleans up, adopt re-attaches", async (t) => {
  if (skipLoudly(t)) return;
  const ns = await slot("c");
  const spec = await bootSpec(ns);
  let vm: VmHandle | null = null;
  try {
    // Boot from a separate agent process that then exits, as an agent restart does.
    const script = `
      import { QemuDriver } from ${JSON.stringify(new URL("../src/vmm/qemu/driver.ts", import.meta.url).pathname)};
      const d = new QemuDriver({ accel: "tcg" });
      const vm = await d.boot(JSON.parse(process.argv[1]));
      console.log(JSON.stringify(d.record(vm)));
      process.exit(0);`;
    const { stdout } = await runCommand(process.execPath, [
      "--input-type=module",
      "-e",
      script,
      JSON.stringify(spec),
    ]);
    const record = JSON.parse(stdout.trim().split("\n").pop() ?? "") as VmRecord;
    vm = track(await driver.adopt(record));
    assert.ok(vm, "a running VM was not re-adopted");
    assert.equal(vm.pid, record.pid);
    assert.equal((await stat(spec.rootfs.path)).uid, (await vmmIdentity(ns)).uid);
    await waitHealthy(ns);
    await vm.pause();
    assert.equal(await nsFetch(ns, "/health", { timeoutMs: 1500 }), null);
    await vm.resume();
    await waitHealthy(ns, 120_000);

    process.kill(vm.pid, "SIGKILL");
    const exit = await vm.exited;
    assert.ok(exit, "exited did not resolve");
    assert.equal(await driver.adopt(record), null, "a dead VM was adopted");
    await vm.stop();
    vm = null;
    await assertNoLeaks(spec.vmId, spec.runDir);
    // The adopted VM knew its uid and disk (from the process): the disk is root's again.
    assert.equal((await stat(spec.rootfs.path)).uid, 0, "the disk stayed the dead VMM's uid's");

    // A VM that dies while no agent watches: the next agent's adopt finds it
    // gone and gives its disk back to root, as its record names it.
    const again = await runCommand(process.execPath, [
      "--input-type=module",
      "-e",
      script,
      JSON.stringify(spec),
    ]);
    const orphan = JSON.parse(again.stdout.trim().split("\n").pop() ?? "") as VmRecord;
    running.add(orphan.pid);
    const orphanUid = (await vmmIdentity(ns)).uid;
    for (let i = 0; i < 100 && (await stat(spec.rootfs.path)).uid !== orphanUid; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await stat(spec.rootfs.path)).uid, orphanUid);
    process.kill(orphan.pid, "SIGKILL");
    for (let i = 0; i < 200 && existsSync(`/proc/${orphan.pid}`); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(await driver.adopt(orphan), null, "a dead VM was adopted");
    assert.equal((await stat(spec.rootfs.path)).uid, 0, "a dead VM's disk stayed its uid's");
    // What the sandbox layer would clear: its run dir and cgroup.
    for (const f of await readdir(spec.runDir)) await rm(join(spec.runDir, f), { force: true });
    await (await detectCgroups())?.remove(spec.vmId);
    await assertNoLeaks(spec.vmId, spec.runDir);

    // Same for our own child.
    vm = track(await driver.boot(spec));
    process.kill(vm.pid, "SIGKILL");
    assert.equal((await vm.exited).signal, "SIGKILL");
    await vm.stop();
    vm = null;
    await assertNoLeaks(spec.vmId, spec.runDir);
    await dropSlot(ns);
  } finally {
    await cleanup(vm, spec);
  }
});

test("qemu: on an xfs pool a resume's memory is reflinked while QEMU starts, then read ahead; a failed copy, or a stop during the reads, leaves nothing", async (t) => {
  if (skipLoudly(t)) return;
  const pool = join(work, "pool");
  const prepared = await prepareDataDir(pool, { log: createLogger("test", "silent") });
  if (!(await reflinkInPlaceSupported(pool))) {
    await removeDataFs(pool, prepared);
    console.warn(`\n!!! ${t.name}: SKIPPED: no xfs pool with xfs_io here (${prepared})\n`);
    t.skip("no reflink in place");
    return;
  }
  const ns = await slot("e");
  const booted = await bootSpec(ns);
  const spec = { ...booted, runDir: join(pool, booted.vmId) };
  await runCommand("mkdir", ["-p", spec.runDir]);
  const snapDir = join(pool, "snap");
  await runCommand("mkdir", ["-p", snapDir]);
  const restoreSpec = {
    ...spec,
    snapshotDir: snapDir,
    clone: false,
    // Right after its pause: the copy runs beside QEMU's start.
    unwritten: true,
    kernel: { kernelPath: spec.kernelPath, initrdPath: spec.initrdPath },
  };
  /** The reads of the VM's own copy of its memory (readRamAhead), and how each ended. */
  const ramReads: string[] = [];
  const isRamRead = (cmd: string, args: string[]) =>
    [cmd, ...args].includes("xfs_io") &&
    args.at(-1) === paths(spec.runDir, spec.vmId).ram &&
    args.some((a) => a.startsWith("pread "));
  /**
   * Runs xfs_io only once this VM's QEMU runs: a copy made before QEMU
   * starts waits in vain. `holdReads`: the memory's reads go on until
   * they are cancelled.
   */
  const besideQemu =
    (fail: boolean, holdReads = false): Runner =>
    async (cmd, args, opts) => {
      if (isRamRead(cmd, args)) {
        ramReads.push(holdReads ? "held" : "read");
        if (holdReads) {
          return new Promise((_, reject) => {
            if (opts?.signal?.aborted) reject(new Error("cancelled"));
            opts?.signal?.addEventListener("abort", () => {
              ramReads.push("cancelled");
              reject(new Error("cancelled"));
            });
          });
        }
      }
      if (cmd === "xfs_io") {
        for (let i = 0; vmProcesses(spec.vmId) === ""; i++) {
          if (i > 400) throw new Error("QEMU did not start while the memory was copied");
          await new Promise((r) => setTimeout(r, 25));
        }
        if (fail) throw new CommandError("xfs_io", 1, "injected failure");
      }
      return runCommand(cmd, args, opts);
    };
  const inPlace = (fail: boolean, holdReads = false) =>
    new QemuDriver({
      accel: "tcg",
      reflinkCopies: true,
      reflinkInPlace: true,
      runner: besideQemu(fail, holdReads),
    });
  let vm: VmHandle | null = null;
  try {
    vm = track(await driver.boot(spec));
    await waitHealthy(ns);
    const marker = `in-place-${Date.now()}`;
    await nsFetch(ns, "/files?path=/tmp/marker&username=root", {
      method: "POST",
      form: { file: marker },
    });
    await vm.pause();
    await vm.snapshot(
      { statePath: join(snapDir, "state"), memPath: join(snapDir, "memfile") },
      "full",
    );
    await vm.stop();
    vm = null;
    const paused = await sha256(join(snapDir, "memfile"));

    await assert.rejects(
      // (Stopped should it start after all.)
      inPlace(true)
        .restore(restoreSpec)
        .then(async (v) => {
          await v.stop();
          return v;
        }),
      /copying the VM's memory failed: .*injected failure/,
    );
    await assertNoLeaks(spec.vmId, spec.runDir);
    assert.equal(
      await sha256(join(snapDir, "memfile")),
      paused,
      "a failed copy changed the paused memory",
    );

    assert.equal(ramReads.length, 0, "a failed copy was read ahead");

    // Stopped while its memory is still being read ahead: the reads end
    // with it, and nothing is left.
    vm = track((await inPlace(false, true).restore(restoreSpec)) as VmHandle);
    for (let i = 0; !ramReads.includes("held"); i++) {
      if (i > 400) throw new Error("the VM's memory was not read ahead");
      await new Promise((r) => setTimeout(r, 25));
    }
    await vm.stop();
    vm = null;
    assert.deepEqual(ramReads, ["held", "cancelled"]);
    await assertNoLeaks(spec.vmId, spec.runDir);
    ramReads.length = 0;

    vm = track((await inPlace(false).restore(restoreSpec)) as VmHandle);
    await waitHealthy(ns, 120_000);
    // The VM's memory was read into the page cache as it ran.
    assert.deepEqual(ramReads, ["read"]);
    const read = await nsFetch(ns, "/files?path=/tmp/marker&username=root");
    assert.equal(read?.body, marker, "the resumed VM lost the guest's state");
    await nsFetch(ns, "/files?path=/tmp/after&username=root", {
      method: "POST",
      form: { file: "x".repeat(100_000) },
    });
    assert.equal(
      await sha256(join(snapDir, "memfile")),
      paused,
      "the VM ran on the paused memory itself",
    );
    await vm.stop();
    vm = null;
    await assertNoLeaks(spec.vmId, spec.runDir);
    await dropSlot(ns);
  } finally {
    await cleanup(vm, spec).catch(() => undefined);
    await rm(snapDir, { recursive: true, force: true });
    await rm(spec.runDir, { recursive: true, force: true });
    await removeDataFs(pool, prepared);
  }
});

test("qemu: a bad disk path is a clear error and leaves nothing behind", async (t) => {
  if (skipLoudly(t)) return;
  const ns = await slot("d");
  const spec = await bootSpec(ns);
  try {
    await assert.rejects(
      driver.boot({ ...spec, rootfs: { path: join(work, "missing.img"), format: "raw" } }),
      /QEMU did not start.*missing\.img/s,
    );
    await assertNoLeaks(spec.vmId, spec.runDir);
  } finally {
    await dropSlot(ns);
  }
});

test(
  "qemu: a state saved before states recorded their machine restores on the old machine; the new one would refuse it",
  { timeout: 300_000 },
  async (t) => {
    if (skipLoudly(t)) return;
    const ns = await slot("e");
    const spec = await bootSpec(ns);
    let vm: VmHandle | null = null;
    const snapDir = join(work, `${spec.vmId}-legacy`);
    await runCommand("mkdir", ["-p", snapDir]);
    const saved = { statePath: join(snapDir, "saved"), memPath: join(snapDir, "mem") };
    const old = { statePath: join(snapDir, "state"), memPath: saved.memPath };
    try {
      // The driver as it was: QEMU's default CPU and a PIT.
      const before = new QemuDriver({ accel: "tcg", platform: legacyPlatform("tcg") });
      vm = track(await before.boot(spec));
      assert.deepEqual(platformOf(vm.pid), { machine: "microvm" });
      await waitHealthy(ns);
      const marker = `legacy-${Date.now()}`;
      const put = await nsFetch(ns, "/files?path=/tmp/marker&username=root", {
        method: "POST",
        form: { file: marker },
      });
      assert.ok(put && put.status < 300, JSON.stringify(put));
      await vm.pause();
      await vm.snapshot(saved, "full");
      await vm.stop();
      vm = null;
      await assertNoLeaks(spec.vmId, spec.runDir);
      // Its header as the driver wrote it then: no platform.
      await rewriteHeader(saved.statePath, old.statePath, (h) => delete h.machine.platform);
      assert.equal((await readStateHeader(old.statePath)).machine.platform, undefined);

      vm = track(await driver.restoreFiles({ ...spec, snapshot: old, privateMemory: true }));
      assert.deepEqual(platformOf(vm.pid), { machine: "microvm" }, "restored on the old machine");
      await waitHealthy(ns, 120_000);
      const read = await nsFetch(ns, "/files?path=/tmp/marker&username=root");
      assert.equal(read?.body, marker, "the old state's guest came back");
      // Its next snapshot names the old machine, so it restores again.
      const again = { statePath: join(snapDir, "again"), memPath: join(snapDir, "again.mem") };
      await vm.pause();
      await vm.snapshot(again, "full");
      assert.deepEqual(
        (await readStateHeader(again.statePath)).machine.platform,
        legacyPlatform("tcg"),
      );
      await vm.stop();
      vm = null;
      await assertNoLeaks(spec.vmId, spec.runDir);

      // Why it is recorded: the same state claimed for the new machine does not load.
      const wrong = { statePath: join(snapDir, "wrong"), memPath: saved.memPath };
      await rewriteHeader(saved.statePath, wrong.statePath, (h) => {
        h.machine.platform = currentPlatform("tcg");
      });
      await assert.rejects(
        driver.restoreFiles({ ...spec, snapshot: wrong, privateMemory: true }),
        /restoring the VM failed/,
      );
      await assertNoLeaks(spec.vmId, spec.runDir);
      await dropSlot(ns);
    } finally {
      await cleanup(vm, spec);
    }
  },
);

/** A process's real, effective, saved and fs uids, its gids and its supplementary groups. */
function idsOf(pid: number): { uids: number[]; gids: number[]; groups: number[] } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) =>
    (new RegExp(`^${name}:[ \\t]*(.*)$`, "m").exec(status)?.[1] ?? "")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  return { uids: field("Uid"), gids: field("Gid"), groups: field("Groups") };
}

/** Opens `path` for reading as uid:gid, without groups: "ok" or the error `cat` reports. */
function readAs(uid: number, path: string): string {
  const r = spawnSync(
    "setpriv",
    [
      "--reuid",
      String(uid),
      "--regid",
      String(uid),
      "--clear-groups",
      "--",
      "head",
      "-c",
      "1",
      path,
    ],
    { encoding: "utf8" },
  );
  return r.status === 0 ? "ok" : r.stderr.trim();
}

test(
  "qemu: every VM runs as a uid of its own, and one VM's uid cannot open the other's disk or memory",
  { timeout: 600_000 },
  async (t) => {
    if (skipLoudly(t)) return;
    const [nsA, nsB] = [await slot("f"), await slot("g")];
    const [a, b] = [await bootSpec(nsA), await bootSpec(nsB)];
    let vmA: VmHandle | null = null;
    let vmB: VmHandle | null = null;
    let moved: VmHandle | null = null;
    const snapDir = join(work, `${a.vmId}-uid`);
    await runCommand("mkdir", ["-p", snapDir]);
    const files = { statePath: join(snapDir, "state"), memPath: join(snapDir, "mem") };
    try {
      const t0 = performance.now();
      const [bootedA, bootedB] = await Promise.all([driver.boot(a), driver.boot(b)]);
      vmA = track(bootedA);
      vmB = track(bootedB);
      await Promise.all([waitHealthy(nsA), waitHealthy(nsB)]);
      console.log(`two VMs at once, boot-to-health: ${Math.round(performance.now() - t0)} ms`);
      const [uidA, uidB] = [(await vmmIdentity(nsA)).uid, (await vmmIdentity(nsB)).uid];
      assert.notEqual(uidA, uidB, "two VMs share a uid");
      for (const [vm, uid] of [
        [bootedA, uidA],
        [bootedB, uidB],
      ] as const) {
        assert.ok(uid >= VMM_UID_BASE, `uid ${uid} is in a real user's range`);
        const ids = idsOf(vm.pid);
        assert.deepEqual(ids.uids, [uid, uid, uid, uid], "QEMU does not run as its own uid");
        assert.deepEqual(ids.gids, [uid, uid, uid, uid], "QEMU does not run as its own gid");
        assert.ok(
          ids.groups.every((g) => g === uid),
          `QEMU kept supplementary groups: ${ids.groups.join(" ")}`,
        );
      }
      // Each disk is its own VM's uid's alone; so is its memory (root's, 0600).
      for (const [spec, uid] of [
        [a, uidA],
        [b, uidB],
      ] as const) {
        const disk = await stat(spec.rootfs.path);
        assert.equal(disk.uid, uid, `${spec.vmId}'s disk is not its VMM's`);
        assert.equal(disk.mode & 0o777, 0o600, `${spec.vmId}'s disk is open to others`);
        const ram = await stat(paths(spec.runDir, spec.vmId).ram);
        assert.equal(ram.mode & 0o077, 0, `${spec.vmId}'s memory is open to others`);
      }
      // What a guest that escaped into VM A's QEMU could do: its own disk, yes;
      // VM B's disk and memory (named on B's command line in /proc), no.
      assert.equal(readAs(uidA, a.rootfs.path), "ok", "A cannot read its own disk");
      assert.match(readAs(uidA, b.rootfs.path), /Permission denied/, "A opened B's disk");
      assert.match(readAs(uidB, a.rootfs.path), /Permission denied/, "B opened A's disk");
      assert.match(
        readAs(uidA, paths(b.runDir, b.vmId).ram),
        /Permission denied/,
        "A opened B's memory",
      );

      // A pause, and a restore into another slot: the VM takes that slot's uid,
      // and its disk goes with it; the old uid keeps nothing.
      const marker = `uid-${Date.now()}`;
      const put = await nsFetch(nsA, "/files?path=/tmp/marker&username=root", {
        method: "POST",
        form: { file: marker },
      });
      assert.ok(put && put.status < 300, JSON.stringify(put));
      await bootedA.pause();
      await bootedA.snapshot(files, "full");
      await bootedA.stop();
      vmA = null;
      assert.equal((await stat(a.rootfs.path)).uid, 0, "a stopped VM's disk stayed its uid's");
      assert.equal((await stat(files.statePath)).uid, 0, "the saved state stayed the VMM's");
      // No VMM may read a saved state (a private clone's holds its RAM): a
      // restore is handed an open descriptor of it instead.
      assert.equal((await stat(files.statePath)).mode & 0o777, 0o600);
      assert.match(readAs(uidB, files.statePath), /Permission denied/, "B read A's saved state");
      await assertNoLeaks(a.vmId, a.runDir);
      await dropSlot(nsA);
      const nsC = await slot("h");
      const uidC = (await vmmIdentity(nsC)).uid;
      // A freed namespace number may come back (A's uid, A gone): only B's is taken.
      assert.notEqual(uidC, uidB, "the restored VM took a running VM's uid");
      const restored = track(await driver.restoreFiles({ ...a, netns: nsC, snapshot: files }));
      moved = restored;
      await waitHealthy(nsC, 120_000);
      assert.deepEqual(idsOf(restored.pid).uids, [uidC, uidC, uidC, uidC]);
      assert.equal((await stat(a.rootfs.path)).uid, uidC, "the disk was not handed to the new uid");
      const read = await nsFetch(nsC, "/files?path=/tmp/marker&username=root");
      assert.equal(read?.body, marker, "the restored VM lost the guest's state");
      // It writes its disk after the restore (QEMU reopened it as its new uid).
      const after = await nsFetch(nsC, "/files?path=/root/after-restore&username=root", {
        method: "POST",
        form: { file: "written" },
      });
      assert.ok(after && after.status < 300, JSON.stringify(after));
      assert.match(readAs(uidC, b.rootfs.path), /Permission denied/, "the new uid opened B's disk");
      assert.match(
        readAs(uidC, files.statePath),
        /Permission denied/,
        "the restored VM's uid can read the state it was restored from",
      );

      for (const [vm, spec] of [
        [restored, a],
        [bootedB, b],
      ] as const) {
        await vm.stop();
        await assertNoLeaks(spec.vmId, spec.runDir);
        assert.equal((await stat(spec.rootfs.path)).uid, 0, `${spec.vmId}'s disk stayed its uid's`);
      }
      moved = null;
      vmB = null;
      await dropSlot(nsB);
      await dropSlot(nsC);
    } finally {
      await cleanup(vmA, a).catch(() => undefined);
      await cleanup(moved, a).catch(() => undefined);
      await cleanup(vmB, b);
    }
  },
);

test("qemu: a standby that cannot take a resume (started for another machine) gives way to a QEMU of its own, and goes", async (t) => {
  if (skipLoudly(t)) return;
  const ns = await slot("s");
  const spec = await bootSpec(ns);
  const snapDir = join(work, `${spec.vmId}-snap`);
  await runCommand("mkdir", ["-p", snapDir]);
  let vm: VmHandle | null = null;
  try {
    vm = track(await driver.boot(spec));
    await waitHealthy(ns);
    await vm.pause();
    await driver.saveMemory(vm, { dir: snapDir });
    await vm.stop();
    vm = null;
    const kernel = { kernelPath: spec.kernelPath, initrdPath: spec.initrdPath };
    const header = await readStateHeader(join(snapDir, "state"));
    const other = { ...header.machine, memoryMb: header.machine.memoryMb * 2 };
    const standby = await driver.startStandby({
      vmId: `${spec.vmId}sb`,
      netns: ns,
      tapName: spec.tapName,
      guestMac: spec.guestMac,
      runDir: spec.runDir,
      key: JSON.stringify({ ...other, platform: other.platform ?? legacyPlatform("tcg") }),
    });
    vm = track(
      (await driver.restore({
        ...spec,
        vmId: standby.vmId,
        standby,
        snapshotDir: snapDir,
        clone: false,
        kernel,
      })) as VmHandle,
    );
    await waitHealthy(ns, 60_000);
    await standby.exited;
    assert.equal(vmProcesses(standby.vmId).split("\n").filter(Boolean).length, 1, "one QEMU");
    assert.ok(!existsSync(join(spec.runDir, `${standby.vmId}.none`)), "the placeholder went");
    await vm.stop();
    vm = null;
    await assertNoLeaks(standby.vmId, spec.runDir);
  } finally {
    await cleanup(vm, spec);
    await rm(snapDir, { recursive: true, force: true });
    await dropSlot(ns);
  }
});

test("qemu: a VM whose disk cannot grow (its filesystem full) waits, stopped, and runs on with the write once space is back; adopted meanwhile, it says it waits", async (t) => {
  if (skipLoudly(t)) return;
  const ns = await slot("f");
  const spec = await bootSpec(ns);
  // The disk alone on a small filesystem: the RAM file's stays roomy.
  const tiny = join(work, `${spec.vmId}-tiny`);
  await runCommand("mkdir", ["-p", tiny]);
  await runCommand("mount", ["-t", "tmpfs", "-o", "size=200m", "tmpfs", tiny]);
  const disk = await overlay(join(tiny, "disk.qcow2"));
  const lines: string[] = [];
  const log = pino(
    { level: "info" },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );
  const logged = async (what: RegExp, times: number) => {
    const count = () => lines.filter((l) => what.test(l)).length;
    for (let i = 0; i < 600 && count() < times; i++) await new Promise((r) => setTimeout(r, 100));
    return count() >= times;
  };
  const d = new QemuDriver({ accel: "tcg", log });
  const filler = join(tiny, "filler");
  const fill = async () => {
    const s = await statfs(tiny);
    await runCommand("fallocate", ["-l", String(s.bavail * s.bsize), filler]);
    const after = await statfs(tiny);
    assert.ok(after.bavail * after.bsize < 1024 * 1024, "the disk's filesystem is full");
  };
  // 48 MiB: past the guest's dirty limits, so it writes them to its disk on the way.
  const size = 48 * 1024 * 1024;
  const content = createHash("sha256").update(Buffer.alloc(size, "wrenn-")).digest("hex");
  const upload = (path: string) =>
    inNs(
      ns,
      `const o = JSON.parse(process.argv[1]);
       const body = new FormData();
       body.append("file", new Blob([Buffer.alloc(o.size, "wrenn-")]), "f");
       fetch(o.url, { method: "POST", body, signal: AbortSignal.timeout(120000) })
         .then((r) => console.log(r.status), (e) => console.log(String(e)));`,
      { url: `${ENVD}/files?path=${path}&username=root`, size },
    );
  const digest = (path: string) =>
    inNs(
      ns,
      `const o = JSON.parse(process.argv[1]);
       fetch(o.url).then(async (r) => console.log(require("node:crypto").createHash("sha256").update(Buffer.from(await r.arrayBuffer())).digest("hex")));`,
      { url: `${ENVD}/files?path=${path}&username=root` },
    );
  const waiting = /the VM waits, stopped, until space is freed/;
  let vm: VmHandle | null = null;
  try {
    vm = track(await d.boot({ ...spec, rootfs: { path: disk, format: "qcow2" } }));
    await waitHealthy(ns);

    await fill();
    const first = upload("/root/one");
    assert.ok(await logged(waiting, 1), "QEMU stopped the VM on its full disk");
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await nsFetch(ns, "/health", { timeoutMs: 1500 }), null, "the VM stays stopped");
    const pid = vm.pid;
    assert.doesNotThrow(() => process.kill(pid, 0), "its QEMU waits");
    assert.equal(vm.waitsForSpace, true, "the handle says the VM waits for space");
    await rm(filler);
    assert.equal(await first, "200", "the upload ends once space is back");
    assert.ok(await logged(/the VM's disk got space: the VM runs on/, 1), "the VM ran on");
    assert.equal(vm.waitsForSpace, false);
    assert.equal(await digest("/root/one"), content, "the guest reads back all it wrote");

    // The agent that watched it goes while it waits: the next one's handle says so.
    await fill();
    const second = upload("/root/two");
    assert.ok(await logged(waiting, 2), "QEMU stopped the VM on its full disk again");
    vm.release();
    const adopted = track(await d.adopt(d.record(vm)));
    assert.ok(adopted);
    vm = adopted;
    assert.equal(adopted.waitsForSpace, true, "adopted, it says it waits for space");
    await rm(filler);
    await adopted.resume();
    assert.equal(await second, "200", "resumed by its new owner, it runs on");
    assert.equal(adopted.waitsForSpace, false);
    assert.equal(await digest("/root/two"), content);
    await adopted.stop();
    vm = null;
  } finally {
    await cleanup(vm, spec);
    await runCommand("umount", [tiny]).catch(() => undefined);
    await rm(tiny, { recursive: true, force: true });
    await dropSlot(ns);
  }
});
