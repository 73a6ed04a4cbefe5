import { copyFile, link, mkdir, readdir, realpath, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import type { VmHandle, VmmDriver } from "../vmm/vmm.ts";
import type { StorageDriver, SandboxDisk } from "../storage/storage.ts";
import {
  GUEST_IP,
  GUEST_MAC,
  TAP_IP,
  type NetworkManager,
  type NetworkSlot,
} from "../network/network.ts";
import { hasEgressRules, type EgressRules } from "../network/egress.ts";
import { EnvdClient, ENVD_PORT, type ExecEvent } from "../envd/client.ts";
import { RecordStore, type SandboxRecord } from "./records.ts";
import { SNAPSHOT_NAME, TemplateStore, type BootSource, type SnapshotMeta } from "./templates.ts";
import { BootSnapshots, BUILDER_PREFIX, type Shape } from "./boot-snapshots.ts";
import { HEADER_FILE } from "../snapshot/header.ts";
import { writeDiff, writeFull } from "../snapshot/memfile.ts";
import { dirtyFromSparseFile } from "../snapshot/sparse.ts";
import { adoptPageServer, startPageServer, type PageServer } from "../snapshot/page-server.ts";
import { copySparse, exists } from "../util/fs.ts";
import { killIfNamed } from "../util/process.ts";
import type { KernelFiles, TemplateImage } from "../image/store.ts";

/** Where the manager finds kernels and base templates (the image store). */
export interface ImageSource {
  kernel(): Promise<KernelFiles>;
  template(name: string): Promise<TemplateImage>;
  /** Every base template built on this host. */
  templates(): Promise<TemplateImage[]>;
  bootArgs(opts: { guestIp: string; gatewayIp: string; netmask: string; hostname: string }): string;
}

export interface ManagerOptions {
  dataDir: string;
  /** Short-lived files (sockets, RAM files): kept short for Unix socket path limits. */
  runRoot: string;
  vmm: VmmDriver;
  storage: StorageDriver;
  network: NetworkManager;
  images: ImageSource;
  log: Logger;
  /** The data dir's filesystem makes `cp --reflink` copies (xfs, btrfs): copies cost nothing. */
  reflinkCopies?: boolean;
  /** How long a cold boot may take to reach envd's /health. */
  bootTimeoutMs?: number;
  /** How long a restored guest's envd may take to answer /init. */
  restoreTimeoutMs?: number;
  /**
   * Where boot snapshots of base templates live (shared by the agents using
   * one image dir); null: every create from a base template boots it.
   */
  bootSnapshotDir: string | null;
}

export interface CreateParams {
  id: string;
  template: string;
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
  timeoutSec: number;
  envVars: Record<string, string>;
  envdAccessToken?: string;
  network?: EgressRules;
}

export interface ExecParams {
  cmd: string;
  args: string[];
  envs?: Record<string, string>;
  cwd?: string;
  user?: string;
  timeoutSec: number;
}

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
  durationMs: number;
}

/** A sandbox this agent holds, with the live handles behind its record. */
interface Live {
  record: SandboxRecord;
  vm: VmHandle | null;
  slot: NetworkSlot | null;
  envd: EnvdClient | null;
  /** Set while the agent itself is stopping the VM, so its exit is not a failure. */
  stopping: boolean;
  /** Aborted when the VM exits: in-flight envd calls fail at once instead of hanging. */
  gone: AbortController;
  /** Firecracker restores: serves the VM's memory; the VM hangs without it. */
  pageServer: PageServer | null;
}

function newLive(record: SandboxRecord): Live {
  return {
    record,
    vm: null,
    slot: null,
    envd: null,
    stopping: false,
    gone: new AbortController(),
    pageServer: null,
  };
}

const NETMASK = "255.255.255.252";

/**
 * Owns every sandbox on this host: turns create/destroy/exec into driver
 * calls, in an order that never leaks a host resource, and keeps the
 * on-disk records a restarted agent needs.
 */
export class SandboxManager {
  private readonly opts: ManagerOptions;
  private readonly log: Logger;
  private readonly records: RecordStore;
  readonly templates: TemplateStore;
  private readonly bootSnapshots: BootSnapshots | null;
  private readonly live = new Map<string, Live>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Sandboxes removed by the agent itself (TTL, VM death, restart), with why. */
  private readonly reaped = new Map<string, string>();
  private readonly autoPaused = new Set<string>();
  private reaper: NodeJS.Timeout | undefined;
  private reaping = false;
  /** Set by close(): this manager no longer owns the VMs (the next agent adopts them). */
  private closed = false;

  constructor(opts: ManagerOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.records = new RecordStore(join(opts.dataDir, "sandboxes"));
    this.templates = new TemplateStore(join(opts.dataDir, "snapshots"));
    this.bootSnapshots =
      opts.bootSnapshotDir === null
        ? null
        : new BootSnapshots(
            opts.bootSnapshotDir,
            (shape, name, source) => this.buildBootSnapshot(shape, name, source),
            opts.log,
          );
  }

  get vmmName(): string {
    return this.opts.vmm.name;
  }

  get storageName(): string {
    return this.opts.storage.name;
  }

  /** Serialises operations on one sandbox; different sandboxes run concurrently. */
  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  private runDir(id: string): string {
    return join(this.opts.runRoot, id);
  }

  /**
   * Agent start: re-adopt VMs that are still alive and healthy, tear down the
   * rest (a crash mid-create, a VM that died while the agent was down), then
   * remove network leftovers no record accounts for.
   */
  async start(): Promise<void> {
    await this.templates.cleanupPartial();
    const { records, unreadable } = await this.records.loadAll();
    for (const id of unreadable) {
      this.log.warn({ sandbox: id }, "unreadable sandbox record; removing its directory");
      await this.records.remove(id);
    }
    await this.bootSnapshots?.store.cleanupPartial();
    const keep: number[] = [];
    for (const record of records) {
      if (record.id.startsWith(BUILDER_PREFIX)) {
        // A boot snapshot's builder the last agent did not finish: nobody waits for it.
        await this.teardown(record, null);
        continue;
      }
      if (record.status === "paused") {
        if (record.disk && (await this.opts.storage.adopt(record.disk).catch(() => false))) {
          this.live.set(record.id, newLive(record));
          continue;
        }
        this.log.warn({ sandbox: record.id }, "paused sandbox lost its disk; removing it");
      }
      const adopted = await this.adopt(record).catch((err: unknown) => {
        this.log.warn({ sandbox: record.id, err: messageOf(err) }, "re-adopt failed");
        return null;
      });
      if (adopted) {
        keep.push(record.slotIndex as number);
        continue;
      }
      await this.teardown(record, null);
      this.reaped.set(record.id, "its VM was gone when the agent restarted; resources released");
      this.log.info({ sandbox: record.id }, "removed sandbox whose VM did not survive the restart");
    }
    await this.opts.network.cleanupStale(keep);
  }

  private async adopt(record: SandboxRecord): Promise<boolean> {
    if (record.status !== "running" || record.vm === null || record.slotIndex === null)
      return false;
    const vm = await this.opts.vmm.adopt(record.vm);
    if (vm === null) return false;
    let pageServer: PageServer | null = null;
    if (record.pageServer) {
      pageServer = await adoptPageServer(record.pageServer);
      if (pageServer === null) {
        // Its memory is served by no one: the VM hangs at its next fault.
        this.log.warn({ sandbox: record.id }, "the VM's page server is gone; not re-adopting it");
        await vm.stop().catch(() => undefined);
        return false;
      }
    }
    const slot = this.opts.network.adopt(record.slotIndex);
    const gone = new AbortController();
    const envd = new EnvdClient(
      `${slot.hostAddress}:${ENVD_PORT}`,
      record.envdAccessToken,
      gone.signal,
    );
    if (!(await envd.healthy(3000))) {
      envd.close();
      await vm.stop().catch(() => undefined);
      await pageServer?.stop().catch(() => undefined);
      await this.opts.network.release(slot).catch(() => undefined);
      return false;
    }
    const live: Live = { ...newLive(record), vm, slot, envd, gone, pageServer };
    this.live.set(record.id, live);
    this.watchExit(live, vm);
    this.log.info({ sandbox: record.id, pid: vm.pid }, "re-adopted running sandbox");
    return true;
  }

  /** Releases whatever a record says is held; every step runs even if one fails. */
  private async teardown(record: SandboxRecord, vm: VmHandle | null): Promise<void> {
    const steps: Array<[string, () => Promise<void>]> = [
      [
        "stop vm",
        async () => {
          if (vm) await vm.stop();
          else if (record.vm) {
            const adopted = await this.opts.vmm.adopt(record.vm).catch(() => null);
            if (adopted) await adopted.stop();
            // Not re-attachable (control socket busy or gone): it must still not outlive its sandbox.
            else await killIfNamed(record.vm.pid, record.vm.vmId);
          }
        },
      ],
      [
        "destroy disk",
        async () => (record.disk ? this.opts.storage.destroy(record.disk) : undefined),
      ],
      [
        "release network",
        async () => {
          if (record.slotIndex !== null) {
            await this.opts.network.release(this.opts.network.adopt(record.slotIndex));
          }
        },
      ],
      ["remove run dir", () => rm(this.runDir(record.id), { recursive: true, force: true })],
      ["remove record", () => this.records.remove(record.id)],
    ];
    for (const [step, fn] of steps) {
      try {
        await fn();
      } catch (err) {
        this.log.error({ sandbox: record.id, step, err: messageOf(err) }, "teardown step failed");
      }
    }
  }

  async create(params: CreateParams): Promise<SandboxRecord> {
    if (this.live.has(params.id)) {
      throw new WrennError("already_exists", `sandbox '${params.id}' already exists on this host`);
    }
    const now = Date.now();
    const fresh = (): SandboxRecord => ({
      id: params.id,
      template: params.template,
      vcpus: params.vcpus,
      memoryMb: params.memoryMb,
      diskSizeMb: params.diskSizeMb,
      timeoutSec: params.timeoutSec,
      createdAtMs: now,
      lastActiveAtMs: now,
      status: "starting",
      vmm: this.opts.vmm.name,
      slotIndex: null,
      disk: null,
      vm: null,
      envVars: params.envVars,
      envdAccessToken: params.envdAccessToken ?? "",
      network: params.network ?? { allowOut: [], denyOut: [] },
      basePath: "",
      fromSnapshot: null,
    });
    const record = fresh();
    const live = newLive(record);
    this.live.set(params.id, live);
    const snapshot = await this.templates.get(params.template);
    return this.withLock(params.id, async () => {
      if (snapshot) return this.restoreTemplate(live, snapshot, "template");
      const boot = await this.bootSnapshotOf(record);
      if (boot === null) return this.boot(live);
      try {
        return await this.restoreTemplate(live, boot, "boot");
      } catch (err) {
        // Everything it took is released by now. A boot snapshot the VMM
        // cannot start from (its kernel file gone, a damaged file) must not
        // fail every create of its shape: this one boots, and so do the next
        // for a while. A VM that started and then died is this create's error.
        const started = live.vm !== null;
        if (started || (err instanceof WrennError && err.code === "resource_exhausted")) throw err;
        this.log.warn(
          { sandbox: params.id, snapshot: boot.name, err: messageOf(err) },
          "restoring the boot snapshot failed; booting instead",
        );
        this.bootSnapshots?.failed(boot.name);
        const retry = newLive(fresh());
        this.live.set(params.id, retry);
        return this.boot(retry);
      }
    });
  }

  /** The boot snapshot a create from a base template restores, or null to boot it. */
  private async bootSnapshotOf(record: SandboxRecord): Promise<SnapshotMeta | null> {
    if (this.bootSnapshots === null || record.id.startsWith(BUILDER_PREFIX)) return null;
    const shape: Shape = {
      template: record.template,
      vcpus: record.vcpus,
      memoryMb: record.memoryMb,
      diskSizeMb: record.diskSizeMb,
    };
    try {
      // By the files themselves (real paths): image dirs that link to one
      // build share its boot snapshots.
      const [kernel, image] = await Promise.all([
        this.currentKernel(),
        this.opts.images.template(record.template),
      ]);
      const source: BootSource = { rootfs: image.rootfs, kernel: kernel.kernelPath };
      const name = BootSnapshots.nameOf(shape, source, this.opts.vmm.name);
      return await this.bootSnapshots.get(shape, name, source);
    } catch {
      return null; // the boot reports what is wrong (no such template, no kernel)
    }
  }

  /** Boots a sandbox of `shape` for the agent itself and keeps its memory and disk. */
  private async buildBootSnapshot(
    shape: Shape,
    name: string,
    source: BootSource,
  ): Promise<SnapshotMeta> {
    const id = `${BUILDER_PREFIX}${randomBytes(6).toString("hex")}`;
    await this.create({ id, ...shape, timeoutSec: 0, envVars: {} });
    try {
      // Clones then start with envd's exec and file paths compiled and the
      // command's files in the page cache: their first exec and first file
      // write are that much shorter.
      const envd = this.envdOf(id);
      const warm = "/tmp/.wrenn-boot-snapshot";
      await envd.writeFile(warm, Buffer.from("warm"));
      for await (const chunk of await envd.readFile(warm)) void chunk;
      await this.exec(id, { cmd: "rm", args: ["-f", warm], timeoutSec: 60 });
      await this.pause(id);
      const store = (this.bootSnapshots as BootSnapshots).store;
      return await this.withLock(id, () => this.saveSnapshot(id, store, name, { source }));
    } finally {
      await this.destroy(id).catch((err: unknown) =>
        this.log.error({ sandbox: id, err: messageOf(err) }, "boot snapshot builder not removed"),
      );
    }
  }

  /** The template a sandbox's memory came from: a pause diffs against it (Firecracker). */
  private snapshotDirOf(record: SandboxRecord): string | null {
    if (record.fromSnapshot) return this.templates.files(record.fromSnapshot).dir;
    if (record.bootSnapshot && this.bootSnapshots) {
      return this.bootSnapshots.store.files(record.bootSnapshot).dir;
    }
    return null;
  }

  private async boot(live: Live): Promise<SandboxRecord> {
    const { record } = live;
    const log = this.log.child({ sandbox: record.id });
    const started = performance.now();
    return this.orTeardown(live, log, "create", async () => {
      const [{ kernelPath, initrdPath }, template] = await timed(log, "create.images", () =>
        Promise.all([this.currentKernel(), this.opts.images.template(record.template)]),
      );
      const templateMb = Math.ceil(template.sizeBytes / (1024 * 1024));
      if (record.diskSizeMb < templateMb) {
        throw new WrennError(
          "invalid_argument",
          `disk_size_mb ${record.diskSizeMb} is smaller than template '${record.template}' (${templateMb} MiB)`,
        );
      }
      record.basePath = template.rootfs;
      const slot = await this.acquireSlot(live, log, "create");
      const disk = await this.createDisk(live, log, template.rootfs);
      const vm = await timed(log, "create.boot", () =>
        this.opts.vmm.boot({
          ...this.machine(record, slot, disk),
          kernelPath,
          initrdPath,
          bootArgs: this.opts.images.bootArgs({
            guestIp: GUEST_IP,
            gatewayIp: TAP_IP,
            netmask: NETMASK,
            // Not the sandbox's id: restored sandboxes carry their boot
            // snapshot's hostname, so every sandbox of a template has one.
            hostname: record.template,
          }),
        }),
      );
      await this.attachVm(live, vm, "create", false);
      log.info(
        { ms: Math.round(performance.now() - started), vmm: record.vmm, pid: vm.pid },
        "sandbox created",
      );
      return record;
    });
  }

  /**
   * Create from a snapshot template, or from a base template's boot
   * snapshot: restore its memory instead of booting.
   */
  private async restoreTemplate(
    live: Live,
    snap: SnapshotMeta,
    kind: "template" | "boot",
  ): Promise<SandboxRecord> {
    const { record } = live;
    const store = kind === "boot" ? (this.bootSnapshots as BootSnapshots).store : this.templates;
    const log = this.log.child({ sandbox: record.id, template: snap.name, kind });
    const started = performance.now();
    return this.orTeardown(live, log, "create", async () => {
      if (snap.vmm !== this.opts.vmm.name) {
        throw new WrennError(
          "failed_precondition",
          `snapshot template '${snap.name}' was taken with ${snap.vmm}; this host runs ${this.opts.vmm.name}`,
        );
      }
      // A snapshot carries its machine: the guest's memory and filesystem were sized for it.
      record.vcpus = snap.vcpus;
      record.memoryMb = snap.memoryMb;
      record.diskSizeMb = snap.diskSizeMb;
      if (kind === "template") record.fromSnapshot = snap.name;
      else record.bootSnapshot = snap.name;
      const files = store.files(snap.name);
      record.basePath = files.rootfs;
      const slot = await this.acquireSlot(live, log, "create");
      const disk = await this.createDisk(live, log, files.rootfs);
      const vm = await this.restoreVm(live, log, "create", slot, disk, files.dir, true);
      await this.attachVm(live, vm, "create", true);
      log.info(
        { ms: Math.round(performance.now() - started), vmm: record.vmm, pid: vm.pid },
        kind === "template" ? "sandbox created from snapshot template" : "sandbox created",
      );
      return record;
    });
  }

  /** Runs a create step list; on failure releases everything the sandbox holds. */
  private async orTeardown<T>(
    live: Live,
    log: Logger,
    what: string,
    fn: () => Promise<T>,
  ): Promise<T> {
    try {
      await this.records.save(live.record);
      await mkdir(this.runDir(live.record.id), { recursive: true });
      return await fn();
    } catch (err) {
      live.stopping = true;
      log.warn({ err: messageOf(err) }, `${what} failed; releasing what it acquired`);
      await live.pageServer?.stop().catch(() => undefined);
      await this.teardown(live.record, live.vm);
      this.live.delete(live.record.id);
      throw err instanceof WrennError
        ? err
        : new WrennError("internal", `${what} failed: ${messageOf(err)}`, { cause: err });
    }
  }

  private async acquireSlot(live: Live, log: Logger, phase: string): Promise<NetworkSlot> {
    const slot = await timed(log, `${phase}.network`, () => this.opts.network.acquire());
    live.slot = slot;
    live.record.slotIndex = slot.index;
    await this.records.save(live.record);
    // Before the VM runs: no moment without its rules (a resumed one gets a new slot).
    const rules = live.record.network;
    if (hasEgressRules(rules)) {
      await timed(log, `${phase}.egress`, () => this.opts.network.setEgress(slot, rules));
    }
    return slot;
  }

  private async createDisk(live: Live, log: Logger, basePath: string): Promise<SandboxDisk> {
    const { record } = live;
    const disk = await timed(log, "create.disk", () =>
      this.opts.storage.create(
        record.id,
        { name: record.template, path: basePath },
        record.diskSizeMb,
        this.records.sandboxDir(record.id),
      ),
    );
    record.disk = disk;
    await this.records.save(record);
    return disk;
  }

  private machine(record: SandboxRecord, slot: NetworkSlot, disk: SandboxDisk) {
    return {
      vmId: record.id,
      vcpus: record.vcpus,
      memoryMb: record.memoryMb,
      rootfs: { path: disk.path, format: disk.format },
      tapName: slot.tapName,
      guestMac: GUEST_MAC,
      netns: slot.netns,
      runDir: this.runDir(record.id),
      // Every pause after the first can then be a Diff (Firecracker; QEMU ignores it).
      trackDirtyPages: true,
    };
  }

  /**
   * Starts a VMM from a memory snapshot in `dir`. Firecracker's memory is
   * served lazily by a page server; QEMU maps the RAM file (a template's
   * privately, copy-on-write, so one template serves many sandboxes).
   */
  private async restoreVm(
    live: Live,
    log: Logger,
    phase: string,
    slot: NetworkSlot,
    disk: SandboxDisk,
    dir: string,
    clone: boolean,
  ): Promise<VmHandle> {
    const { record } = live;
    let uffdSocket: string | undefined;
    if (this.opts.vmm.name === "firecracker") {
      uffdSocket = join(this.runDir(record.id), "uffd.sock");
      live.pageServer = await timed(log, `${phase}.page_server`, () =>
        startPageServer({ socketPath: uffdSocket as string, snapshotDir: dir }),
      );
      record.pageServer = live.pageServer.record;
    }
    let memPath = join(dir, "memfile");
    // QEMU writes guest RAM into the file it maps. A resume runs on a copy so
    // a failed resume leaves the paused memory as it was and a retry restores
    // a consistent state. A clone maps the template's file privately (nothing
    // copied), unless copies are reflinks: then it gets its own file too, and
    // its pauses are a rename instead of its whole RAM streamed into the state.
    // The copy takes the name of the VM's own RAM file, so stop and pause treat it so.
    const ownCopy = this.opts.vmm.name === "qemu" && (!clone || this.opts.reflinkCopies === true);
    if (ownCopy) {
      const own = join(this.runDir(record.id), `${record.id}.mem`);
      await timed(log, `${phase}.copy_memory`, () => copySparse(memPath, own));
      memPath = own;
    }
    return timed(log, `${phase}.restore`, () =>
      this.opts.vmm.restore({
        ...this.machine(record, slot, disk),
        snapshot: { statePath: join(dir, "state"), memPath },
        uffdSocket,
        privateMemory: clone && !ownCopy,
        currentKernel: () => this.currentKernel(),
      }),
    );
  }

  /**
   * The kernel a boot gets, by its real path: a snapshot of the VM records
   * it, and a link (another agent's image dir) may go.
   */
  private async currentKernel(): Promise<{ kernelPath: string; initrdPath: string }> {
    const kernel = await this.opts.images.kernel();
    return {
      kernelPath: await realpath(
        this.opts.vmm.name === "firecracker" ? kernel.vmlinux : kernel.qemuKernel,
      ),
      initrdPath: kernel.initrd === "" ? "" : await realpath(kernel.initrd),
    };
  }

  /** The VM is up: wait for envd, give it its identity (token, env, clock), mark it running. */
  private async attachVm(
    live: Live,
    vm: VmHandle,
    phase: string,
    restored: boolean,
  ): Promise<void> {
    const { record } = live;
    const log = this.log.child({ sandbox: record.id });
    const slot = live.slot as NetworkSlot;
    live.vm = vm;
    live.gone = new AbortController();
    record.vm = this.opts.vmm.record(vm);
    await this.records.save(record);
    const gone = live.gone;
    const fail = (why: string) => gone.abort(new WrennError("unavailable", why));
    void vm.exited.then(() =>
      fail(
        record.status === "running"
          ? "the VM exited; the sandbox is gone"
          : `the VM exited during ${phase}`,
      ),
    );
    void live.pageServer?.exited.then((exit) => {
      if (exit.unexpected) fail(`the VM's page server died: ${exit.reason}`);
    });
    // The token envd holds now: none after a boot, the template's in a clone.
    const current =
      phase === "create" && record.fromSnapshot
        ? ((await this.templates.get(record.fromSnapshot))?.envdAccessToken ?? "")
        : phase === "create"
          ? ""
          : record.envdAccessToken;
    const envd = new EnvdClient(`${slot.hostAddress}:${ENVD_PORT}`, current, gone.signal);
    try {
      // A restored envd was answering when its memory was saved: /init itself
      // is the first request (a health round trip costs hundreds of ms in a
      // guest whose code TCG must translate again after every restore).
      if (!restored) {
        await timed(log, `${phase}.envd_health`, () =>
          envd.waitHealthy(this.opts.bootTimeoutMs ?? 120_000, gone.signal),
        );
      }
      await timed(log, `${phase}.envd_init`, () =>
        envd.init(
          {
            envVars: record.envVars,
            accessToken: record.envdAccessToken || undefined,
            defaultUser: "user",
          },
          gone.signal,
          restored ? (this.opts.restoreTimeoutMs ?? 30_000) : 10_000,
        ),
      );
    } catch (err) {
      envd.close();
      throw err;
    }
    live.envd = envd;
    record.status = "running";
    record.lastActiveAtMs = Date.now();
    await this.records.save(record);
    this.watchExit(live, vm);
  }

  private keepDir(id: string): string {
    return join(this.records.sandboxDir(id), "paused");
  }

  /**
   * Pause, in the seed's order: freeze → snapshot → compact the memory →
   * stop the VMM → detach the disk → release the slot. Anything failing
   * before the VMM stops resumes the vCPUs (the sandbox stays usable);
   * anything failing after frees every host resource and reports the error.
   */
  async pause(id: string, reason: "user" | "ttl" = "user"): Promise<void> {
    await this.withLock(id, async () => {
      const live = this.get(id);
      const { record } = live;
      if (record.status !== "running" || live.vm === null || live.slot === null) {
        throw new WrennError(
          "failed_precondition",
          `sandbox '${id}' is ${record.status}; only a running sandbox can be paused`,
        );
      }
      const log = this.log.child({ sandbox: id, reason });
      const started = performance.now();
      const vm = live.vm;
      const keep = this.keepDir(id);
      await mkdir(keep, { recursive: true });
      await timed(log, "pause.freeze", () => vm.pause());
      try {
        await this.saveMemory(live, vm, keep, log);
      } catch (err) {
        log.warn({ err: messageOf(err) }, "pause failed before the VMM stopped; resuming vCPUs");
        await vm.resume().catch((e: unknown) => {
          log.error({ err: messageOf(e) }, "could not resume vCPUs after a failed pause");
        });
        throw err;
      }
      live.stopping = true;
      try {
        await timed(log, "pause.stop_vmm", () => vm.stop());
        await live.pageServer?.stop();
        live.pageServer = null;
        record.pageServer = null;
        record.vm = null;
        live.vm = null;
        const disk = record.disk as SandboxDisk;
        record.disk = await timed(log, "pause.detach_disk", () =>
          this.opts.storage.detach(disk, keep),
        );
        await timed(log, "pause.release_network", () =>
          this.opts.network.release(live.slot as NetworkSlot),
        );
        live.slot = null;
        record.slotIndex = null;
        live.envd?.close();
        live.envd = null;
        // Reported together with the state, so no one sees "paused" without "auto".
        if (reason === "ttl") this.autoPaused.add(id);
        record.status = "paused";
        await this.records.save(record);
        await rm(this.runDir(id), { recursive: true, force: true });
      } catch (err) {
        log.error(
          { err: messageOf(err) },
          "pause failed after the VMM stopped; freeing everything",
        );
        await this.teardown(record, null);
        record.status = "failed";
        record.error = `pause failed: ${messageOf(err)}`;
        record.disk = null;
        record.slotIndex = null;
        throw err;
      } finally {
        live.stopping = false;
      }
      log.info({ ms: Math.round(performance.now() - started) }, "sandbox paused");
    });
  }

  /** Writes the VM's device state and memory into `keep` (the VM is frozen). */
  private async saveMemory(live: Live, vm: VmHandle, keep: string, log: Logger): Promise<void> {
    const statePath = join(keep, "state");
    if (this.opts.vmm.name !== "firecracker") {
      // QEMU: the RAM file is the memory snapshot; it moves into `keep`.
      await timed(log, "pause.snapshot", () =>
        vm.snapshot({ statePath, memPath: join(keep, "memfile") }, "full"),
      );
      return;
    }
    const fromTemplate = this.snapshotDirOf(live.record);
    const parentDir = (await exists(join(keep, HEADER_FILE))) ? keep : fromTemplate;
    const raw = join(keep, "memfile.raw");
    try {
      await timed(log, "pause.snapshot", () =>
        vm.snapshot({ statePath, memPath: raw }, parentDir ? "diff" : "full"),
      );
      await timed(log, "pause.compact_memory", async () => {
        if (parentDir === null) return writeFull({ imagePath: raw, dir: keep });
        const size = live.record.memoryMb * 1024 * 1024;
        return writeDiff({
          imagePath: raw,
          dir: keep,
          parentDir,
          dirty: await dirtyFromSparseFile(raw, size),
        });
      });
    } finally {
      await rm(raw, { force: true });
    }
  }

  /**
   * Resume: re-attach the disk, take a slot, restore the VM, wait for envd,
   * sync its clock. If anything fails, the disk goes back into the pause
   * folder and the sandbox stays paused, ready for another try.
   */
  async resume(id: string, timeoutSec?: number): Promise<SandboxRecord> {
    return this.withLock(id, async () => {
      const live = this.get(id);
      const { record } = live;
      if (record.status !== "paused" || record.disk === null) {
        throw new WrennError(
          "failed_precondition",
          `sandbox '${id}' is ${record.status}; only a paused sandbox can be resumed`,
        );
      }
      const log = this.log.child({ sandbox: id });
      const started = performance.now();
      const keep = this.keepDir(id);
      const detached = record.disk;
      await mkdir(this.runDir(id), { recursive: true });
      try {
        const disk = await timed(log, "resume.attach_disk", () =>
          this.opts.storage.attach(detached, { name: record.template, path: record.basePath }),
        );
        record.disk = disk;
        const slot = await this.acquireSlot(live, log, "resume");
        const vm = await this.restoreVm(live, log, "resume", slot, disk, keep, false);
        if (timeoutSec) record.timeoutSec = timeoutSec;
        await this.attachVm(live, vm, "resume", true);
      } catch (err) {
        log.warn({ err: messageOf(err) }, "resume failed; the sandbox stays paused");
        live.stopping = true;
        await live.vm?.stop().catch(() => undefined);
        await live.pageServer?.stop().catch(() => undefined);
        live.pageServer = null;
        record.pageServer = null;
        live.vm = null;
        record.vm = null;
        if (live.slot) await this.opts.network.release(live.slot).catch(() => undefined);
        live.slot = null;
        record.slotIndex = null;
        if (record.disk && record.disk !== detached) {
          record.disk = await this.opts.storage.detach(record.disk, keep).catch((e: unknown) => {
            log.error({ err: messageOf(e) }, "could not move the disk back into the pause folder");
            return record.disk;
          });
        }
        record.status = "paused";
        live.stopping = false;
        await this.records.save(record);
        await rm(this.runDir(id), { recursive: true, force: true });
        throw err instanceof WrennError
          ? err
          : new WrennError("unavailable", `resume failed: ${messageOf(err)}`, { cause: err });
      }
      this.autoPaused.delete(id);
      // The VM runs on its own copy now. Freeing a GiB of extents and page
      // cache takes a rename over it (the next pause) hundreds of ms: move
      // it aside now and let it go in the background.
      if (this.opts.vmm.name === "qemu") await discard(join(keep, "memfile"), log);
      log.info({ ms: Math.round(performance.now() - started) }, "sandbox resumed");
      return record;
    });
  }

  /**
   * New egress rules: applied at once to a running sandbox, kept for the
   * next resume of a paused one (its names checked now). Either way the
   * record keeps them, so they survive agent restarts.
   */
  async updateNetwork(id: string, rules: EgressRules): Promise<void> {
    this.get(id);
    await this.withLock(id, async () => {
      const live = this.get(id);
      const { record } = live;
      if (record.status === "running" && live.slot !== null) {
        await this.opts.network.setEgress(live.slot, rules);
      } else if (record.status === "paused") {
        await this.opts.network.checkEgress(rules);
      } else {
        throw new WrennError(
          "failed_precondition",
          `sandbox '${id}' is ${record.status}; egress rules change only on a running or paused sandbox`,
        );
      }
      record.network = rules;
      await this.records.save(record);
      this.log.info(
        { sandbox: id, allowOut: rules.allowOut.length, denyOut: rules.denyOut.length },
        "egress rules updated",
      );
    });
  }

  /**
   * A snapshot template from a sandbox: it is paused (if running) and stays
   * paused; its disk is flattened and its memory kept, so new sandboxes
   * restore from it instead of booting.
   */
  async createSnapshot(id: string, name: string, overwrite: boolean): Promise<SnapshotMeta> {
    if (!SNAPSHOT_NAME.test(name)) {
      throw new WrennError(
        "invalid_argument",
        "name must start with a letter or digit and use only letters, digits, '.', '_' or '-' (at most 64)",
      );
    }
    const isBase = await this.opts.images.template(name).then(
      () => true,
      () => false,
    );
    if (isBase) {
      throw new WrennError("already_exists", `'${name}' is a base template's name`);
    }
    if (!overwrite && (await this.templates.get(name))) {
      throw new WrennError(
        "already_exists",
        `snapshot template '${name}' already exists (ask for overwrite to replace it)`,
      );
    }
    if (this.list().some((r) => r.fromSnapshot === name && r.status !== "failed")) {
      throw new WrennError(
        "failed_precondition",
        `snapshot template '${name}' is in use by sandboxes; it cannot be replaced now`,
      );
    }
    if (this.get(id).record.status === "running") await this.pause(id);
    return this.withLock(id, () => this.saveSnapshot(id, this.templates, name));
  }

  /** Flattens a paused sandbox's disk and copies its memory into `store` as `name` (under its lock). */
  private async saveSnapshot(
    id: string,
    store: TemplateStore,
    name: string,
    /** A boot snapshot: never replaces one that exists; records what it was made from. */
    boot?: { source: BootSource },
  ): Promise<SnapshotMeta> {
    const { record } = this.get(id);
    if (record.status !== "paused" || record.disk === null) {
      throw new WrennError("failed_precondition", `sandbox '${id}' is ${record.status}`);
    }
    const log = this.log.child({ sandbox: id, template: name });
    const keep = this.keepDir(id);
    const build = await store.begin(name, boot !== undefined);
    try {
      const disk = record.disk;
      // No fsck, no shrink: the snapshotted kernel has this filesystem mounted.
      await timed(log, "snapshot.flatten_disk", () =>
        this.opts.storage.flatten(disk, join(build.dir, "rootfs.ext4"), { shrink: false }),
      );
      await timed(log, "snapshot.copy_memory", () => copyMemory(keep, build.dir));
      const meta: SnapshotMeta = {
        name,
        vmm: record.vmm,
        vcpus: record.vcpus,
        memoryMb: record.memoryMb,
        diskSizeMb: record.diskSizeMb,
        baseTemplate: record.fromSnapshot
          ? ((await this.templates.get(record.fromSnapshot))?.baseTemplate ?? record.template)
          : record.template,
        sourceSandbox: id,
        envdAccessToken: record.envdAccessToken,
        createdAtMs: Date.now(),
        ...(boot ? { source: boot.source } : {}),
      };
      await build.commit(meta);
      log.info("snapshot template created");
      return meta;
    } catch (err) {
      await rm(build.dir, { recursive: true, force: true });
      throw err;
    }
  }

  async deleteSnapshot(name: string): Promise<void> {
    const users = this.list().filter((r) => r.fromSnapshot === name && r.status !== "failed");
    if (users.length > 0) {
      throw new WrennError(
        "failed_precondition",
        `snapshot template '${name}' is used by ${users.length} sandbox(es): ${users.map((r) => r.id).join(", ")}`,
      );
    }
    await this.templates.remove(name);
  }

  /**
   * A VM that dies on its own frees its resources at once and is reported
   * as failed; so does one whose page server dies under it (it would hang on
   * its next page fault).
   */
  private watchExit(live: Live, vm: VmHandle): void {
    void vm.exited.then((exit) => {
      live.gone.abort(new WrennError("unavailable", "the VM exited; the sandbox is gone"));
      return this.lose(
        live,
        vm,
        `the VM exited unexpectedly (${exit.signal ?? `code ${exit.code}`})`,
      );
    });
    const server = live.pageServer;
    void server?.exited.then((exit) => {
      if (!exit.unexpected || live.pageServer !== server) return;
      live.gone.abort(new WrennError("unavailable", `the VM's page server died: ${exit.reason}`));
      return this.lose(live, vm, `its page server died (${exit.reason}); the VM was stopped`);
    });
  }

  private async lose(live: Live, vm: VmHandle, why: string): Promise<void> {
    if (this.closed || live.stopping || live.vm !== vm) return;
    this.log.error({ sandbox: live.record.id, why }, "sandbox lost");
    await this.withLock(live.record.id, async () => {
      if (live.stopping || live.vm !== vm) return;
      live.stopping = true;
      await this.teardown(live.record, vm);
      live.vm = null;
      live.pageServer = null;
      live.envd?.close();
      live.envd = null;
      live.record.status = "failed";
      live.record.error = why;
      live.record.slotIndex = null;
      live.record.disk = null;
      live.record.vm = null;
      live.record.pageServer = null;
    });
  }

  async destroy(id: string): Promise<void> {
    const live = this.get(id);
    await this.withLock(id, async () => {
      live.stopping = true;
      live.envd?.close();
      await timed(this.log, "destroy", () => this.teardown(live.record, live.vm), { sandbox: id });
      this.live.delete(id);
    });
  }

  get(id: string): Live {
    const live = this.live.get(id);
    if (live === undefined) {
      throw new WrennError("not_found", `sandbox '${id}' does not exist on this host`);
    }
    return live;
  }

  list(): SandboxRecord[] {
    return [...this.live.values()].map((l) => l.record);
  }

  /**
   * The metrics sampler's targets: running sandboxes no lifecycle operation
   * holds (a frozen or stopping guest would only time the sample out). Not
   * a use of the sandbox: its idle time is left alone.
   */
  sampleTargets(): Array<{ record: SandboxRecord; envd: EnvdClient }> {
    const out: Array<{ record: SandboxRecord; envd: EnvdClient }> = [];
    for (const live of this.live.values()) {
      const { record, envd } = live;
      if (record.status !== "running" || envd === null || live.stopping) continue;
      if (this.locks.has(record.id)) continue;
      out.push({ record, envd });
    }
    return out;
  }

  baseTemplates(): Promise<TemplateImage[]> {
    return this.opts.images.templates();
  }

  reapedIds(): string[] {
    return [...this.reaped.keys()];
  }

  autoPausedIds(): string[] {
    return [...this.autoPaused];
  }

  /** The envd of a running sandbox; marks it active (the TTL counts idle time). */
  private running(id: string): { live: Live; envd: EnvdClient } {
    const live = this.get(id);
    if (live.record.status !== "running" || live.envd === null) {
      const detail = live.record.error ? `: ${live.record.error}` : "";
      throw new WrennError(
        "failed_precondition",
        `sandbox '${id}' is ${live.record.status}, not running${detail}`,
      );
    }
    live.record.lastActiveAtMs = Date.now();
    return { live, envd: live.envd };
  }

  async ping(id: string): Promise<void> {
    const { envd } = this.running(id);
    if (!(await envd.healthy(5000))) {
      throw new WrennError("unavailable", `sandbox '${id}' does not answer`);
    }
  }

  /** Output events of a command; ends with an `end` event or throws. */
  async *execStream(id: string, params: ExecParams): AsyncGenerator<ExecEvent> {
    const { live, envd } = this.running(id);
    const timeout =
      params.timeoutSec > 0 ? AbortSignal.timeout(params.timeoutSec * 1000) : undefined;
    let pid: number | undefined;
    try {
      for await (const ev of envd.execStream({ ...params, signal: timeout })) {
        if (ev.type === "start") pid = ev.pid;
        yield ev;
      }
    } catch (err) {
      if (timeout?.aborted) {
        if (pid !== undefined) await envd.kill(pid);
        throw new WrennError(
          "deadline_exceeded",
          `command did not finish within ${params.timeoutSec} s and was killed`,
        );
      }
      if (live.gone.signal.aborted || live.stopping) {
        throw new WrennError("unavailable", `sandbox '${id}' stopped during the command`);
      }
      throw err;
    } finally {
      live.record.lastActiveAtMs = Date.now();
    }
  }

  async exec(id: string, params: ExecParams): Promise<ExecResult> {
    const started = performance.now();
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let exitCode: number | undefined;
    for await (const ev of this.execStream(id, params)) {
      if (ev.type === "stdout") stdout.push(Buffer.from(ev.data));
      else if (ev.type === "stderr") stderr.push(Buffer.from(ev.data));
      else if (ev.type === "end") exitCode = ev.exitCode;
    }
    if (exitCode === undefined) {
      throw new WrennError("unavailable", `the command's stream ended without an exit status`);
    }
    return {
      stdout: Buffer.concat(stdout),
      stderr: Buffer.concat(stderr),
      exitCode,
      durationMs: Math.round(performance.now() - started),
    };
  }

  envdOf(id: string): EnvdClient {
    return this.running(id).envd;
  }

  /**
   * Where the host reaches a running sandbox's guest (the traffic proxy), and
   * the signal that this run of its VM ended; marks it active.
   */
  guestAddress(id: string): { host: string; gone: AbortSignal } {
    const { live } = this.running(id);
    if (!live.slot) throw new WrennError("failed_precondition", `sandbox '${id}' has no network`);
    return { host: live.slot.hostAddress, gone: live.gone.signal };
  }

  async diskUsage(record: SandboxRecord): Promise<number> {
    return record.disk ? this.opts.storage.usage(record.disk).catch(() => 0) : 0;
  }

  envdAddress(id: string): string {
    const live = this.get(id);
    return live.slot ? `${live.slot.hostAddress}:${ENVD_PORT}` : "";
  }

  /** Starts the TTL reaper: sandboxes idle past their timeout are removed. */
  startReaper(intervalMs: number): void {
    this.reaper = setInterval(() => void this.reap(), intervalMs);
    this.reaper.unref();
  }

  async reap(now = Date.now()): Promise<void> {
    // One pass at a time: a pause can outlast the interval, and a second pass
    // would find the sandbox still running and pause it again.
    if (this.reaping) return;
    this.reaping = true;
    try {
      await this.reapIdle(now);
    } finally {
      this.reaping = false;
    }
  }

  private async reapIdle(now: number): Promise<void> {
    for (const live of [...this.live.values()]) {
      const r = live.record;
      if (r.status !== "running" || r.timeoutSec <= 0) continue;
      if (now - r.lastActiveAtMs < r.timeoutSec * 1000) continue;
      this.log.info({ sandbox: r.id, timeoutSec: r.timeoutSec }, "TTL expired; pausing");
      try {
        await this.pause(r.id, "ttl");
      } catch (err) {
        // Paused or destroyed by its user meanwhile: nothing left to do, and
        // destroying it now would throw a paused sandbox away.
        if (this.live.get(r.id) !== live || live.record.status === "paused") continue;
        this.log.error({ sandbox: r.id, err: messageOf(err) }, "TTL pause failed; destroying");
        await this.destroy(r.id).catch(() => undefined);
        this.reaped.set(r.id, `idle past its timeout and could not be paused: ${messageOf(err)}`);
      }
    }
  }

  /** Agent shutdown: stops the reaper, leaves VMs running for the next agent to adopt. */
  async close(): Promise<void> {
    clearInterval(this.reaper);
    await Promise.all([...this.locks.values()]);
    this.closed = true;
    for (const live of this.live.values()) {
      live.vm?.release();
      live.envd?.close();
    }
  }

  /** Destroys every sandbox (tests, `wrenn up` teardown). */
  async destroyAll(): Promise<void> {
    await Promise.all([...this.live.keys()].map((id) => this.destroy(id).catch(() => undefined)));
  }
}

/**
 * Removes a large file off the caller's path: renamed now (so nothing can
 * reuse the name before it goes), unlinked in the background.
 */
async function discard(path: string, log: Logger): Promise<void> {
  // A name no snapshot reader picks up (they look for `memfile*`).
  const aside = join(dirname(path), `.discard-${randomBytes(4).toString("hex")}`);
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    log.warn({ path, err: messageOf(err) }, "could not move a stale memory file aside");
    return;
  }
  void rm(aside, { force: true });
}

/**
 * The memory of a paused sandbox into a template folder. Generation files
 * never change once written, so they are hard-linked; a raw RAM file (QEMU)
 * keeps running sandboxes' memory separate, so it is copied (sparse).
 */
async function copyMemory(from: string, to: string): Promise<void> {
  for (const name of await readdir(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    if (name === "state" || name === HEADER_FILE) await copyFile(src, dst);
    else if (name.startsWith("memfile.")) await link(src, dst).catch(() => copySparse(src, dst));
    else if (name === "memfile") await copySparse(src, dst);
  }
}

export function newAccessToken(): string {
  return randomBytes(16).toString("hex");
}
