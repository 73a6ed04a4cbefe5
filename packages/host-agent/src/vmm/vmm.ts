/**
 * The seam between the sandbox lifecycle and a virtual machine monitor. Each
 * driver (qemu/, firecracker/) implements it and owns how its guests'
 * memory is kept: what a restore maps, what a pause writes, what a template
 * copies. The lifecycle never imports a concrete driver and never asks
 * which one it has.
 */
import type { Logger } from "@wrenn/shared/log.ts";

export type VmmName = "qemu" | "firecracker";

/** The machine every VM of a sandbox runs as, booted or restored. */
export interface Machine {
  /** Unique per VM; names sockets and logs. */
  vmId: string;
  vcpus: number;
  memoryMb: number;
  rootfs: { path: string; format: "raw" | "qcow2" };
  /** TAP device name inside `netns`; the VM gets one virtio-net on it. */
  tapName: string;
  guestMac: string;
  /** Network namespace the VMM process runs in (`ip netns` name). */
  netns: string;
  /** Directory the driver may use for sockets, logs, state and memory files. */
  runDir: string;
}

/** Everything needed to boot a VM from a base template. */
export interface BootSpec extends Machine {
  kernelPath: string;
  initrdPath?: string;
  /** Kernel command line (the driver adds its own console/device arguments). */
  bootArgs: string;
}

/** Starts a VM from a memory snapshot folder written by this driver's `saveMemory`. */
export interface RestoreSpec extends Machine {
  snapshotDir: string;
  /**
   * true: a template many sandboxes start from, which must stay as it is;
   * false: this sandbox's own paused memory, which the restore may consume
   * (the folder stays usable until `afterResume`, so a failed resume retries).
   */
  clone: boolean;
  /**
   * The snapshot's files may hold pages the host has not yet written back
   * (a resume within a second of its pause): a reflink of them waits for
   * that write-back first.
   */
  unwritten?: boolean;
  /** The kernel the host boots now, for a snapshot whose own kernel file is gone. */
  kernel: { kernelPath: string; initrdPath?: string };
  /**
   * Restore into this standby of `standbyKey(snapshotDir)` (not a clone's):
   * the caller moved its run dir to `runDir`, and `vmId` is its own. Whether
   * the restore succeeds or fails, the standby is the restore's (one that
   * cannot take it gives way to a VMM started as without it).
   */
  standby?: StandbyVmm;
}

/** The host's kernel builds; each VMM boots its own format. */
export interface KernelChoice {
  /** Uncompressed ELF (Firecracker). */
  vmlinux: string;
  /** bzImage (QEMU). */
  qemuKernel: string;
  /** "" when the kernel needs none. */
  initrd: string;
}

/** A running VMM process. */
export interface VmHandle {
  readonly vmId: string;
  readonly pid: number;
  /**
   * Resolves when the VM is gone for whatever reason: its process exited, or
   * something it cannot run without (Firecracker's page server) died and the
   * driver stopped it.
   */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * True while the VMM holds the VM stopped because its disk could not grow
   * (the host's data disk full); it runs on once there is space. Absent
   * where the VMM gives the guest the write error instead.
   */
  readonly waitsForSpace?: boolean;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Stops the VMM (and what it needs) and waits for its exit; idempotent. */
  stop(): Promise<void>;
  /**
   * true: nobody uses the VM yet (a warm pool entry), so it takes a small
   * CPU share (BACKGROUND_CPU_WEIGHT) and running sandboxes keep most of
   * theirs; false: its vCPUs' share again. Absent where the agent does not place the VMM in a cgroup
   * of its own (Firecracker's jailer does).
   */
  setBackground?(on: boolean): Promise<void>;
  /**
   * Drops the agent's control connection and leaves the VM running (agent
   * shutdown): the next agent adopts it, and QMP takes one client at a time.
   */
  release(): void;
}

/** What a driver persists so a restarted agent can find its VM again. */
export interface VmRecord {
  vmId: string;
  pid: number;
  /** Driver-specific control endpoint (QMP or API socket path). */
  controlSocket: string;
  /** Whatever else the driver needs to re-adopt the VM (Firecracker: its page server). */
  driver?: Record<string, unknown>;
}

export interface VmmDriver {
  readonly name: VmmName;
  /** How guests run: hardware virtualisation, or QEMU's emulation (TCG) where KVM is not usable. */
  readonly accel: "kvm" | "tcg";
  /** The kernel file this VMM boots. */
  kernelFile(kernel: KernelChoice): string;
  boot(spec: BootSpec): Promise<VmHandle>;
  restore(spec: RestoreSpec): Promise<VmHandle>;
  /** Re-attaches to a VM started by an earlier agent process, or null if it is gone. */
  adopt(record: VmRecord): Promise<VmHandle | null>;
  record(handle: VmHandle): VmRecord;
  /**
   * A pause: writes the frozen VM's device state and memory into `dir`.
   * `parents` are older snapshots of the same memory, newest first (the
   * sandbox's last pause, the template it came from), for a driver that
   * can write only what changed since.
   */
  saveMemory(
    vm: VmHandle,
    save: { dir: string; parents: string[]; memoryMb: number; log: Logger },
  ): Promise<void>;
  /** A resume from `dir` succeeded: drop what the running VM no longer needs there. */
  afterResume(dir: string, log: Logger): Promise<void>;
  /** Copies the memory snapshot in `from` into a template folder `to`. */
  copyMemory(from: string, to: string): Promise<void>;
  /**
   * The machine a resume from the paused memory in `dir` starts, as a key
   * for the standby VMMs a restore may use (`startStandby`), or null when it
   * can use none. Absent on drivers that start no standbys.
   */
  standbyKey?(dir: string, kernel: RestoreSpec["kernel"]): Promise<string | null>;
  /** Starts a VMM for `key`'s machine that waits, paused, for a resume's state. */
  startStandby?(spec: StandbySpec): Promise<StandbyVmm>;
}

/** Where a standby VMM runs; `runDir` is its own until a resume takes it. */
export type StandbySpec = Pick<Machine, "vmId" | "netns" | "tapName" | "guestMac" | "runDir"> & {
  key: string;
};

/**
 * A VMM started ahead of a resume (a QEMU's start is most of a resume's
 * host side under TCG), waiting paused for a state, disk and memory.
 */
export interface StandbyVmm {
  readonly vmId: string;
  readonly key: string;
  readonly exited: Promise<unknown>;
  /** Stops it and removes its files (not its run dir); idempotent. Not after a restore took it. */
  stop(): Promise<void>;
}

/** A driver's own state file and memory file of one snapshot (its low-level calls). */
export interface SnapshotFiles {
  /** VMM device/vCPU state. */
  statePath: string;
  /** Guest memory (QEMU: the RAM file itself; Firecracker: the memory file). */
  memPath: string;
}
