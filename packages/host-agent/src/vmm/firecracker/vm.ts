/** One running Firecracker: pause, resume, snapshot and stop through its API socket. */
import { rm } from "node:fs/promises";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import { endProcess, signal, tail, type ExitStatus } from "../../util/process.ts";
import type { SnapshotFiles, VmHandle } from "../vmm.ts";
import type { FirecrackerApi } from "./api.ts";
import { paths } from "./args.ts";
import { JAIL_SNAPSHOT_DIR, type Jail } from "./jail.ts";

export interface VmState {
  vmId: string;
  pid: number;
  runDir: string;
  exited: Promise<ExitStatus>;
  api: FirecrackerApi;
  trackDirtyPages: boolean;
  /** A jailed Firecracker's chroot and cgroup (removed once it has exited), or null. */
  jail: Jail | null;
}

export class FirecrackerVm implements VmHandle {
  readonly vmId: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  readonly #s: VmState;
  readonly #log: Logger;
  readonly #graceMs: number;
  #stopping: Promise<void> | null = null;
  /** Resolves once Firecracker has exited and its jail and cgroup are gone. */
  readonly #jailGone: Promise<void>;

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
    this.#jailGone = this.exited.then(async () => {
      await s.jail?.remove().catch((err: unknown) => {
        log.warn({ err: messageOf(err), jail: s.jail?.dir }, "could not remove the VM's jail");
      });
    });
    void this.exited.then(async (status) => {
      if (this.#stopping) return;
      this.#log.warn(
        { ...status, log: await tail(paths(s.runDir, s.vmId).log) },
        "firecracker exited unexpectedly",
      );
    });
  }

  /** The chroot it runs in, or null (unjailed). */
  get jail(): Jail | null {
    return this.#s.jail;
  }

  get runDir(): string {
    return this.#s.runDir;
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
    const jail = this.#s.jail;
    // A jailed Firecracker writes inside its chroot; the files are moved out after.
    const out = jail
      ? {
          statePath: `${JAIL_SNAPSHOT_DIR}/state`,
          memPath: `${JAIL_SNAPSHOT_DIR}/memory`,
        }
      : files;
    try {
      await timed(this.#log, `firecracker.snapshot_${kind}`, () =>
        this.#s.api.call("PUT", "/snapshot/create", {
          snapshot_type: kind === "diff" ? "Diff" : "Full",
          snapshot_path: out.statePath,
          mem_file_path: out.memPath,
        }),
      );
      if (jail) {
        await jail.takeOut(out.statePath, files.statePath);
        await jail.takeOut(out.memPath, files.memPath);
      }
    } finally {
      if (jail) {
        await Promise.all(
          [out.statePath, out.memPath].map((f) => rm(jail.host(f), { force: true })),
        );
      }
    }
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
    await this.#jailGone;
  }
}
