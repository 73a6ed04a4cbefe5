import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
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
import { EnvdClient, ENVD_PORT, type ExecEvent } from "../envd/client.ts";
import { RecordStore, type SandboxRecord } from "./records.ts";
import type { KernelFiles, TemplateImage } from "../image/store.ts";

/** Where the manager finds kernels and base templates (the image store). */
export interface ImageSource {
  kernel(): Promise<KernelFiles>;
  template(name: string): Promise<TemplateImage>;
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
  /** How long a cold boot may take to reach envd's /health. */
  bootTimeoutMs?: number;
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
  private readonly live = new Map<string, Live>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Sandboxes removed by the agent itself (TTL, VM death, restart), with why. */
  private readonly reaped = new Map<string, string>();
  private readonly autoPaused = new Set<string>();
  private reaper: NodeJS.Timeout | undefined;

  constructor(opts: ManagerOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.records = new RecordStore(join(opts.dataDir, "sandboxes"));
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
    const { records, unreadable } = await this.records.loadAll();
    for (const id of unreadable) {
      this.log.warn({ sandbox: id }, "unreadable sandbox record; removing its directory");
      await this.records.remove(id);
    }
    const keep: number[] = [];
    for (const record of records) {
      if (record.status === "paused") {
        this.live.set(record.id, {
          record,
          vm: null,
          slot: null,
          envd: null,
          stopping: false,
          gone: new AbortController(),
        });
        continue;
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
    const slot = this.opts.network.adopt(record.slotIndex);
    const gone = new AbortController();
    const envd = new EnvdClient(
      `${slot.hostAddress}:${ENVD_PORT}`,
      record.envdAccessToken,
      gone.signal,
    );
    if (!(await envd.healthy(3000))) {
      await vm.stop().catch(() => undefined);
      await this.opts.network.release(slot).catch(() => undefined);
      return false;
    }
    const live: Live = { record, vm, slot, envd, stopping: false, gone };
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
          else if (record.vm) await (await this.opts.vmm.adopt(record.vm))?.stop();
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
    const record: SandboxRecord = {
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
    };
    const live: Live = {
      record,
      vm: null,
      slot: null,
      envd: null,
      stopping: false,
      gone: new AbortController(),
    };
    this.live.set(params.id, live);
    return this.withLock(params.id, () => this.boot(live));
  }

  private async boot(live: Live): Promise<SandboxRecord> {
    const { record } = live;
    const log = this.log.child({ sandbox: record.id });
    const started = performance.now();
    try {
      const [kernel, template] = await timed(log, "create.images", () =>
        Promise.all([this.opts.images.kernel(), this.opts.images.template(record.template)]),
      );
      const templateMb = Math.ceil(template.sizeBytes / (1024 * 1024));
      if (record.diskSizeMb < templateMb) {
        throw new WrennError(
          "invalid_argument",
          `disk_size_mb ${record.diskSizeMb} is smaller than template '${record.template}' (${templateMb} MiB)`,
        );
      }
      await this.records.save(record);
      const sandboxDir = this.records.sandboxDir(record.id);
      const runDir = this.runDir(record.id);
      await mkdir(runDir, { recursive: true });

      const slot = await timed(log, "create.network", () => this.opts.network.acquire());
      live.slot = slot;
      record.slotIndex = slot.index;
      await this.records.save(record);

      const disk: SandboxDisk = await timed(log, "create.disk", () =>
        this.opts.storage.create(
          record.id,
          { name: record.template, path: template.rootfs },
          record.diskSizeMb,
          sandboxDir,
        ),
      );
      record.disk = disk;
      await this.records.save(record);

      const vm = await timed(log, "create.boot", () =>
        this.opts.vmm.boot({
          vmId: record.id,
          vcpus: record.vcpus,
          memoryMb: record.memoryMb,
          kernelPath: this.opts.vmm.name === "firecracker" ? kernel.vmlinux : kernel.vmlinuz,
          initrdPath: kernel.initrd,
          bootArgs: this.opts.images.bootArgs({
            guestIp: GUEST_IP,
            gatewayIp: TAP_IP,
            netmask: NETMASK,
            hostname: record.id,
          }),
          rootfs: { path: disk.path, format: disk.format },
          tapName: slot.tapName,
          guestMac: GUEST_MAC,
          netns: slot.netns,
          runDir,
        }),
      );
      live.vm = vm;
      record.vm = this.opts.vmm.record(vm);
      await this.records.save(record);

      const envd = new EnvdClient(
        `${slot.hostAddress}:${ENVD_PORT}`,
        record.envdAccessToken,
        live.gone.signal,
      );
      void vm.exited.then(() =>
        live.gone.abort(
          new WrennError(
            "unavailable",
            live.record.status === "starting"
              ? "the VM exited while booting"
              : "the VM exited; the sandbox is gone",
          ),
        ),
      );
      await timed(log, "create.envd_health", () =>
        envd.waitHealthy(this.opts.bootTimeoutMs ?? 120_000, live.gone.signal),
      );
      await timed(log, "create.envd_init", () =>
        envd.init({
          envVars: record.envVars,
          accessToken: record.envdAccessToken || undefined,
          defaultUser: "user",
        }),
      );
      live.envd = envd;
      record.status = "running";
      record.lastActiveAtMs = Date.now();
      await this.records.save(record);
      this.watchExit(live, vm);
      log.info(
        { ms: Math.round(performance.now() - started), vmm: record.vmm, pid: vm.pid },
        "sandbox created",
      );
      return record;
    } catch (err) {
      live.stopping = true;
      log.warn({ err: messageOf(err) }, "create failed; releasing what it acquired");
      await this.teardown(record, live.vm);
      this.live.delete(record.id);
      throw err instanceof WrennError
        ? err
        : new WrennError("internal", `create failed: ${messageOf(err)}`, { cause: err });
    }
  }

  /** A VM that dies on its own frees its resources at once and is reported as failed. */
  private watchExit(live: Live, vm: VmHandle): void {
    void vm.exited.then(async (exit) => {
      live.gone.abort(new WrennError("unavailable", "the VM exited; the sandbox is gone"));
      if (live.stopping || live.vm !== vm) return;
      const why = `the VM exited unexpectedly (${exit.signal ?? `code ${exit.code}`})`;
      this.log.error({ sandbox: live.record.id, ...exit }, "VM exited unexpectedly");
      await this.withLock(live.record.id, async () => {
        if (live.stopping || live.vm !== vm) return;
        live.stopping = true;
        await this.teardown(live.record, vm);
        live.vm = null;
        live.envd = null;
        live.record.status = "failed";
        live.record.error = why;
        live.record.slotIndex = null;
        live.record.disk = null;
        live.record.vm = null;
      });
    });
  }

  async destroy(id: string): Promise<void> {
    const live = this.get(id);
    await this.withLock(id, async () => {
      live.stopping = true;
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
    for (const live of [...this.live.values()]) {
      const r = live.record;
      if (r.status !== "running" || r.timeoutSec <= 0) continue;
      if (now - r.lastActiveAtMs < r.timeoutSec * 1000) continue;
      this.log.info({ sandbox: r.id, timeoutSec: r.timeoutSec }, "TTL expired; destroying");
      try {
        await this.destroy(r.id);
        this.reaped.set(r.id, `idle longer than its timeout (${r.timeoutSec} s)`);
      } catch (err) {
        this.log.error({ sandbox: r.id, err: messageOf(err) }, "TTL destroy failed");
      }
    }
  }

  /** Agent shutdown: stops the reaper, leaves VMs running for the next agent to adopt. */
  async close(): Promise<void> {
    clearInterval(this.reaper);
    await Promise.all([...this.locks.values()]);
  }

  /** Destroys every sandbox (tests, `wrenn up` teardown). */
  async destroyAll(): Promise<void> {
    await Promise.all([...this.live.keys()].map((id) => this.destroy(id).catch(() => undefined)));
  }
}

export function newAccessToken(): string {
  return randomBytes(16).toString("hex");
}
