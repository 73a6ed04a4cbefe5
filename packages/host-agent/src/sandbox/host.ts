import { realpath } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { InFlight } from "@wrenn/shared/in-flight.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import { GUEST_MAC, type NetworkSlot } from "../network/network.ts";
import type { SandboxDisk } from "../storage/storage.ts";
import { Gate } from "../util/gate.ts";
import type { Machine } from "../vmm/vmm.ts";
import type { BootSnapshots } from "./boot-snapshots.ts";
import type { ManagerOptions } from "./options.ts";
import type { WarmPool } from "./pool.ts";
import { homeOf, RecordStore, type SandboxRecord } from "./records.ts";
import { Registry } from "./registry.ts";
import { Standbys } from "./standbys.ts";
import { TemplateStore, type SnapshotMeta } from "./templates.ts";
import { PauseWriteBack } from "./write-back.ts";

/**
 * What every lifecycle step works with: the drivers, the on-disk stores, the
 * registry of live sandboxes, and where a sandbox's files go. No lifecycle
 * logic lives here.
 */
export class SandboxHost {
  readonly opts: ManagerOptions;
  readonly log: Logger;
  readonly records: RecordStore;
  readonly templates: TemplateStore;
  readonly registry = new Registry();
  readonly writeBack = new PauseWriteBack();
  /** Creates' boot snapshots, by shape (create.ts). */
  readonly bootSnapshotLookups = new InFlight<SnapshotMeta | null>();
  /** Set once by the front door (its builder runs the lifecycle itself). */
  bootSnapshots: BootSnapshots | null = null;
  /** Set once by the front door when the pool is on (its refills run the lifecycle itself). */
  pool: WarmPool | null = null;
  /** VMMs started ahead for resumes (standbys.ts). */
  readonly standbys: Standbys;
  /** Set by close(): this agent no longer owns the VMs (the next agent adopts them). */
  closed = false;
  /**
   * Claims' `/init`, as many at once as the host has cores. Under TCG twenty
   * guests answering at once on two cores took their VMMs 20–37 ms of CPU a
   * claim (14–26 ms alone): they evicted each other's translated code.
   * Gated, 15–22 ms in 10 of 11 bursts, and a burst of 20 claims ended
   * ≈ 18 % sooner (median wall of bursts interleaved with ungated ones:
   * 556 ms over 9, against 677 ms over 7). One at a time, leaving a core
   * to the event loops, was worse (2026-12-05: 1.29–1.36 of two cores
   * busy, median walls 257–295 ms against 218–229).
   */
  readonly claimGate = new Gate(availableParallelism());
  /**
   * Creates' restores (QEMU's start to envd's answer to /init), one more at
   * once than the host has cores: a restore waits on I/O in parts, and the
   * rest of its work is CPU. Twenty at once under TCG on two cores all
   * ended near the burst's end (p50 3.6–4.8 s, wall ÷ the target 1.34–1.62
   * in four runs); gated, they end in turn (p50 2.0–2.8 s, 1.21–1.36 in
   * four runs interleaved with those). Two at once left the cores idle in
   * the waits (1.58 and 1.67).
   */
  readonly restoreGate = new Gate(availableParallelism() + 1);

  constructor(opts: ManagerOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.records = new RecordStore(join(opts.dataDir, "sandboxes"));
    this.templates = new TemplateStore(join(opts.dataDir, "snapshots"));
    this.standbys = new Standbys(this, opts.standbyVmms ?? 0);
  }

  /** Its VM's sockets and RAM file. */
  runDir(record: SandboxRecord): string {
    return join(this.opts.runRoot, homeOf(record));
  }

  /** Where a paused sandbox's memory and disk are kept. */
  keepDir(record: SandboxRecord): string {
    return join(this.records.sandboxDir(homeOf(record)), "paused");
  }

  /**
   * The kernel a boot gets, by its real path: a snapshot of the VM records
   * it, and a link (another agent's image dir) may go.
   */
  async currentKernel(): Promise<{ kernelPath: string; initrdPath: string }> {
    const kernel = await this.opts.images.kernel();
    const [kernelPath, initrdPath] = await Promise.all([
      realpath(this.opts.vmm.kernelFile(kernel)),
      kernel.initrd === "" ? "" : realpath(kernel.initrd),
    ]);
    return { kernelPath, initrdPath };
  }

  machine(record: SandboxRecord, slot: NetworkSlot, disk: SandboxDisk): Machine {
    return {
      vmId: homeOf(record),
      vcpus: record.vcpus,
      memoryMb: record.memoryMb,
      rootfs: { path: disk.path, format: disk.format },
      tapName: slot.tapName,
      guestMac: GUEST_MAC,
      netns: slot.netns,
      runDir: this.runDir(record),
    };
  }

  /** The template a sandbox's memory came from: a pause may write only what changed since. */
  templateDirOf(record: SandboxRecord): string | null {
    if (record.fromSnapshot) return this.templates.files(record.fromSnapshot).dir;
    if (record.bootSnapshot && this.bootSnapshots) {
      return this.bootSnapshots.store.files(record.bootSnapshot).dir;
    }
    return null;
  }
}
