import { open, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { createLogger, timed, type Logger } from "@wrenn/shared/log.ts";
import { hostTscKhz } from "../image/store.ts";
import { copySparse, exists } from "../util/fs.ts";
import {
  cmdlineOf,
  isAlive,
  tail,
  watchForeignExit,
  within,
  type ExitStatus,
} from "../util/process.ts";
import { qemuOpt, shellQuote } from "./files.ts";
import { spawnInNetns } from "./process.ts";
import { QmpClient } from "./qmp.ts";
import type { BootSpec, RestoreSpec, SnapshotFiles, VmHandle, VmmDriver, VmRecord } from "./vmm.ts";

export type QemuAccel = "kvm" | "tcg";

/** MiB of TCG translation cache per VM (WRENN_QEMU_TB_MB overrides). */
const TCG_TB_MB = Number(process.env.WRENN_QEMU_TB_MB) || 256;

export interface QemuDriverOptions {
  /** "tcg" unless a boot probe showed KVM usable (see selectVmm). */
  accel: QemuAccel;
  qemuBinary?: string;
  log?: Logger;
  /** How long `stop` waits after QMP `quit` before SIGKILL. */
  stopGraceMs?: number;
}

/** What a restore must recreate exactly: the machine the state was saved from. */
export interface QemuMachine {
  vcpus: number;
  memoryMb: number;
  kernelPath: string;
  initrdPath?: string;
  bootArgs: string;
}

/**
 * The state file is our header line (the machine as JSON) followed by QEMU's
 * migration stream, so a snapshot is self-contained in its two files: QEMU
 * needs the same kernel and option ROMs on restore or it rejects the stream.
 */
const STATE_MAGIC = "WRENN-QEMU-STATE/1 ";

/** Per-VM files, named for the VM so one runDir may hold several VMs. */
function paths(runDir: string, vmId: string) {
  return {
    qmp: join(runDir, `${vmId}.qmp`),
    ram: join(runDir, `${vmId}.mem`),
    console: join(runDir, `${vmId}.console.log`),
    log: join(runDir, `${vmId}.qemu.log`),
  };
}

/** QEMU's command line for one VM (exported so its shape can be tested). */
export function qemuArgs(opts: {
  vmId: string;
  accel: QemuAccel;
  machine: QemuMachine;
  ramPath: string;
  sharedRam: boolean;
  rootfs: { path: string; format: "raw" | "qcow2" };
  tapName: string;
  guestMac: string;
  qmpPath: string;
  consolePath: string;
  incoming: boolean;
}): string[] {
  const m = opts.machine;
  // Under TCG: the guest's TSC is the host's, but the kernel's watchdog checks
  // it against jiffies, which lag whenever the host is busy, and then drops
  // to the jiffies clocksource (4 ms clock, no vDSO: every clock read a
  // syscall). And TCG does not speculate, so Spectre mitigations (retpolines)
  // are pure cost. Added only when missing: a re-adopted VM's arguments,
  // read back from its command line, already carry them.
  const tcgArgs = opts.accel === "tcg" ? ["tsc=reliable", "mitigations=off"] : [];
  const have = new Set(m.bootArgs.split(/\s+/));
  const bootArgs = [m.bootArgs, ...tcgArgs.filter((a) => !have.has(a))].join(" ").trim();
  return [
    "-name",
    `wrenn-${opts.vmId}`,
    "-M",
    "microvm,memory-backend=ram0",
    "-accel",
    // TCG's translation cache defaults to 1 GiB, nearly all of it resident
    // after a boot: that, not the guest, was most of a sandbox's host memory
    // (1257 MiB over a 256 MiB guest). 256 MiB keeps TCG's speed (32 MiB
    // halved it) at 355 MiB overhead.
    opts.accel === "tcg" ? `tcg,tb-size=${TCG_TB_MB}` : opts.accel,
    ...(opts.accel === "kvm" ? ["-cpu", "host"] : []),
    "-m",
    `${m.memoryMb}M`,
    "-smp",
    String(m.vcpus),
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    // A guest reboot or panic ends the process, so `exited` reports it.
    "-no-reboot",
    "-object",
    `memory-backend-file,id=ram0,size=${m.memoryMb}M,mem-path=${qemuOpt(opts.ramPath)},share=${opts.sharedRam ? "on" : "off"}`,
    "-kernel",
    m.kernelPath,
    ...(m.initrdPath ? ["-initrd", m.initrdPath] : []),
    "-append",
    bootArgs,
    "-serial",
    `file:${opts.consolePath}`,
    "-drive",
    `id=vda,file=${qemuOpt(opts.rootfs.path)},format=${opts.rootfs.format},if=none,discard=unmap`,
    "-device",
    "virtio-blk-device,drive=vda",
    "-netdev",
    `tap,id=net0,ifname=${opts.tapName},script=no,downscript=no`,
    "-device",
    `virtio-net-device,netdev=net0,mac=${opts.guestMac}`,
    // Entropy for the guest: without it getrandom() (Node's start-up) blocks
    // for tens of seconds under TCG. Last, so the disk and NIC keep their slots.
    "-object",
    "rng-random,id=rng0,filename=/dev/urandom",
    "-device",
    "virtio-rng-device,rng=rng0",
    "-qmp",
    `unix:${qemuOpt(opts.qmpPath)},server=on,wait=off`,
    ...(opts.incoming ? ["-S", "-incoming", "defer"] : []),
  ];
}

/** Adds `tsc_early_khz` unless the caller's boot args already set it. */
export function withTscArg(bootArgs: string): string {
  return /(^|\s)tsc_early_khz=/.test(bootArgs)
    ? bootArgs
    : `${bootArgs} tsc_early_khz=${hostTscKhz()}`.trim();
}

/**
 * `ramInState`: guest RAM is in the migration stream (a copy-on-write clone's
 * RAM is in no file). x-ignore-shared must then be off on both sides: with
 * it on, the loading side refuses pages for its file-backed RAM.
 */
interface StateHeader {
  machine: QemuMachine;
  ramInState: boolean;
}

async function readStateHeader(statePath: string): Promise<StateHeader & { offset: number }> {
  const fh = await open(statePath, "r").catch((err: unknown) => {
    throw new WrennError("not_found", `snapshot state ${statePath}: ${messageOf(err)}`);
  });
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const nl = buf.subarray(0, bytesRead).indexOf(10);
    const line = nl > 0 ? buf.subarray(0, nl).toString("utf8") : "";
    if (!line.startsWith(STATE_MAGIC)) {
      throw new WrennError(
        "failed_precondition",
        `${statePath} is not a QEMU snapshot written by this driver`,
      );
    }
    return { ...(JSON.parse(line.slice(STATE_MAGIC.length)) as StateHeader), offset: nl + 1 };
  } finally {
    await fh.close();
  }
}

const MIGRATION_TIMEOUT_MS = 120_000;

async function waitMigration(qmp: QmpClient, what: string): Promise<void> {
  const deadline = performance.now() + MIGRATION_TIMEOUT_MS;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const info = await qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
    if (info.status === "completed") return;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new WrennError(
        "internal",
        `${what} failed: ${info["error-desc"] ?? info.status} (see the QEMU log)`,
      );
    }
    if (performance.now() > deadline) {
      throw new WrennError(
        "deadline_exceeded",
        `${what} did not finish in ${MIGRATION_TIMEOUT_MS} ms`,
      );
    }
    await sleep(delay);
  }
}

/** The exit status the migration's writer left in `rcPath`; throws unless 0. */
async function writerStatus(rcPath: string, what: string): Promise<void> {
  const deadline = performance.now() + MIGRATION_TIMEOUT_MS;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const rc = await readFile(rcPath, "utf8").catch(() => "");
    if (rc.endsWith("\n")) {
      await rm(rcPath, { force: true });
      if (rc.trim() === "0") return;
      throw new WrennError(
        "resource_exhausted",
        `${what} failed: writing the state file exited with status ${rc.trim()} (is its disk full?)`,
      );
    }
    if (performance.now() > deadline) {
      throw new WrennError("deadline_exceeded", `${what}: the state writer did not finish`);
    }
    await sleep(delay);
  }
}

interface HandleState {
  vmId: string;
  pid: number;
  runDir: string;
  exited: Promise<ExitStatus>;
  qmp: QmpClient;
  /** The file backing guest RAM (mapped shared unless a private clone). */
  ramPath: string;
  sharedRam: boolean;
  /** We created the RAM file and delete it on stop. */
  ownsRam: boolean;
  machine: QemuMachine | null;
}

class QemuVm implements VmHandle {
  readonly vmId: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  readonly #s: HandleState;
  readonly #driver: QemuDriver;
  readonly #log: Logger;
  #stopping: Promise<void> | null = null;
  /**
   * Set after a snapshot that left its memory file mapped by this VM (no
   * copy): resuming must first give the VM a file of its own, or the
   * snapshot would change under its owner.
   */
  #sharedWithSnapshot: string | null = null;

  release(): void {
    this.#s.qmp.close();
  }

  constructor(driver: QemuDriver, s: HandleState, log: Logger) {
    this.#driver = driver;
    this.#s = s;
    this.#log = log;
    this.vmId = s.vmId;
    this.pid = s.pid;
    this.exited = s.exited;
    void this.exited.then(async (status) => {
      s.qmp.close();
      // A killed QEMU cannot remove its own socket.
      await rm(paths(s.runDir, s.vmId).qmp, { force: true });
      if (!this.#stopping) {
        const p = paths(s.runDir, s.vmId);
        this.#log.warn(
          { ...status, console: await tail(p.console), qemu: await tail(p.log) },
          "QEMU exited unexpectedly",
        );
      }
    });
  }

  get controlSocket(): string {
    return paths(this.#s.runDir, this.#s.vmId).qmp;
  }

  async pause(): Promise<void> {
    await this.#s.qmp.execute("stop");
  }

  async resume(): Promise<void> {
    if (this.#sharedWithSnapshot) await this.#takeBackRam(this.#sharedWithSnapshot);
    await this.#s.qmp.execute("cont");
  }

  /** The snapshot keeps the current file; the VM continues on a copy of it. */
  async #takeBackRam(snapshotMem: string): Promise<void> {
    const own = paths(this.#s.runDir, this.#s.vmId).ram;
    const frozen = `${snapshotMem}.frozen`;
    await timed(this.#log, "qemu.ram_unshare", async () => {
      await copySparse(snapshotMem, frozen);
      await rename(snapshotMem, own);
      await rename(frozen, snapshotMem);
    });
    this.#s.ramPath = own;
    this.#s.ownsRam = true;
    this.#sharedWithSnapshot = null;
  }

  /**
   * Writes the device state (≈60 KB: guest RAM is skipped through
   * x-ignore-shared) and makes `files.memPath` hold guest RAM: nothing to do
   * when it already is the RAM file, else a rename (a reflink or sparse copy
   * across filesystems). A private (copy-on-write) clone's RAM is not in
   * any file, so it goes into the state stream and `memPath` becomes an empty
   * file the restore fills. QEMU has no dirty-page diff: `kind` is ignored and
   * the memory file is always complete.
   */
  async snapshot(files: SnapshotFiles, _kind: "full" | "diff"): Promise<void> {
    const s = this.#s;
    const status = await s.qmp.execute<{ status: string }>("query-status");
    if (status.status === "running") {
      throw new WrennError("failed_precondition", "snapshot needs a paused VM (pause it first)");
    }
    if (!s.machine) {
      throw new WrennError(
        "failed_precondition",
        "this VM was re-adopted without its boot configuration; it cannot be snapshotted",
      );
    }
    const machine = s.machine;
    if (!s.sharedRam && files.memPath === s.ramPath) {
      throw new WrennError(
        "invalid_argument",
        "a copy-on-write clone cannot snapshot into the memory file it was cloned from",
      );
    }
    await timed(this.#log, "qemu.save_state", async () => {
      const header: StateHeader = { machine, ramInState: !s.sharedRam };
      await writeFile(files.statePath, STATE_MAGIC + JSON.stringify(header) + "\n");
      await s.qmp.execute("migrate-set-capabilities", {
        capabilities: [{ capability: "x-ignore-shared", state: s.sharedRam }],
      });
      // QEMU only sees the pipe: a `cat` that fails to write the file (a
      // full disk) must not pass for a saved state (a truncated one loses
      // the sandbox), so its exit status is kept and checked — in the run
      // dir, as beside the state it could not be written either.
      const rcPath = join(s.runDir, "save-state.rc");
      await rm(rcPath, { force: true });
      const state = shellQuote(files.statePath);
      await s.qmp.execute("migrate", {
        uri: `exec:cat >> ${state}; echo $? > ${shellQuote(rcPath)}`,
      });
      await waitMigration(s.qmp, "saving VM state");
      await writerStatus(rcPath, "saving VM state");
    });
    if (!s.sharedRam) {
      await rm(files.memPath, { force: true });
      await writeFile(files.memPath, "");
      await truncate(files.memPath, s.machine.memoryMb * 1024 * 1024);
      return;
    }
    if (files.memPath !== s.ramPath) {
      await timed(this.#log, "qemu.save_memory", async () => {
        // Shared RAM is the live memory whoever made the file (a resumed
        // sandbox consumed its snapshot), so it moves rather than copies.
        try {
          await rename(s.ramPath, files.memPath);
          s.ramPath = files.memPath;
          s.ownsRam = false;
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
        }
        await copySparse(s.ramPath, files.memPath);
      });
    }
    if (s.ramPath === files.memPath) this.#sharedWithSnapshot = files.memPath;
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const s = this.#s;
    if (await isAlive(s.pid)) {
      // quit's reply may never arrive: QEMU closes the socket as it exits.
      void s.qmp.execute("quit").catch(() => undefined);
      if (!(await within(s.exited, this.#driver.stopGraceMs))) {
        this.#log.warn({ pid: s.pid }, "QEMU did not quit; killing it");
        try {
          process.kill(s.pid, "SIGKILL");
        } catch {
          // Already gone.
        }
        if (!(await within(s.exited, 10_000))) {
          throw new WrennError("internal", `QEMU pid ${s.pid} survived SIGKILL`);
        }
      }
    }
    await s.exited;
    s.qmp.close();
    const p = paths(s.runDir, s.vmId);
    await Promise.all(
      [p.qmp, p.console, p.log, ...(s.ownsRam ? [s.ramPath] : [])].map((f) =>
        rm(f, { force: true }),
      ),
    );
  }
}

export class QemuDriver implements VmmDriver {
  readonly name = "qemu" as const;
  readonly accel: QemuAccel;
  readonly stopGraceMs: number;
  readonly #bin: string;
  readonly #log: Logger;

  constructor(opts: QemuDriverOptions) {
    this.accel = opts.accel;
    this.#bin = opts.qemuBinary ?? "qemu-system-x86_64";
    this.#log = (opts.log ?? createLogger("host-agent")).child({ vmm: "qemu", accel: opts.accel });
    this.stopGraceMs = opts.stopGraceMs ?? 3000;
  }

  async boot(spec: BootSpec): Promise<VmHandle> {
    const machine: QemuMachine = {
      vcpus: spec.vcpus,
      memoryMb: spec.memoryMb,
      kernelPath: spec.kernelPath,
      initrdPath: spec.initrdPath || undefined,
      bootArgs: withTscArg(spec.bootArgs),
    };
    const p = paths(spec.runDir, spec.vmId);
    // A stale RAM file from a crashed run would be mapped as this guest's memory.
    await rm(p.ram, { force: true });
    const { handle } = await this.#launch(spec, machine, {
      ramPath: p.ram,
      sharedRam: true,
      ownsRam: true,
    });
    return handle;
  }

  async restore(spec: RestoreSpec): Promise<VmHandle> {
    const header = await readStateHeader(spec.snapshot.statePath);
    const { ramInState, offset } = header;
    let machine = header.machine;
    const missing = async (path: string | undefined) => !!path && !(await exists(path));
    if (
      spec.currentKernel &&
      ((await missing(machine.kernelPath)) || (await missing(machine.initrdPath)))
    ) {
      const current = await spec.currentKernel();
      this.#log.warn(
        { recorded: machine.kernelPath, using: current.kernelPath },
        "the snapshot's kernel file is gone; starting QEMU with the current one",
      );
      machine = {
        ...machine,
        kernelPath: current.kernelPath,
        initrdPath: current.initrdPath || undefined,
      };
    }
    if (machine.vcpus !== spec.vcpus || machine.memoryMb !== spec.memoryMb) {
      this.#log.warn(
        { snapshot: machine, asked: { vcpus: spec.vcpus, memoryMb: spec.memoryMb } },
        "restore keeps the snapshot's vCPUs and memory size",
      );
    }
    const vm = await this.#launch(spec, machine, {
      ramPath: spec.snapshot.memPath,
      sharedRam: !spec.privateMemory,
      ownsRam: false,
      incoming: true,
    });
    const qmp = vm.qmp;
    try {
      await timed(this.#log, "qemu.load_state", async () => {
        await qmp.execute("migrate-set-capabilities", {
          capabilities: [{ capability: "x-ignore-shared", state: !ramInState }],
        });
        await qmp.execute("migrate-incoming", {
          uri: `exec:tail -c +${offset + 1} ${shellQuote(spec.snapshot.statePath)}`,
        });
        await waitMigration(qmp, "loading VM state");
        await qmp.execute("cont");
      });
    } catch (err) {
      const why = await tail(paths(spec.runDir, spec.vmId).log, 5);
      await vm.handle.stop();
      // QEMU's own log says why a load failed; the QMP error is only "connection closed".
      throw new WrennError("internal", `restoring the VM failed: ${why || messageOf(err)}`, {
        cause: err,
      });
    }
    return vm.handle;
  }

  async #launch(
    spec: BootSpec | RestoreSpec,
    machine: QemuMachine,
    ram: { ramPath: string; sharedRam: boolean; ownsRam: boolean; incoming?: boolean },
  ): Promise<{ handle: QemuVm; qmp: QmpClient }> {
    const p = paths(spec.runDir, spec.vmId);
    if (Buffer.byteLength(p.qmp) > 107) {
      throw new WrennError(
        "invalid_argument",
        `run directory path too long for a socket: ${p.qmp}`,
      );
    }
    await Promise.all([p.qmp, p.console, p.log].map((f) => rm(f, { force: true })));
    const argv = [
      this.#bin,
      ...qemuArgs({
        vmId: spec.vmId,
        accel: this.accel,
        machine,
        ramPath: ram.ramPath,
        sharedRam: ram.sharedRam,
        rootfs: spec.rootfs,
        tapName: spec.tapName,
        guestMac: spec.guestMac,
        qmpPath: p.qmp,
        consolePath: p.console,
        incoming: ram.incoming ?? false,
      }),
    ];
    const log = this.#log.child({ vm: spec.vmId });
    const proc = await timed(log, "qemu.spawn", () =>
      spawnInNetns({ netns: spec.netns, argv, logPath: p.log }),
    );
    const died = new AbortController();
    void proc.exited.then(() => died.abort());
    let qmp: QmpClient;
    try {
      qmp = await timed(log, "qemu.qmp_connect", () =>
        QmpClient.connect(p.qmp, { timeoutMs: 15_000, signal: died.signal }),
      );
    } catch (err) {
      try {
        process.kill(proc.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
      const status = await proc.exited;
      const why = (await tail(p.log, 3)) || messageOf(err);
      await Promise.all(
        [p.qmp, p.console, p.log, ...(ram.ownsRam ? [ram.ramPath] : [])].map((f) =>
          rm(f, { force: true }),
        ),
      );
      throw new WrennError(
        "internal",
        `QEMU did not start (${status.signal ?? `exit ${status.code}`}): ${why}`,
        { cause: err },
      );
    }
    const handle = new QemuVm(
      this,
      {
        vmId: spec.vmId,
        pid: proc.pid,
        runDir: spec.runDir,
        exited: proc.exited,
        qmp,
        machine,
        ...ram,
      },
      log,
    );
    log.info({ pid: proc.pid }, ram.incoming ? "QEMU started for restore" : "QEMU booting");
    return { handle, qmp };
  }

  async adopt(record: VmRecord): Promise<VmHandle | null> {
    const argv = await cmdlineOf(record.pid);
    if (!argv || !argv.some((a) => a.includes(qemuOpt(record.controlSocket)))) return null;
    if (!(await isAlive(record.pid))) return null;
    const qmp = await QmpClient.connect(record.controlSocket, { timeoutMs: 5000 });
    const memArg = argv.find((a) => a.startsWith("memory-backend-file,")) ?? "";
    const ramPath = /mem-path=((?:[^,]|,,)*)/.exec(memArg)?.[1]?.replaceAll(",,", ",") ?? "";
    const runDir = dirname(record.controlSocket);
    const log = this.#log.child({ vm: record.vmId });
    log.info({ pid: record.pid }, "re-adopted QEMU");
    return new QemuVm(
      this,
      {
        vmId: record.vmId,
        pid: record.pid,
        runDir,
        exited: watchForeignExit(record.pid, qmp.closed),
        qmp,
        ramPath,
        sharedRam: memArg.includes("share=on"),
        ownsRam: ramPath === paths(runDir, record.vmId).ram,
        machine: machineFromArgv(argv),
      },
      log,
    );
  }

  record(handle: VmHandle): VmRecord {
    if (!(handle instanceof QemuVm)) {
      throw new WrennError("invalid_argument", "not a VM started by the qemu driver");
    }
    return { vmId: handle.vmId, pid: handle.pid, controlSocket: handle.controlSocket };
  }
}

/** Recovers the boot configuration of a re-adopted VM from its command line. */
function machineFromArgv(argv: string[]): QemuMachine | null {
  const after = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const kernelPath = after("-kernel");
  const bootArgs = after("-append");
  const mem = /^(\d+)M$/.exec(after("-m") ?? "")?.[1];
  const smp = after("-smp");
  if (!kernelPath || bootArgs === undefined || !mem || !smp) return null;
  return {
    vcpus: Number(smp),
    memoryMb: Number(mem),
    kernelPath,
    initrdPath: after("-initrd"),
    bootArgs,
  };
}
