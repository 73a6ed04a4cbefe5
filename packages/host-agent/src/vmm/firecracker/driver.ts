import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { createLogger, timed, type Logger } from "@wrenn/shared/log.ts";
import { FirecrackerApi, FirecrackerApiError, type ApiRequest } from "./firecracker-api.ts";
import {
  cmdlineOf,
  isAlive,
  tail,
  watchForeignExit,
  within,
  type ExitStatus,
} from "../util/process.ts";
import { spawnInNetns, type VmmProcess } from "./process.ts";
import type { BootSpec, RestoreSpec, SnapshotFiles, VmHandle, VmmDriver, VmRecord } from "./vmm.ts";

/**
 * Inside each VM's private mount namespace a tmpfs is mounted here and
 * `rootfs` in it links to the sandbox's disk: Firecracker records drive
 * paths in its snapshots, and this one is the same for every VM, so a
 * snapshot restores on any disk, in any slot.
 */
export const STABLE_DIR = "/run/wrenn/fc";
export const STABLE_ROOTFS = `${STABLE_DIR}/rootfs`;
export const ROOT_DRIVE_ID = "rootfs";
export const IFACE_ID = "eth0";

export interface FirecrackerDriverOptions {
  /** Executable name or path; default `firecracker` from PATH. */
  binary?: string;
  log?: Logger;
  /** How long `stop` waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
  /** Sees every API request as it is sent (tests, debugging). */
  trace?: (vmId: string, req: ApiRequest) => void;
}

function paths(runDir: string, vmId: string) {
  return { api: join(runDir, `${vmId}.fc.sock`), log: join(runDir, `${vmId}.fc.log`) };
}

/**
 * The command line: a private mount namespace with the stable rootfs link,
 * then Firecracker itself (`exec`, so the pid is Firecracker's).
 */
export function firecrackerArgv(opts: {
  binary: string;
  vmId: string;
  apiSocket: string;
  diskPath: string;
}): string[] {
  const script =
    'set -e; mount -t tmpfs -o size=64k,mode=0755 wrenn-fc "$1"; ln -s "$2" "$1/rootfs"; shift 2; exec "$@"';
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "sh",
    "-c",
    script,
    "wrenn-fc",
    STABLE_DIR,
    opts.diskPath,
    opts.binary,
    "--api-sock",
    opts.apiSocket,
    "--id",
    opts.vmId,
  ];
}

interface VmState {
  vmId: string;
  pid: number;
  runDir: string;
  exited: Promise<ExitStatus>;
  api: FirecrackerApi;
  trackDirtyPages: boolean;
}

class FirecrackerVm implements VmHandle {
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
    if (await isAlive(s.pid)) {
      signal(s.pid, "SIGTERM");
      if (!(await within(s.exited, this.#graceMs))) {
        signal(s.pid, "SIGKILL");
        if (!(await within(s.exited, 10_000))) {
          throw new WrennError("internal", `firecracker pid ${s.pid} survived SIGKILL`);
        }
      }
    }
    await s.exited;
    const p = paths(s.runDir, s.vmId);
    await Promise.all([rm(p.api, { force: true }), rm(p.log, { force: true })]);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

export class FirecrackerDriver implements VmmDriver {
  readonly name = "firecracker" as const;
  readonly #binary: string;
  readonly #log: Logger;
  readonly #graceMs: number;
  readonly #trace: FirecrackerDriverOptions["trace"];

  constructor(opts: FirecrackerDriverOptions = {}) {
    this.#binary = opts.binary ?? "firecracker";
    this.#log = (opts.log ?? createLogger("host-agent")).child({ vmm: "firecracker" });
    this.#graceMs = opts.stopGraceMs ?? 1000;
    this.#trace = opts.trace;
  }

  async boot(spec: BootSpec): Promise<VmHandle> {
    return this.#start(spec, "boot", async (api) => {
      await api.call("PUT", "/boot-source", {
        kernel_image_path: spec.kernelPath,
        boot_args: spec.bootArgs,
        ...(spec.initrdPath ? { initrd_path: spec.initrdPath } : {}),
      });
      await api.call("PUT", `/drives/${ROOT_DRIVE_ID}`, {
        drive_id: ROOT_DRIVE_ID,
        path_on_host: STABLE_ROOTFS,
        is_root_device: true,
        is_read_only: false,
      });
      await api.call("PUT", "/machine-config", {
        vcpu_count: spec.vcpus,
        mem_size_mib: spec.memoryMb,
        smt: false,
        track_dirty_pages: spec.trackDirtyPages ?? false,
      });
      await api.call("PUT", `/network-interfaces/${IFACE_ID}`, {
        iface_id: IFACE_ID,
        host_dev_name: spec.tapName,
        guest_mac: spec.guestMac,
      });
      await api.call("PUT", "/actions", { action_type: "InstanceStart" });
    });
  }

  async restore(spec: RestoreSpec): Promise<VmHandle> {
    return this.#start(spec, "restore", async (api) => {
      await api.call("PUT", "/snapshot/load", {
        snapshot_path: spec.snapshot.statePath,
        mem_backend: spec.uffdSocket
          ? { backend_type: "Uffd", backend_path: spec.uffdSocket }
          : { backend_type: "File", backend_path: spec.snapshot.memPath },
        // Not kept in the snapshot: without it the next pause could not be a Diff.
        track_dirty_pages: spec.trackDirtyPages ?? false,
        resume_vm: true,
      });
    });
  }

  /** Starts the process, runs `configure` against its API, and cleans up on any failure. */
  async #start(
    spec: BootSpec | RestoreSpec,
    what: "boot" | "restore",
    configure: (api: FirecrackerApi) => Promise<void>,
  ): Promise<VmHandle> {
    const p = paths(spec.runDir, spec.vmId);
    if (Buffer.byteLength(p.api) > 107) {
      throw new WrennError(
        "invalid_argument",
        `run directory path too long for a socket: ${p.api}`,
      );
    }
    await mkdir(STABLE_DIR, { recursive: true });
    await Promise.all([rm(p.api, { force: true }), rm(p.log, { force: true })]);
    const log = this.#log.child({ vm: spec.vmId });
    const proc: VmmProcess = await timed(log, "firecracker.spawn", () =>
      spawnInNetns({
        netns: spec.netns,
        argv: firecrackerArgv({
          binary: this.#binary,
          vmId: spec.vmId,
          apiSocket: p.api,
          diskPath: spec.rootfs.path,
        }),
        logPath: p.log,
      }),
    );
    const died = new AbortController();
    void proc.exited.then(() => died.abort());
    const trace = this.#trace;
    const api = new FirecrackerApi(p.api, trace && ((req) => trace(spec.vmId, req)));
    try {
      await timed(log, "firecracker.api_ready", () =>
        FirecrackerApi.waitReady(p.api, { timeoutMs: 10_000, signal: died.signal }),
      );
      await timed(log, `firecracker.${what}`, () => configure(api));
    } catch (err) {
      const fault = err instanceof FirecrackerApiError && err.status !== null;
      // A refused or reset connection usually means the process died: give it a moment to show.
      const diedAlone = !fault && (await within(proc.exited, 1000));
      signal(proc.pid, "SIGKILL");
      const status = await proc.exited;
      const why = await tail(p.log, 4);
      await Promise.all([rm(p.api, { force: true }), rm(p.log, { force: true })]);
      if (diedAlone) {
        const exit = status.signal ?? `exit ${status.code}`;
        throw new WrennError(
          "internal",
          `firecracker exited during ${what} (${exit}): ${why || messageOf(err)}`,
          { cause: err },
        );
      }
      throw err;
    }
    log.info({ pid: proc.pid }, what === "boot" ? "firecracker booted" : "firecracker restored");
    return new FirecrackerVm(
      {
        vmId: spec.vmId,
        pid: proc.pid,
        runDir: spec.runDir,
        exited: proc.exited,
        api,
        trackDirtyPages: spec.trackDirtyPages ?? false,
      },
      log,
      this.#graceMs,
    );
  }

  async adopt(record: VmRecord): Promise<VmHandle | null> {
    const argv = await cmdlineOf(record.pid);
    if (!argv?.includes(record.controlSocket) || !(await isAlive(record.pid))) return null;
    const trace = this.#trace;
    const api = new FirecrackerApi(
      record.controlSocket,
      trace && ((req) => trace(record.vmId, req)),
    );
    const config = await api.call<{ "machine-config"?: { track_dirty_pages?: boolean } }>(
      "GET",
      "/vm/config",
    );
    const log = this.#log.child({ vm: record.vmId });
    log.info({ pid: record.pid }, "re-adopted firecracker");
    return new FirecrackerVm(
      {
        vmId: record.vmId,
        pid: record.pid,
        runDir: join(record.controlSocket, ".."),
        exited: watchForeignExit(record.pid),
        api,
        trackDirtyPages: config["machine-config"]?.track_dirty_pages ?? false,
      },
      log,
      this.#graceMs,
    );
  }

  record(handle: VmHandle): VmRecord {
    if (!(handle instanceof FirecrackerVm)) {
      throw new WrennError("invalid_argument", "not a VM started by the firecracker driver");
    }
    return { vmId: handle.vmId, pid: handle.pid, controlSocket: handle.controlSocket };
  }
}
