/**
 * The QEMU driver. A guest's memory is a file QEMU maps: a boot creates it in
 * the run dir, a pause moves it into the pause folder, a resume maps a copy
 * of it (so a failed resume leaves the paused memory as it was), and a clone
 * of a template maps the template's file copy-on-write — or its own reflink
 * copy where the data dir makes copies free, so its pauses are a rename.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, copyFile, open, rm, stat, truncate, writeFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { basename, dirname, join } from "node:path";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { createLogger, timed, type Logger } from "@wrenn/shared/log.ts";
import { nothpPath } from "@wrenn/nothp";
import { copySparse, discard, exists, reflinkInPlace } from "../../util/fs.ts";
import { spawnerRunner } from "../../spawner/client.ts";
import type { Runner } from "@wrenn/shared/command.ts";
import { cmdlineOf, isAlive, signal, tail, watchForeignExit } from "../../util/process.ts";
import { spawnInNetns } from "../process.ts";
import { detectCgroups, moveInto, vmLimits, type CgroupDriver } from "../../cgroup/cgroup.ts";
import { removeConsole } from "../console-log.ts";
import {
  giveBack,
  grantTraverse,
  handOver,
  identityOf,
  vmmIdentity,
  type VmmUser,
} from "../confine.ts";
import { QmpClient } from "../qmp.ts";
import type {
  BootSpec,
  KernelChoice,
  Machine,
  RestoreSpec,
  SnapshotFiles,
  StandbySpec,
  StandbyVmm,
  VmHandle,
  VmmDriver,
  VmRecord,
} from "../vmm.ts";
import {
  CLAIMED_NODE,
  DISK_NODE,
  TCG_TB_MB,
  currentPlatform,
  deviceNode,
  diskNode,
  legacyPlatform,
  machineFromArgv,
  paths,
  qemuArgs,
  withTscArg,
  type DiskFile,
  type QemuAccel,
  type QemuMachine,
  type QemuPlatform,
} from "./args.ts";
import { QemuStandby, standbyFiles, type Started } from "./standby.ts";
import { readStateHeader, waitMigration, type StateHeader } from "./state-file.ts";
import { QemuVm } from "./vm.ts";

export type { QemuAccel, QemuPlatform } from "./args.ts";
export type { QemuVm } from "./vm.ts";

export interface QemuDriverOptions {
  /** "tcg" unless a boot probe showed KVM usable (see selectVmm). */
  accel: QemuAccel;
  qemuBinary?: string;
  log?: Logger;
  /** How long `stop` waits after QMP `quit` before SIGKILL. */
  stopGraceMs?: number;
  /** The data dir's filesystem makes `cp --reflink` copies (xfs, btrfs): copies cost nothing. */
  reflinkCopies?: boolean;
  /** And `reflinkInPlace` works there: a VM's memory is copied while its QEMU starts. */
  reflinkInPlace?: boolean;
  /** Runs the driver's host commands (`xfs_io`); default: the spawner's. */
  runner?: Runner;
  /**
   * Run each QEMU as a uid:gid of its own under its seccomp filter (see
   * confine.ts). Default: when the agent runs as root.
   */
  confine?: boolean;
  /** Each VM's cgroup driver; default: the host's (detectCgroups), null for none. */
  cgroups?: CgroupDriver | null;
  /**
   * The machine options and CPU model new VMs boot with (default
   * currentPlatform(accel)). A restore uses the ones its state recorded.
   */
  platform?: QemuPlatform;
}

/** MiB a QEMU process uses beyond guest RAM (and TCG's translation cache): devices, heap, threads. */
const QEMU_OVERHEAD_MB = 256;

/** A restore from explicit files (the driver's own layer; tests drive it directly). */
export interface QemuRestoreSpec extends Machine {
  snapshot: SnapshotFiles;
  /**
   * Map `memPath` copy-on-write (share=off), leaving it unchanged. Without it
   * QEMU maps the file shared: it becomes the live guest memory.
   */
  privateMemory?: boolean;
  /** Used when the snapshot's recorded kernel file is gone (QEMU opens it at start). */
  kernel?: { kernelPath: string; initrdPath?: string };
  /** Settles when `memPath` holds the memory, copied while QEMU starts; the state loads after. */
  memoryCopied?: Promise<void> | undefined;
  /** Read `memPath` into the page cache as the VM starts (a resume's own copy). */
  readAhead?: boolean;
}

/**
 * Under TCG, QEMU asks for transparent huge pages on its translation cache
 * and on each RAM block it allocates: the partly filled last piece of the
 * cache and the ACPI tables' 4 KiB block each took a 2 MiB page. PSS beyond
 * guest RAM 75 → 71.5 MiB claimed from the pool, 59 → 56.4 restored, with
 * creates and first commands as fast (measured alternating, 2026-12-04).
 * Under KVM there is no translation cache, and guest RAM may want huge pages.
 */
function tcgLauncher(log: Logger): string[] {
  const nothp = nothpPath();
  if (!nothp) {
    log.warn("wrenn-nothp is not built ('npm install' builds it): each VM takes ≈ 3 MiB more");
  }
  return nothp ? [nothp] : [];
}

const STATE = "state";
const MEMFILE = "memfile";

export class QemuDriver implements VmmDriver {
  readonly name = "qemu" as const;
  readonly accel: QemuAccel;
  readonly stopGraceMs: number;
  readonly #bin: string;
  readonly #log: Logger;
  readonly #reflinkCopies: boolean;
  /**
   * A resume reads its reflinked RAM copy ahead (QemuVm.readRamAhead). Only
   * `bench/lifecycle.ts` turns it off, for its baseline in the same run.
   */
  readAheadResumes = true;
  readonly #reflinkInPlace: boolean;
  readonly #run: Runner;
  readonly #confine: boolean;
  readonly #cgroups: Promise<CgroupDriver | null>;
  readonly #platform: QemuPlatform;
  /** What QEMU is started through: wrenn-nothp under TCG (see tcgLauncher). */
  readonly #launcher: string[];

  constructor(opts: QemuDriverOptions) {
    this.accel = opts.accel;
    this.#bin = opts.qemuBinary ?? "qemu-system-x86_64";
    this.#log = (opts.log ?? createLogger("host-agent")).child({ vmm: "qemu", accel: opts.accel });
    this.stopGraceMs = opts.stopGraceMs ?? 3000;
    this.#reflinkCopies = opts.reflinkCopies ?? false;
    this.#reflinkInPlace = opts.reflinkInPlace ?? false;
    this.#run = opts.runner ?? spawnerRunner;
    this.#confine = opts.confine ?? process.getuid?.() === 0;
    this.#platform = opts.platform ?? currentPlatform(opts.accel);
    this.#launcher = opts.accel === "tcg" ? tcgLauncher(this.#log) : [];
    this.#cgroups =
      opts.cgroups !== undefined
        ? Promise.resolve(opts.cgroups)
        : process.getuid?.() === 0
          ? detectCgroups()
          : Promise.resolve(null);
  }

  /** The uid:gid the VM's QEMU drops to (its own: see vmmIdentity), or null when unconfined. */
  #user(netns: string): Promise<VmmUser | null> {
    return this.#confine ? vmmIdentity(netns) : Promise.resolve(null);
  }

  kernelFile(kernel: KernelChoice): string {
    return kernel.qemuKernel;
  }

  async boot(spec: BootSpec): Promise<QemuVm> {
    const machine: QemuMachine = {
      vcpus: spec.vcpus,
      memoryMb: spec.memoryMb,
      kernelPath: spec.kernelPath,
      initrdPath: spec.initrdPath || undefined,
      bootArgs: withTscArg(spec.bootArgs),
      platform: this.#platform,
    };
    const p = paths(spec.runDir, spec.vmId);
    // A stale RAM file from a crashed run would be mapped as this guest's memory.
    await rm(p.ram, { force: true });
    const { handle, qmp } = await this.#launch(spec, machine, {
      ramPath: p.ram,
      sharedRam: true,
      ownsRam: true,
    });
    try {
      await qmp.execute("cont");
    } catch (err) {
      await handle.stop();
      throw new WrennError("internal", `starting the VM failed: ${messageOf(err)}`, {
        cause: err,
      });
    }
    return handle;
  }

  /**
   * A resume maps its own copy of the paused memory; a clone maps the
   * template's file privately (nothing copied), unless copies are reflinks.
   * The copy takes the name of the VM's own RAM file, so stop and pause
   * treat it so.
   */
  async restore(spec: RestoreSpec): Promise<VmHandle> {
    if (spec.standby) return this.#restoreInto(this.#ownStandby(spec.standby), spec);
    let memPath = join(spec.snapshotDir, MEMFILE);
    const ownCopy = !spec.clone || this.#reflinkCopies;
    let copying: Promise<void> | undefined;
    if (ownCopy) {
      const own = paths(spec.runDir, spec.vmId).ram;
      const log = this.#log.child({ vm: spec.vmId });
      // Right after a pause the reflink first writes back the memory's dirty
      // pages, tens of ms (as long as QEMU's start), so it runs beside that
      // start; later it takes 1–2 ms, less than running it beside.
      if (spec.unwritten && this.#reflinkInPlace && (await sameFilesystem(memPath, spec.runDir))) {
        copying = (await copyBesideStart(memPath, own, log, this.#run)).done;
      } else {
        await timed(log, "qemu.copy_memory", () => copySparse(memPath, own, this.#run));
      }
      memPath = own;
    }
    try {
      return await this.restoreFiles({
        ...spec,
        snapshot: { statePath: join(spec.snapshotDir, STATE), memPath },
        privateMemory: !ownCopy,
        kernel: spec.kernel,
        memoryCopied: copying,
        // A reflink (a plain copy leaves its pages cached), and not a
        // clone's: a clone's guest touches a fraction of its template's pages.
        readAhead: !spec.clone && this.#reflinkCopies && this.readAheadResumes,
      });
    } catch (err) {
      // A copy still under way would write the file after its removal.
      await copying?.catch(() => undefined);
      if (ownCopy) await rm(memPath, { force: true });
      throw err;
    }
  }

  /** QEMU has no dirty-page diff: the memory file is always complete. */
  async saveMemory(vm: VmHandle, save: { dir: string }): Promise<void> {
    await this.#own(vm).snapshot(
      { statePath: join(save.dir, STATE), memPath: join(save.dir, MEMFILE) },
      "full",
    );
  }

  /**
   * The VM runs on its own copy now. Freeing a GiB of extents and page cache
   * takes a rename over it (the next pause) hundreds of ms: move it aside now
   * and let it go in the background.
   */
  async afterResume(dir: string, log: Logger): Promise<void> {
    await discard(join(dir, MEMFILE), log);
  }

  /**
   * Running sandboxes write into their RAM file: a template gets its own
   * (sparse) copy, root's alone — QEMU opens it before it drops to a VMM's
   * uid, and no VMM may read another team's template.
   */
  async copyMemory(from: string, to: string): Promise<void> {
    await copyFile(join(from, STATE), join(to, STATE));
    await copySparse(join(from, MEMFILE), join(to, MEMFILE), this.#run);
    await Promise.all([chmod(join(to, STATE), 0o600), chmod(join(to, MEMFILE), 0o600)]);
  }

  async restoreFiles(spec: QemuRestoreSpec): Promise<QemuVm> {
    const header = await readStateHeader(spec.snapshot.statePath);
    const machine = await this.#restoredMachine(header, spec);
    // QEMU reads the state from a descriptor root opened, past the header:
    // as its own uid it may not open the file (root's, 0600 — a template's,
    // or a private clone's pause, which holds the guest's RAM).
    const vm = await this.#launch(spec, machine, {
      ramPath: spec.snapshot.memPath,
      sharedRam: !spec.privateMemory,
      // A copy made for this VM (a resume, a reflink clone) goes with it.
      ownsRam: spec.snapshot.memPath === paths(spec.runDir, spec.vmId).ram,
      incoming: true,
      state: { path: spec.snapshot.statePath, position: header.offset },
    });
    // Once QEMU has started (reads beside its start slowed it by 15–25 ms),
    // and the copy is whole.
    if (spec.readAhead) vm.handle.readRamAhead(spec.memoryCopied);
    try {
      await spec.memoryCopied;
    } catch (err) {
      await vm.handle.stop();
      throw new WrennError("internal", `copying the VM's memory failed: ${messageOf(err)}`, {
        cause: err,
      });
    }
    await this.#loadState(vm.handle, vm.qmp, spec, header.ramInState);
    return vm.handle;
  }

  /**
   * The machine a restore from `header` starts: the one the state was saved
   * from (a state loads only into it; the VM keeps it, so its own snapshots
   * record it too), on the current kernel if the recorded file is gone.
   */
  async #machineOf(header: StateHeader, kernel: RestoreSpec["kernel"] | undefined) {
    let machine: QemuMachine = {
      ...header.machine,
      platform: header.machine.platform ?? legacyPlatform(this.accel),
    };
    const gone = async (path: string | undefined) => !!path && !(await exists(path));
    const fellBack =
      !!kernel && ((await gone(machine.kernelPath)) || (await gone(machine.initrdPath)));
    if (kernel && fellBack) {
      machine = {
        ...machine,
        kernelPath: kernel.kernelPath,
        initrdPath: kernel.initrdPath || undefined,
      };
    }
    return { machine, recorded: header.machine.kernelPath, fellBack };
  }

  async #restoredMachine(
    header: StateHeader,
    spec: Machine & { kernel?: RestoreSpec["kernel"] },
  ): Promise<QemuMachine> {
    const { machine, recorded, fellBack } = await this.#machineOf(header, spec.kernel);
    if (fellBack) {
      this.#log.warn(
        { recorded, using: machine.kernelPath },
        "the snapshot's kernel file is gone; starting QEMU with the current one",
      );
    }
    if (machine.vcpus !== spec.vcpus || machine.memoryMb !== spec.memoryMb) {
      this.#log.warn(
        { snapshot: machine, asked: { vcpus: spec.vcpus, memoryMb: spec.memoryMb } },
        "restore keeps the snapshot's vCPUs and memory size",
      );
    }
    return machine;
  }

  /**
   * Loads the state QEMU reads on fd 3 (`feed` writes it there, for a
   * standby) and runs the VM; on failure stops it, saying why.
   */
  async #loadState(
    vm: QemuVm,
    qmp: QmpClient,
    at: { runDir: string },
    ramInState: boolean,
    feed?: () => Promise<void>,
  ): Promise<void> {
    try {
      await timed(this.#log, "qemu.load_state", async () => {
        await qmp.execute("migrate-set-capabilities", {
          capabilities: [{ capability: "x-ignore-shared", state: !ramInState }],
        });
        // fd 3: the first descriptor after stdio (spawnInNetns' passFiles).
        await qmp.execute("migrate-incoming", { uri: "fd:3" });
        // Written while QEMU reads: a FIFO holds less than a state.
        const fed = feed?.();
        fed?.catch(() => undefined);
        await waitMigration(qmp, "loading VM state");
        await fed;
        await qmp.execute("cont");
      });
    } catch (err) {
      const why = await tail(paths(at.runDir, vm.vmId).log, 5);
      await vm.stop();
      // QEMU's own log says why a load failed; the QMP error is only "connection closed".
      throw new WrennError("internal", `restoring the VM failed: ${why || messageOf(err)}`, {
        cause: err,
      });
    }
  }

  async standbyKey(dir: string, kernel: RestoreSpec["kernel"]): Promise<string | null> {
    // The claim fills the RAM file QEMU already maps: only a reflink in place can.
    if (!this.#reflinkInPlace) return null;
    const header = await readStateHeader(join(dir, STATE)).catch(() => null);
    return header && JSON.stringify((await this.#machineOf(header, kernel)).machine);
  }

  async startStandby(spec: StandbySpec): Promise<QemuStandby> {
    const machine = JSON.parse(spec.key) as QemuMachine;
    const p = paths(spec.runDir, spec.vmId);
    const own = standbyFiles(spec.runDir, spec.vmId);
    const files = [p.ram, own.placeholder, own.fifo];
    try {
      await Promise.all(files.map((f) => rm(f, { force: true })));
      await this.#run("mkfifo", ["-m", "600", own.fifo]);
      // At the guest's size before QEMU maps it: the claim fills it in place.
      await writeFile(p.ram, "", { mode: 0o600 });
      await truncate(p.ram, machine.memoryMb * 1024 * 1024);
      await writeFile(own.placeholder, "", { mode: 0o600 });
      const started = await this.#start(spec, machine, {
        ramPath: p.ram,
        sharedRam: true,
        ownsRam: true,
        incoming: true,
        state: { path: own.fifo, position: 0 },
        disk: { path: own.placeholder, format: "raw" },
        handOver: false,
      });
      started.log.info({ pid: started.pid }, "standby QEMU started");
      return new QemuStandby(spec.key, started, spec.runDir, this.stopGraceMs);
    } catch (err) {
      await Promise.all(files.map((f) => rm(f, { force: true })));
      throw err;
    }
  }

  /**
   * A resume into a standby: the paused memory reflinked into the RAM file
   * it maps, the sandbox's disk put under its device, the state written
   * into its FIFO. Its files are in `spec.runDir` now (the caller moved them).
   * If it cannot take the resume, a QEMU started as without it does.
   */
  async #restoreInto(standby: QemuStandby, spec: RestoreSpec): Promise<VmHandle> {
    const started = standby.take();
    const p = paths(spec.runDir, standby.vmId);
    const own = standbyFiles(spec.runDir, standby.vmId);
    const vm = this.#handle(started, {
      runDir: spec.runDir,
      ramPath: p.ram,
      sharedRam: true,
      ownsRam: true,
      diskPath: started.user ? spec.rootfs.path : null,
    });
    const log = started.log;
    const statePath = join(spec.snapshotDir, STATE);
    let header: StateHeader & { offset: number };
    try {
      header = await readStateHeader(statePath);
      const machine = await this.#restoredMachine(header, spec);
      if (JSON.stringify(machine) !== standby.key) {
        throw new WrennError("internal", "the standby VMM was started for another machine");
      }
      // Together: right after a pause the copy waits for the memory's write-back.
      const steps = await Promise.allSettled([
        timed(log, "qemu.copy_memory", () =>
          reflinkInPlace(join(spec.snapshotDir, MEMFILE), p.ram, this.#run),
        ),
        timed(log, "qemu.attach_disk", async () => {
          if (started.user) await handOverDisk(spec.rootfs.path, started.user);
          const protocol = await protocolOf(spec.rootfs.path);
          await started.qmp.execute(
            "blockdev-add",
            diskNode(CLAIMED_NODE, { ...spec.rootfs, protocol }),
          );
          await started.qmp.execute("blockdev-reopen", { options: [deviceNode(CLAIMED_NODE)] });
          await started.qmp.execute("blockdev-del", { "node-name": DISK_NODE });
        }),
      ]);
      for (const step of steps) if (step.status === "rejected") throw step.reason;
    } catch (err) {
      // Before any state loaded: the resume starts its own QEMU in its place
      // (a QEMU without blockdev-reopen, a standby for another machine).
      await vm.stop();
      await Promise.all([own.placeholder, own.fifo].map((f) => rm(f, { force: true })));
      log.warn(
        { err: messageOf(err) },
        "the standby QEMU could not take the resume; starting a QEMU for it",
      );
      return this.restore({ ...spec, standby: undefined });
    }
    const { offset } = header;
    try {
      await this.#loadState(vm, started.qmp, spec, header.ramInState, () =>
        pipeline(createReadStream(statePath, { start: offset }), createWriteStream(own.fifo)),
      );
    } finally {
      await Promise.all([own.placeholder, own.fifo].map((f) => rm(f, { force: true })));
    }
    // Once the VM runs: reads beside the state's load slowed it.
    if (this.#reflinkCopies && this.readAheadResumes) vm.readRamAhead(undefined);
    log.info({ pid: vm.pid }, "standby QEMU took the resume");
    return vm;
  }

  #ownStandby(standby: StandbyVmm): QemuStandby {
    if (!(standby instanceof QemuStandby)) {
      throw new WrennError("invalid_argument", "not a standby started by the qemu driver");
    }
    return standby;
  }

  async #launch(
    spec: BootSpec | QemuRestoreSpec,
    machine: QemuMachine,
    ram: {
      ramPath: string;
      sharedRam: boolean;
      ownsRam: boolean;
      incoming?: boolean;
      /** The incoming state, passed open at its first byte after the header. */
      state?: { path: string; position: number };
    },
  ): Promise<{ handle: QemuVm; qmp: QmpClient; user: VmmUser | null }> {
    const started = await this.#start(spec, machine, { ...ram, disk: spec.rootfs, handOver: true });
    const handle = this.#handle(started, {
      runDir: spec.runDir,
      ramPath: ram.ramPath,
      sharedRam: ram.sharedRam,
      ownsRam: ram.ownsRam,
      diskPath: started.user ? spec.rootfs.path : null,
    });
    started.log.info(
      { pid: started.pid, uid: started.user?.uid ?? 0, cgroup: started.cgroups?.version ?? "none" },
      ram.incoming ? "QEMU started for restore" : "QEMU booting",
    );
    return { handle, qmp: started.qmp, user: started.user };
  }

  /** Starts QEMU, in its cgroup, paused (-S), its QMP connected; on failure leaves nothing. */
  async #start(
    spec: Pick<Machine, "vmId" | "netns" | "tapName" | "guestMac" | "runDir">,
    machine: QemuMachine,
    opts: {
      ramPath: string;
      sharedRam: boolean;
      ownsRam: boolean;
      incoming?: boolean;
      state?: { path: string; position: number };
      disk: Machine["rootfs"];
      /** The disk is the sandbox's own: its QEMU's uid gets it (a standby's placeholder is root's). */
      handOver: boolean;
    },
  ): Promise<Started> {
    const p = paths(spec.runDir, spec.vmId);
    if (Buffer.byteLength(p.qmp) > 107) {
      throw new WrennError(
        "invalid_argument",
        `run directory path too long for a socket: ${p.qmp}`,
      );
    }
    await Promise.all([
      removeConsole(spec.runDir, spec.vmId),
      ...[p.qmp, p.consoleSocket, p.log].map((f) => rm(f, { force: true })),
    ]);
    const [user, cgroups, protocol] = await Promise.all([
      this.#user(spec.netns),
      this.#cgroups,
      protocolOf(opts.disk.path),
    ]);
    // A restore reopens the disk read-write when the incoming state is
    // loaded, after QEMU dropped to its uid: the sandbox's own disk (never a
    // shared base image, which stays read-only behind it) is that uid's
    // alone until QEMU exits (QemuVm gives it back).
    const handedDisk = user && opts.handOver ? opts.disk.path : null;
    if (user && handedDisk) await handOverDisk(handedDisk, user);
    const argv = [
      ...this.#launcher,
      this.#bin,
      ...qemuArgs({
        vmId: spec.vmId,
        accel: this.accel,
        machine,
        ramPath: opts.ramPath,
        sharedRam: opts.sharedRam,
        rootfs: { ...opts.disk, protocol },
        tapName: spec.tapName,
        guestMac: spec.guestMac,
        qmpPath: p.qmp,
        consoleSocket: p.consoleSocket,
        incoming: opts.incoming ?? false,
        runAs: user ? `${user.uid}:${user.gid}` : undefined,
      }),
    ];
    const log = this.#log.child({ vm: spec.vmId });
    const cgroupProcs = cgroups
      ? await cgroups.create(
          spec.vmId,
          vmLimits({
            vcpus: machine.vcpus,
            memoryMb: machine.memoryMb,
            overheadMb: QEMU_OVERHEAD_MB + (this.accel === "tcg" ? TCG_TB_MB : 0),
          }),
        )
      : undefined;
    let proc;
    try {
      proc = await timed(log, "qemu.spawn", () =>
        spawnInNetns({
          netns: spec.netns,
          argv,
          logPath: p.log,
          passFiles: opts.state ? [opts.state] : [],
        }),
      );
    } catch (err) {
      await cgroups?.remove(spec.vmId).catch(() => undefined);
      if (user && handedDisk) await giveBack(handedDisk, user).catch(() => undefined);
      throw err;
    }
    const died = new AbortController();
    void proc.exited.then(() => died.abort());
    // Into its cgroup while it starts up: QEMU starts paused (-S), so its
    // guest runs only inside it, and the move's wait (an RCU grace period)
    // overlaps QEMU's start-up instead of preceding it.
    const moved = cgroupProcs ? moveInto(cgroupProcs, proc.pid) : Promise.resolve();
    moved.catch(() => undefined);
    let qmp: QmpClient | undefined;
    try {
      qmp = await timed(log, "qemu.qmp_connect", () =>
        QmpClient.connect(p.qmp, { timeoutMs: 15_000, signal: died.signal }),
      );
      await moved;
    } catch (err) {
      qmp?.close();
      signal(proc.pid, "SIGKILL");
      const status = await proc.exited;
      await cgroups?.remove(spec.vmId).catch(() => undefined);
      if (user && handedDisk) await giveBack(handedDisk, user).catch(() => undefined);
      const why = (await tail(p.log, 3)) || messageOf(err);
      await Promise.all([
        removeConsole(spec.runDir, spec.vmId),
        ...[p.qmp, p.consoleSocket, p.log, ...(opts.ownsRam ? [opts.ramPath] : [])].map((f) =>
          rm(f, { force: true }),
        ),
      ]);
      throw new WrennError(
        "internal",
        qmp
          ? `moving QEMU into its cgroup failed: ${messageOf(err)}`
          : `QEMU did not start (${status.signal ?? `exit ${status.code}`}): ${why}`,
        { cause: err },
      );
    }
    // QEMU made or opened its RAM file as root before it dropped; made, it
    // is 0644, and the run dir is searchable: another VMM's uid could read
    // this guest's memory. (A clone's template file: its mode is the template's.)
    if (user && opts.sharedRam) await chmod(opts.ramPath, 0o600).catch(() => undefined);
    return {
      vmId: spec.vmId,
      pid: proc.pid,
      exited: proc.exited,
      qmp,
      user,
      cgroups,
      machine,
      log,
    };
  }

  /** The handle of a started QEMU, whose files are now in `where.runDir`. */
  #handle(
    s: Started,
    where: {
      runDir: string;
      ramPath: string;
      sharedRam: boolean;
      ownsRam: boolean;
      diskPath: string | null;
    },
  ): QemuVm {
    return new QemuVm(
      {
        vmId: s.vmId,
        pid: s.pid,
        runDir: where.runDir,
        exited: s.exited,
        qmp: s.qmp,
        machine: s.machine,
        ramPath: where.ramPath,
        sharedRam: where.sharedRam,
        ownsRam: where.ownsRam,
        user: s.user,
        diskPath: where.diskPath,
        cgroups: s.cgroups,
        run: this.#run,
      },
      s.log,
      this.stopGraceMs,
    );
  }

  async adopt(record: VmRecord): Promise<QemuVm | null> {
    const argv = await cmdlineOf(record.pid);
    // By its name: a standby's sockets were made where it waited, not where it runs.
    const named = !!argv && argv[argv.indexOf("-name") + 1] === `wrenn-${record.vmId}`;
    if (!argv || !named || !(await isAlive(record.pid))) {
      // It died while no agent watched: nobody gave its disk back to root.
      await this.#giveBackRecorded(record);
      return null;
    }
    const qmp = await QmpClient.connect(record.controlSocket, { timeoutMs: 5000 });
    const memArg = argv.find((a) => a.startsWith("memory-backend-file,")) ?? "";
    const memPath = /mem-path=((?:[^,]|,,)*)/.exec(memArg)?.[1]?.replaceAll(",,", ",") ?? "";
    const runDir = dirname(record.controlSocket);
    // Its own RAM file is in its run dir, wherever that was when QEMU started.
    const own = paths(runDir, record.vmId).ram;
    const ownsRam = basename(memPath) === basename(own);
    const log = this.#log.child({ vm: record.vmId });
    log.info({ pid: record.pid }, "re-adopted QEMU");
    // Stopped for a write its disk had no space for, under the last agent.
    const { status } = await qmp.execute<{ status: string }>("query-status");
    return new QemuVm(
      {
        vmId: record.vmId,
        pid: record.pid,
        runDir,
        exited: watchForeignExit(record.pid, qmp.closed),
        qmp,
        ramPath: ownsRam ? own : memPath,
        sharedRam: memArg.includes("share=on"),
        ownsRam,
        machine: machineFromArgv(argv),
        // Its own uid, as it runs: the namespace it was started in may be named anew since.
        user: argv.includes("-runas") ? await identityOf(record.pid) : null,
        diskPath: handedOverOf(record)?.disk ?? null,
        cgroups: await this.#cgroups,
        run: this.#run,
        waitsForSpace: status === "io-error",
      },
      log,
      this.stopGraceMs,
    );
  }

  record(handle: VmHandle): VmRecord {
    const vm = this.#own(handle);
    const handed = vm.handedOver;
    return {
      vmId: vm.vmId,
      pid: vm.pid,
      controlSocket: vm.controlSocket,
      ...(handed ? { driver: { handedOver: handed } } : {}),
    };
  }

  /** What a record says its gone VM was handed (our own files, checked all the same). */
  async #giveBackRecorded(record: VmRecord): Promise<void> {
    const h = handedOverOf(record);
    if (!h) return;
    await giveBack(h.disk, { name: `${h.uid}:${h.gid}`, uid: h.uid, gid: h.gid }).catch(
      (err: unknown) => {
        this.#log.warn(
          { vm: record.vmId, err: messageOf(err) },
          "could not give the disk back to root",
        );
      },
    );
  }

  #own(vm: VmHandle): QemuVm {
    if (!(vm instanceof QemuVm)) {
      throw new WrennError("invalid_argument", "not a VM started by the qemu driver");
    }
    return vm;
  }
}

/** What a record says its VM's uid was handed (our own files, checked all the same). */
function handedOverOf(record: VmRecord): { disk: string; uid: number; gid: number } | null {
  const h = record.driver?.handedOver as Partial<{ disk: string; uid: number; gid: number }>;
  if (typeof h?.disk !== "string" || typeof h.uid !== "number" || h.uid === 0) return null;
  return { disk: h.disk, uid: h.uid, gid: typeof h.gid === "number" ? h.gid : h.uid };
}

/** How QEMU opens a disk: a block device (dm-snapshot's) through host_device. */
async function protocolOf(path: string): Promise<DiskFile["protocol"]> {
  const st = await stat(path).catch(() => null);
  return st?.isBlockDevice() ? "host_device" : "file";
}

/** The sandbox's disk becomes the VMM's uid's (see #start); a missing one is QEMU's to report. */
async function handOverDisk(path: string, user: VmmUser): Promise<void> {
  try {
    await handOver(path, user);
    await grantTraverse(dirname(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

async function sameFilesystem(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([stat(a), stat(b)]);
  return sa.dev === sb.dev;
}

/**
 * Starts copying a snapshot's memory to a VM's own RAM file, to run while
 * its QEMU starts; `done` settles when the copy is. QEMU maps the file as it
 * starts but touches no guest page until the state loads, which waits for
 * the copy. The file is made at its full size before QEMU opens it, so the
 * two share one inode; and it is filled in place without its size changing
 * (`reflinkInPlace`): QEMU refuses a file shorter than the guest's memory.
 */
async function copyBesideStart(
  src: string,
  dst: string,
  log: Logger,
  run: Runner,
): Promise<{ done: Promise<void> }> {
  try {
    const fh = await open(dst, "w", 0o600);
    try {
      await fh.truncate((await stat(src)).size);
    } finally {
      await fh.close();
    }
  } catch (err) {
    await rm(dst, { force: true });
    throw err;
  }
  const done = timed(log, "qemu.copy_memory", () => reflinkInPlace(src, dst, run));
  // Awaited once QEMU has started, or after it failed to.
  done.catch(() => undefined);
  return { done };
}
