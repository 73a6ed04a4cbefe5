/**
 * The Firecracker driver. A restored guest's memory is served lazily by a
 * page server from the snapshot's memory generations; a pause writes a Diff
 * of the pages dirtied since the snapshot its memory came from (or a Full
 * one), compacted into a new generation; a template hard-links the
 * generations, which never change once written.
 */
import { copyFile, link, mkdir, readdir, rm, stat } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
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
import { spawnerRunner } from "../../spawner/client.ts";
import { cmdlineOf, isAlive, signal, tail, watchForeignExit, within } from "../../util/process.ts";
import { CGROUP_PARENT, detectCgroups, vmLimits, type CgroupDriver } from "../../cgroup/cgroup.ts";
import { identityOf, vmmIdentity, type VmmUser } from "../confine.ts";
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
import { JAIL_API_SOCKET, JAIL_INITRD, JAIL_KERNEL, JAIL_RESTORE, Jail, jailDir } from "./jail.ts";
import { jailerArgv } from "./jailer.ts";
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
  /**
   * Firecracker's jailer: every VM then runs chrooted as the VMM user, in a
   * cgroup of its own (see jailer.ts, jail.ts). Null or absent: Firecracker
   * runs as root in a private mount namespace, and the driver says so once.
   */
  jailerBinary?: string | null;
  /** Where the jailer builds chroots; default `.jail` in the agent's run dir (every VM run dir's parent). */
  chrootBaseDir?: string;
  /** Jailed VMs' cgroups; default the host's (detectCgroups) when root, null for none. */
  cgroups?: CgroupDriver | null;
}

/**
 * MiB a jailed Firecracker may use beyond guest RAM (its heap, threads, the
 * page cache its disk I/O is charged): QEMU's figure, as no Firecracker ran
 * on KVM here to measure a smaller one.
 */
const FIRECRACKER_OVERHEAD_MB = 256;

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

/** A file Firecracker opens, at the path it sees it (inside its jail, if any). */
type Stage = (hostPath: string, inJail: string, own?: boolean) => Promise<string>;

export class FirecrackerDriver implements VmmDriver {
  readonly name = "firecracker" as const;
  readonly accel = "kvm" as const;
  readonly #binary: string;
  readonly #log: Logger;
  readonly #graceMs: number;
  readonly #trace: FirecrackerDriverOptions["trace"];
  readonly #jailer: string | null;
  readonly #chrootBase: string | undefined;
  readonly #cgroups: Promise<CgroupDriver | null>;
  #warnedUnconfined = false;

  constructor(opts: FirecrackerDriverOptions = {}) {
    this.#binary = opts.binary ?? "firecracker";
    this.#log = (opts.log ?? createLogger("host-agent")).child({ vmm: "firecracker" });
    this.#graceMs = opts.stopGraceMs ?? 1000;
    this.#trace = opts.trace;
    this.#jailer = opts.jailerBinary ?? null;
    this.#chrootBase = opts.chrootBaseDir;
    this.#cgroups =
      opts.cgroups !== undefined
        ? Promise.resolve(opts.cgroups)
        : this.#jailer && process.getuid?.() === 0
          ? detectCgroups()
          : Promise.resolve(null);
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
          dirty: await dirtyFromSparseFile(raw, save.memoryMb * 1024 * 1024, spawnerRunner),
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
      else if (name.startsWith("memfile."))
        await link(src, dst).catch(() => copySparse(src, dst, spawnerRunner));
    }
  }

  async boot(spec: FirecrackerBootSpec): Promise<FirecrackerVm> {
    return this.#start(spec, "boot", async (api, stage) => {
      await api.call("PUT", "/boot-source", {
        kernel_image_path: await stage(spec.kernelPath, JAIL_KERNEL),
        boot_args: spec.bootArgs,
        ...(spec.initrdPath ? { initrd_path: await stage(spec.initrdPath, JAIL_INITRD) } : {}),
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
    return this.#start(spec, "restore", async (api, stage) => {
      await api.call("PUT", "/snapshot/load", {
        snapshot_path: await stage(spec.snapshot.statePath, JAIL_RESTORE.state),
        mem_backend: spec.uffdSocket
          ? {
              backend_type: "Uffd",
              // The VMM user connects to it.
              backend_path: await stage(spec.uffdSocket, JAIL_RESTORE.uffd, true),
            }
          : {
              backend_type: "File",
              backend_path: await stage(spec.snapshot.memPath, JAIL_RESTORE.mem),
            },
        // Not kept in the snapshot: without it the next pause could not be a Diff.
        track_dirty_pages: spec.trackDirtyPages ?? true,
        resume_vm: true,
      });
    });
  }

  /**
   * Starts the process (through the jailer when there is one), runs
   * `configure` against its API with `stage` giving each file's path as
   * Firecracker sees it, and on any failure undoes all of it: the process,
   * its socket and log, the jail and its cgroup.
   */
  async #start(
    spec: FirecrackerBootSpec | FirecrackerRestoreSpec,
    what: "boot" | "restore",
    configure: (api: FirecrackerApi, stage: Stage) => Promise<void>,
  ): Promise<FirecrackerVm> {
    const p = paths(spec.runDir, spec.vmId);
    const log = this.#log.child({ vm: spec.vmId });
    const jail = this.#jailer ? await this.#jail(spec, log) : null;
    const apiSocket = jail ? jail.host(JAIL_API_SOCKET) : p.api;
    let proc: VmmProcess | null = null;
    const undo = async () => {
      if (proc) {
        signal(proc.pid, "SIGKILL");
        await proc.exited;
      }
      await Promise.all([rm(p.api, { force: true }), rm(p.log, { force: true })]);
      await jail?.remove().catch((err: unknown) => {
        log.warn({ err: messageOf(err), jail: jail.dir }, "could not remove the VM's jail");
      });
    };
    try {
      if (Buffer.byteLength(apiSocket) > 107) {
        throw new WrennError(
          "invalid_argument",
          `run directory path too long for a socket: ${apiSocket}`,
        );
      }
      await Promise.all([rm(p.api, { force: true }), rm(p.log, { force: true })]);
      let argv: string[];
      if (jail) {
        await jail.prepare();
        await jail.stage(spec.rootfs.path, STABLE_ROOTFS, { own: true });
        argv = await this.#jailerArgv(spec, jail);
      } else {
        this.#warnUnconfined();
        await mkdir(STABLE_DIR, { recursive: true });
        argv = firecrackerArgv({
          binary: this.#binary,
          vmId: spec.vmId,
          apiSocket,
          diskPath: spec.rootfs.path,
        });
      }
      proc = await timed(log, "firecracker.spawn", () =>
        spawnInNetns({ netns: jail ? "" : spec.netns, argv, logPath: p.log, readsSys: true }),
      );
    } catch (err) {
      await undo();
      throw err;
    }
    const started = proc;
    const died = new AbortController();
    void started.exited.then(() => died.abort());
    const trace = this.#trace;
    const api = new FirecrackerApi(apiSocket, trace && ((req) => trace(spec.vmId, req)));
    const stage: Stage = (host, inJail, own = false) =>
      jail ? jail.stage(host, inJail, { own }) : Promise.resolve(host);
    try {
      await timed(log, "firecracker.api_ready", () =>
        FirecrackerApi.waitReady(apiSocket, { timeoutMs: 10_000, signal: died.signal }),
      );
      await timed(log, `firecracker.${what}`, () => configure(api, stage));
    } catch (err) {
      const fault = err instanceof FirecrackerApiError && err.status !== null;
      // A refused or reset connection usually means the process died: give it a moment to show.
      const diedAlone = !fault && (await within(started.exited, 1000));
      signal(started.pid, "SIGKILL");
      const status = await started.exited;
      const why = await tail(p.log, 4);
      await undo();
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
    log.info(
      { pid: started.pid, jail: jail?.root ?? null, uid: jail?.user.uid ?? 0 },
      what === "boot" ? "firecracker booted" : "firecracker restored",
    );
    return new FirecrackerVm(
      {
        vmId: spec.vmId,
        pid: started.pid,
        runDir: spec.runDir,
        exited: started.exited,
        api,
        trackDirtyPages: spec.trackDirtyPages ?? true,
        jail,
      },
      log,
      this.#graceMs,
    );
  }

  #warnUnconfined(): void {
    if (this.#warnedUnconfined) return;
    this.#warnedUnconfined = true;
    this.#log.warn(
      "no Firecracker jailer: Firecracker runs as root, without chroot or cgroup limits (install `jailer` next to `firecracker`)",
    );
  }

  /** The VM's jail (not made yet): its chroot under the base, the VM's own uid, the host's cgroups. */
  async #jail(spec: Machine, log: Logger): Promise<Jail> {
    const [user, cgroups, exe] = await Promise.all([
      vmmIdentity(spec.netns),
      this.#cgroups,
      this.#firecrackerPath(),
    ]);
    // A dot first: no sandbox id starts with one, so no VM's run dir is this.
    const base = this.#chrootBase ?? join(dirname(spec.runDir), ".jail");
    return new Jail({ dir: jailDir(base, exe, spec.vmId), user, cgroups, log });
  }

  async #jailerArgv(spec: FirecrackerBootSpec | FirecrackerRestoreSpec, jail: Jail) {
    const cgroups = jail.cgroups;
    return jailerArgv({
      jailerBinary: this.#jailer ?? "jailer",
      firecrackerBinary: await this.#firecrackerPath(),
      vmId: spec.vmId,
      uid: jail.user.uid,
      gid: jail.user.gid,
      chrootBaseDir: dirname(dirname(jail.dir)),
      netns: spec.netns,
      cgroup: cgroups
        ? {
            version: cgroups.version === "v2" ? 2 : 1,
            parent: CGROUP_PARENT,
            limits: vmLimits({
              vcpus: spec.vcpus,
              memoryMb: spec.memoryMb,
              overheadMb: FIRECRACKER_OVERHEAD_MB,
            }),
          }
        : null,
    });
  }

  /** The jailer copies Firecracker into the chroot: it needs the file's absolute path. */
  async #firecrackerPath(): Promise<string> {
    if (isAbsolute(this.#binary)) return this.#binary;
    try {
      const { stdout } = await runCommand("sh", ["-c", 'command -v "$1"', "sh", this.#binary]);
      const found = stdout.trim();
      if (isAbsolute(found)) return found;
    } catch {
      // Reported below.
    }
    throw new WrennError("failed_precondition", `'${this.#binary}' is not installed`);
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
    const log = this.#log.child({ vm: record.vmId });
    const jailAt = typeof record.driver?.jail === "string" ? record.driver.jail : null;
    const jail = jailAt
      ? new Jail({
          dir: jailAt,
          user: await jailUserOf(record.pid, jailAt),
          cgroups: await this.#cgroups,
          log,
        })
      : null;
    const argv = await cmdlineOf(record.pid);
    // Jailed, Firecracker's command line names its socket inside the chroot, and the jail's id.
    const ours = jail
      ? argv !== null &&
        argv.includes(JAIL_API_SOCKET) &&
        (argv.includes(`--id=${jail.id}`) || argv[argv.indexOf("--id") + 1] === jail.id)
      : argv?.includes(record.controlSocket) === true;
    if (!ours || !(await isAlive(record.pid))) {
      // Nothing runs in it any more: what was staged for it goes.
      await jail?.remove().catch(() => undefined);
      return null;
    }
    const trace = this.#trace;
    const api = new FirecrackerApi(
      record.controlSocket,
      trace && ((req) => trace(record.vmId, req)),
    );
    const config = await api.call<{ "machine-config"?: { track_dirty_pages?: boolean } }>(
      "GET",
      "/vm/config",
    );
    log.info({ pid: record.pid, jail: jail?.root ?? null }, "re-adopted firecracker");
    return new FirecrackerVm(
      {
        vmId: record.vmId,
        pid: record.pid,
        // The run dir holds its log either way; unjailed its socket too.
        runDir:
          typeof record.driver?.runDir === "string"
            ? record.driver.runDir
            : join(record.controlSocket, ".."),
        exited: watchForeignExit(record.pid),
        api,
        trackDirtyPages: config["machine-config"]?.track_dirty_pages ?? false,
        jail,
      },
      log,
      this.#graceMs,
    );
  }

  record(handle: VmHandle): VmRecord {
    const vm = this.#own(handle);
    const out: VmRecord = { vmId: vm.vmId, pid: vm.pid, controlSocket: vm.controlSocket };
    const driver: Record<string, unknown> = {};
    if (handle instanceof PagedVm) driver.pageServer = handle.server.record;
    if (vm.jail) Object.assign(driver, { jail: vm.jail.dir, runDir: vm.runDir });
    if (Object.keys(driver).length > 0) out.driver = driver;
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

/**
 * The uid a re-adopted jailed VM runs as: the owner of the directory its jail
 * made for its socket (prepare() hands it over), else the process's own; so
 * what it was handed goes back to root at remove(), the VM gone or not.
 */
async function jailUserOf(pid: number, jailAt: string): Promise<VmmUser> {
  const st = await stat(join(jailAt, "root", dirname(JAIL_API_SOCKET))).catch(() => null);
  if (st && st.uid !== 0) return { name: `${st.uid}:${st.gid}`, uid: st.uid, gid: st.gid };
  return (await identityOf(pid)) ?? { name: "root", uid: 0, gid: 0 };
}

/** The page server a record names; records come from our own files, checked all the same. */
function pageServerOf(record: VmRecord): PageServerRecord | null {
  const rec = record.driver?.pageServer as Partial<PageServerRecord> | undefined;
  if (typeof rec?.pid !== "number" || typeof rec.socketPath !== "string") return null;
  return { pid: rec.pid, socketPath: rec.socketPath };
}
