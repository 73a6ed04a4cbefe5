/**
 * The Firecracker driver. A restored guest's memory is served lazily by a
 * page server from the snapshot's memory generations; a pause writes a Diff
 * of the pages dirtied since the snapshot its memory came from (or a Full
 * one), compacted into a new generation; a template hard-links the
 * generations, which never change once written.
 */
import { copyFile, link, mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { createLogger, timed, type Logger } from "@wrenn/shared/log.ts";
import { HEADER_FILE } from "../../snapshot/header.ts";
import { writeDiff, writeFull } from "../../snapshot/memfile.ts";
import {
  adoptPageServer,
  startPageServer,
  type PageServerRecord,
} from "../../snapshot/page-server.ts";
import { dirtyFromSparseFile } from "../../snapshot/sparse.ts";
import { copySparse, exists } from "../../util/fs.ts";
import { cmdlineOf, isAlive, signal, tail, watchForeignExit, within } from "../../util/process.ts";
import { spawnInNetns, type VmmProcess } from "../process.ts";
import type {
  BootSpec,
  KernelChoice,
  Machine,
  RestoreSpec,
  SnapshotFiles,
  VmHandle,
  VmmDriver,
  VmRecord,
} from "../vmm.ts";
import { FirecrackerApi, FirecrackerApiError, type ApiRequest } from "./api.ts";
import {
  firecrackerArgv,
  IFACE_ID,
  paths,
  ROOT_DRIVE_ID,
  STABLE_DIR,
  STABLE_ROOTFS,
} from "./args.ts";
import { PagedVm } from "./paged-vm.ts";
import { FirecrackerVm } from "./vm.ts";

export { STABLE_DIR, STABLE_ROOTFS } from "./args.ts";
export type { FirecrackerVm } from "./vm.ts";

export interface FirecrackerDriverOptions {
  /** Executable name or path; default `firecracker` from PATH. */
  binary?: string;
  log?: Logger;
  /** How long `stop` waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
  /** Sees every API request as it is sent (tests, debugging). */
  trace?: (vmId: string, req: ApiRequest) => void;
}

/**
 * The driver's own boot: KVM's dirty log is kept unless asked otherwise, so
 * every pause after the first can be a Diff (not stored in a snapshot:
 * passed again on every restore).
 */
export interface FirecrackerBootSpec extends BootSpec {
  trackDirtyPages?: boolean;
}

/** A restore from explicit files (the driver's own layer; tests drive it directly). */
export interface FirecrackerRestoreSpec extends Machine {
  snapshot: SnapshotFiles;
  /** Unix socket of a page server serving the memory lazily (else the memory file is read). */
  uffdSocket?: string;
  trackDirtyPages?: boolean;
}

const STATE = "state";

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

  kernelFile(kernel: KernelChoice): string {
    return kernel.vmlinux;
  }

  async restore(spec: RestoreSpec): Promise<VmHandle> {
    const log = this.#log.child({ vm: spec.vmId });
    const uffdSocket = join(spec.runDir, "uffd.sock");
    const server = await timed(log, "firecracker.page_server", () =>
      startPageServer({ socketPath: uffdSocket, snapshotDir: spec.snapshotDir, log }),
    );
    try {
      const vm = await this.restoreFiles({
        ...spec,
        snapshot: {
          statePath: join(spec.snapshotDir, STATE),
          memPath: join(spec.snapshotDir, "memfile"),
        },
        uffdSocket,
      });
      return new PagedVm(vm, server, log);
    } catch (err) {
      await server.stop().catch(() => undefined);
      throw err;
    }
  }

  /**
   * A Diff against the newest parent that has memory generations (the
   * sandbox's last pause, else the template it came from), a Full snapshot
   * when there is none; then compacted into a generation of its own.
   */
  async saveMemory(
    handle: VmHandle,
    save: { dir: string; parents: string[]; memoryMb: number; log: Logger },
  ): Promise<void> {
    const vm = this.#own(handle);
    let parentDir: string | null = null;
    for (const dir of save.parents) {
      if (await exists(join(dir, HEADER_FILE))) {
        parentDir = dir;
        break;
      }
    }
    const raw = join(save.dir, "memfile.raw");
    try {
      await timed(save.log, "pause.snapshot", () =>
        vm.snapshot(
          { statePath: join(save.dir, STATE), memPath: raw },
          parentDir ? "diff" : "full",
        ),
      );
      await timed(save.log, "pause.compact_memory", async () => {
        if (parentDir === null) return writeFull({ imagePath: raw, dir: save.dir, log: save.log });
        return writeDiff({
          imagePath: raw,
          dir: save.dir,
          parentDir,
          dirty: await dirtyFromSparseFile(raw, save.memoryMb * 1024 * 1024),
          log: save.log,
        });
      });
    } finally {
      await rm(raw, { force: true });
    }
  }

  /** The page server reads the generations as they are: nothing to drop. */
  async afterResume(): Promise<void> {}

  /** Generation files never change once written: hard links, a copy across filesystems. */
  async copyMemory(from: string, to: string): Promise<void> {
    for (const name of await readdir(from)) {
      const src = join(from, name);
      const dst = join(to, name);
      if (name === STATE || name === HEADER_FILE) await copyFile(src, dst);
      else if (name.startsWith("memfile.")) await link(src, dst).catch(() => copySparse(src, dst));
    }
  }

  async boot(spec: FirecrackerBootSpec): Promise<FirecrackerVm> {
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
        track_dirty_pages: spec.trackDirtyPages ?? true,
      });
      await api.call("PUT", `/network-interfaces/${IFACE_ID}`, {
        iface_id: IFACE_ID,
        host_dev_name: spec.tapName,
        guest_mac: spec.guestMac,
      });
      await api.call("PUT", "/actions", { action_type: "InstanceStart" });
    });
  }
  async restoreFiles(spec: FirecrackerRestoreSpec): Promise<FirecrackerVm> {
    return this.#start(spec, "restore", async (api) => {
      await api.call("PUT", "/snapshot/load", {
        snapshot_path: spec.snapshot.statePath,
        mem_backend: spec.uffdSocket
          ? { backend_type: "Uffd", backend_path: spec.uffdSocket }
          : { backend_type: "File", backend_path: spec.snapshot.memPath },
        // Not kept in the snapshot: without it the next pause could not be a Diff.
        track_dirty_pages: spec.trackDirtyPages ?? true,
        resume_vm: true,
      });
    });
  }

  /** Starts the process, runs `configure` against its API, and cleans up on any failure. */
  async #start(
    spec: FirecrackerBootSpec | FirecrackerRestoreSpec,
    what: "boot" | "restore",
    configure: (api: FirecrackerApi) => Promise<void>,
  ): Promise<FirecrackerVm> {
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
        trackDirtyPages: spec.trackDirtyPages ?? true,
      },
      log,
      this.#graceMs,
    );
  }

  /** A restored VM comes back with its page server, or not at all: without it the VM hangs. */
  async adopt(record: VmRecord): Promise<VmHandle | null> {
    const vm = await this.#adoptVm(record);
    if (vm === null) return null;
    const rec = pageServerOf(record);
    if (rec === null) return vm;
    const log = this.#log.child({ vm: record.vmId });
    const server = await adoptPageServer(rec, log);
    if (server === null) {
      log.warn("the VM's page server is gone; stopping the VM instead of adopting it");
      await vm.stop().catch(() => undefined);
      return null;
    }
    return new PagedVm(vm, server, log);
  }

  async #adoptVm(record: VmRecord): Promise<FirecrackerVm | null> {
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
    const vm = this.#own(handle);
    const out: VmRecord = { vmId: vm.vmId, pid: vm.pid, controlSocket: vm.controlSocket };
    if (handle instanceof PagedVm) out.driver = { pageServer: handle.server.record };
    return out;
  }

  #own(handle: VmHandle): FirecrackerVm {
    const vm = handle instanceof PagedVm ? handle.vm : handle;
    if (!(vm instanceof FirecrackerVm)) {
      throw new WrennError("invalid_argument", "not a VM started by the firecracker driver");
    }
    return vm;
  }
}

/** The page server a record names; records come from our own files, checked all the same. */
function pageServerOf(record: VmRecord): PageServerRecord | null {
  const rec = record.driver?.pageServer as Partial<PageServerRecord> | undefined;
  if (typeof rec?.pid !== "number" || typeof rec.socketPath !== "string") return null;
  return { pid: rec.pid, socketPath: rec.socketPath };
}
