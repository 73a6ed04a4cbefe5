/** One running Firecracker: pause, resume, snapshot and stop through its API socket. */
import { rm } from "node:fs/promises";
import { WrennError } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import { endProcess, signal, tail, type ExitStatus } from "../../util/process.ts";
import type { SnapshotFiles, VmHandle } from "../vmm.ts";
import type { FirecrackerApi } from "./api.ts";
import { paths } from "./args.ts";

export interface VmState {
  vmId: string;
  pid: number;
  runDir: string;
  exited: Promise<ExitStatus>;
  api: FirecrackerApi;
  trackDirtyPages: boolean;
}

export class FirecrackerVm implements VmHandle {
  readonly vmId: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  readonly #s: VmState;
  readonly #log: Logger;
  readonly #graceMs: number;
  #stopping: Promise<void> | null = null;

  release(): void {
    // Every API call is its own request: no connection to drop.
  }

  constructor(s: VmState, log: Logger, graceMs: number) {
    this.#s = s;
    this.#log = log;
    this.#graceMs = graceMs;
    this.vmId = s.vmId;
    this.pid = s.pid;
    this.exited = s.exited;
    void this.exited.then(async (status) => {
      if (this.#stopping) return;
      this.#log.warn(
        { ...status, log: await tail(paths(s.runDir, s.vmId).log) },
        "firecracker exited unexpectedly",
      );
    });
  }

  get controlSocket(): string {
    return this.#s.api.socketPath;
  }

  async pause(): Promise<void> {
    await this.#s.api.call("PATCH", "/vm", { state: "Paused" });
  }

  async resume(): Promise<void> {
    await this.#s.api.call("PATCH", "/vm", { state: "Resumed" });
  }

  async snapshot(files: SnapshotFiles, kind: "full" | "diff"): Promise<void> {
    if (kind === "diff" && !this.#s.trackDirtyPages) {
      throw new WrennError(
        "failed_precondition",
        "a diff snapshot needs dirty-page tracking (boot or restore with trackDirtyPages)",
      );
    }
    await timed(this.#log, `firecracker.snapshot_${kind}`, () =>
      this.#s.api.call("PUT", "/snapshot/create", {
        snapshot_type: kind === "diff" ? "Diff" : "Full",
        snapshot_path: files.statePath,
        mem_file_path: files.memPath,
      }),
    );
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const s = this.#s;
    // Firecracker has no graceful shutdown that does not depend on the guest;
    // whatever must survive was snapshotted before stop.
    await endProcess({
      pid: s.pid,
      exited: s.exited,
      graceMs: this.#graceMs,
      name: "firecracker",
      ask: () => signal(s.pid, "SIGTERM"),
    });
    const p = paths(s.runDir, s.vmId);
    await Promise.all([rm(p.api, { force: true }), rm(p.log, { force: true })]);
  }
}
