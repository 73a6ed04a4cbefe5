/**
 * The seam between the sandbox manager and a virtual machine monitor. Both
 * drivers (qemu.ts, firecracker.ts) implement it; the manager never imports
 * a concrete driver.
 */

export type VmmName = "qemu" | "firecracker";

/** Everything needed to boot a VM from a base template. */
export interface BootSpec {
  /** Unique per VM; names sockets and logs. */
  vmId: string;
  vcpus: number;
  memoryMb: number;
  kernelPath: string;
  initrdPath?: string;
  /** Kernel command line (the driver adds its own console/device arguments). */
  bootArgs: string;
  rootfs: { path: string; format: "raw" | "qcow2" };
  /** TAP device name inside `netns`; the VM gets one virtio-net on it. */
  tapName: string;
  guestMac: string;
  /** Network namespace the VMM process runs in (`ip netns` name). */
  netns: string;
  /** Directory the driver may use for sockets, logs and state files. */
  runDir: string;
  /**
   * Firecracker: keep KVM's dirty log so the next snapshot can be a Diff
   * (not stored in a snapshot: pass it again on every restore). QEMU ignores it.
   */
  trackDirtyPages?: boolean;
}

/** Where a memory snapshot lives on disk; the layout is owned by snapshot/. */
export interface SnapshotFiles {
  /** VMM device/vCPU state. */
  statePath: string;
  /** Guest memory (QEMU: the RAM file itself; Firecracker: the memory file). */
  memPath: string;
}

export interface RestoreSpec extends Omit<BootSpec, "kernelPath" | "initrdPath" | "bootArgs"> {
  snapshot: SnapshotFiles;
  /** Firecracker: Unix socket of the page server serving the memory lazily. */
  uffdSocket?: string;
  /**
   * QEMU clone: map the template's RAM file copy-on-write (share=off), leaving
   * it unchanged. Without it QEMU maps `memPath` shared: the file becomes the
   * live guest memory (a paused sandbox's own snapshot, consumed by resume;
   * a later snapshot moves it to its own memPath).
   */
  privateMemory?: boolean;
  /**
   * The host's current kernel, asked for only when the snapshot's recorded
   * kernel file is gone (QEMU opens the file at start, though the restored
   * RAM replaces what it loads). Firecracker needs none.
   */
  currentKernel?: () => Promise<{ kernelPath: string; initrdPath?: string }>;
}

/** A running VMM process. */
export interface VmHandle {
  readonly vmId: string;
  readonly pid: number;
  /** Resolves when the VMM process exits, for whatever reason. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /**
   * Only while paused; `diff` = only pages dirtied since the last load
   * (Firecracker, needs trackDirtyPages). QEMU always writes complete memory:
   * its RAM file becomes `memPath` (renamed when it can, so pause then stop
   * copies nothing); resuming after a snapshot first gives the VM its own copy.
   */
  snapshot(files: SnapshotFiles, kind: "full" | "diff"): Promise<void>;
  /** Stops the VMM and waits for its exit; idempotent. */
  stop(): Promise<void>;
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
}

export interface VmmDriver {
  readonly name: VmmName;
  boot(spec: BootSpec): Promise<VmHandle>;
  restore(spec: RestoreSpec): Promise<VmHandle>;
  /** Re-attaches to a VM started by an earlier agent process, or null if it is gone. */
  adopt(record: VmRecord): Promise<VmHandle | null>;
  record(handle: VmHandle): VmRecord;
}
