/**
 * A standby QEMU: started ahead of a resume (`-incoming defer`, paused) on
 * a placeholder disk, an empty RAM file of the guest's size and a FIFO for
 * the state, so that a resume takes a running process instead of waiting
 * for QEMU's start (most of a resume's host side under TCG). Its resume
 * reflinks the paused memory into the RAM file QEMU maps, puts the
 * sandbox's disk under the device's node (blockdev-reopen) and writes the
 * state into the FIFO (QemuDriver.restore).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import type { CgroupDriver } from "../../cgroup/cgroup.ts";
import type { ExitStatus } from "../../util/process.ts";
import { removeConsole } from "../console-log.ts";
import type { VmmUser } from "../confine.ts";
import type { QmpClient } from "../qmp.ts";
import type { StandbyVmm } from "../vmm.ts";
import { paths, type QemuMachine } from "./args.ts";
import { endQemu } from "./vm.ts";

/** A QEMU started and connected, before a handle (QemuVm) or a standby owns it. */
export interface Started {
  vmId: string;
  pid: number;
  exited: Promise<ExitStatus>;
  qmp: QmpClient;
  user: VmmUser | null;
  cgroups: CgroupDriver | null;
  machine: QemuMachine;
  log: Logger;
}

/** A standby's own files beside its VM's (paths()): the disk it starts on, the state's FIFO. */
export function standbyFiles(runDir: string, vmId: string) {
  return {
    placeholder: join(runDir, `${vmId}.none`),
    fifo: join(runDir, `${vmId}.state`),
  };
}

export class QemuStandby implements StandbyVmm {
  readonly vmId: string;
  readonly key: string;
  readonly exited: Promise<ExitStatus>;
  readonly #started: Started;
  readonly #runDir: string;
  readonly #stopGraceMs: number;
  #taken = false;
  #stopping: Promise<void> | null = null;

  constructor(key: string, started: Started, runDir: string, stopGraceMs: number) {
    this.key = key;
    this.vmId = started.vmId;
    this.exited = started.exited;
    this.#started = started;
    this.#runDir = runDir;
    this.#stopGraceMs = stopGraceMs;
    // QEMU's own cgroup goes with it, whoever stops it.
    void started.exited.then(() => started.cgroups?.remove(started.vmId).catch(() => undefined));
  }

  /** A restore takes the process; from then on its handle stops it. */
  take(): Started {
    if (this.#taken || this.#stopping) {
      throw new WrennError("internal", `standby VMM ${this.vmId} was taken or stopped already`);
    }
    this.#taken = true;
    return this.#started;
  }

  stop(): Promise<void> {
    if (this.#taken) return Promise.resolve();
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const s = this.#started;
    await endQemu(s, this.#stopGraceMs, s.log);
    await s.cgroups?.remove(s.vmId).catch(() => undefined);
    const p = paths(this.#runDir, s.vmId);
    const own = standbyFiles(this.#runDir, s.vmId);
    await Promise.all([
      removeConsole(this.#runDir, s.vmId),
      ...[p.qmp, p.consoleSocket, p.log, p.ram, own.placeholder, own.fifo].map((f) =>
        rm(f, { force: true }),
      ),
    ]);
  }
}
