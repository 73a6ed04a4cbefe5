/**
 * The sandboxes of this host, behind one front door: each public method is
 * one lifecycle step, implemented in the module named for it (create,
 * pause, resume, snapshot, destroy, exec, recovery, reaper). Every step runs
 * under its sandbox's lock, in an order that never leaks a host resource,
 * and keeps the on-disk records a restarted agent needs.
 */
import { randomBytes } from "node:crypto";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdClient, ExecEvent } from "../envd/client.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import type { EgressRules } from "../network/egress.ts";
import type { TemplateImage } from "../image/store.ts";
import type { VmmDriver } from "../vmm/vmm.ts";
import { BootSnapshots } from "./boot-snapshots.ts";
import { buildBootSnapshot } from "./boot-snapshot-builder.ts";
import { create } from "./create.ts";
import { destroy } from "./destroy.ts";
import { exec, execStream } from "./exec.ts";
import { logs, type LogsOptions, type LogsResult } from "./logs.ts";
import { SandboxHost } from "./host.ts";
import type { CreateParams, ExecParams, ExecResult, ManagerOptions } from "./options.ts";
import { pause } from "./pause.ts";
import { isPooled, WarmPool } from "./pool.ts";
import { makePoolEntry } from "./pool-entry.ts";
import { Reaper } from "./reaper.ts";
import type { SandboxRecord } from "./records.ts";
import { recover } from "./recovery.ts";
import type { Live } from "./registry.ts";
import { resume } from "./resume.ts";
import { createSnapshot, deleteSnapshot } from "./snapshot.ts";
import type { SnapshotMeta, TemplateStore } from "./templates.ts";

export type {
  CreateParams,
  ExecParams,
  ExecResult,
  ImageSource,
  ManagerOptions,
} from "./options.ts";
export type { LogsOptions, LogsResult } from "./logs.ts";

export class SandboxManager {
  readonly #host: SandboxHost;
  readonly #reaper: Reaper;

  constructor(opts: ManagerOptions) {
    const host = new SandboxHost(opts);
    if (opts.bootSnapshotDir !== null) {
      const snapshots: BootSnapshots = new BootSnapshots(
        opts.bootSnapshotDir,
        { build: (shape, name, source) => buildBootSnapshot(host, snapshots, shape, name, source) },
        opts.log,
      );
      host.bootSnapshots = snapshots;
    }
    // Off unless some template may keep an entry (a size or a template's own above 0).
    const pool =
      opts.pool &&
      new WarmPool(
        opts.pool,
        {
          make: (id, recipe) => makePoolEntry(host, id, recipe),
          destroy: (id) => destroy(host, id),
        },
        opts.log,
      );
    if (pool?.enabled) host.pool = pool;
    this.#host = host;
    this.#reaper = new Reaper(host);
  }

  /** Ready warm sandboxes per source (template:<name> or boot:<boot snapshot>). */
  poolCounts(): Record<string, number> {
    return this.#host.pool?.counts() ?? {};
  }

  /** Ready warm sandboxes of every source. */
  warmSandboxes(): number {
    return Object.values(this.poolCounts()).reduce((a, b) => a + b, 0);
  }

  /** The VMM driver sandboxes run under (a benchmark turns its options off for a baseline). */
  get vmm(): VmmDriver {
    return this.#host.opts.vmm;
  }

  /** The standby VMMs kept for resumes (a benchmark's baseline sets 0: its pauses start none). */
  get standbyVmms(): number {
    return this.#host.standbys.size;
  }

  set standbyVmms(n: number) {
    this.#host.standbys.size = n;
  }

  /** How guests run here: under KVM, or emulated by TCG (no usable KVM). */
  get accel(): "kvm" | "tcg" {
    return this.#host.opts.vmm.accel;
  }

  get storageName(): string {
    return this.#host.opts.storage.name;
  }

  get templates(): TemplateStore {
    return this.#host.templates;
  }

  /** Agent start: re-adopts what survived the last agent, frees what did not. */
  start(): Promise<void> {
    return recover(this.#host);
  }

  create(params: CreateParams): Promise<SandboxRecord> {
    return create(this.#host, params);
  }

  pause(id: string, reason: "user" | "ttl" = "user"): Promise<void> {
    return pause(this.#host, id, reason);
  }

  resume(id: string, timeoutSec?: number): Promise<SandboxRecord> {
    return resume(this.#host, id, timeoutSec);
  }

  createSnapshot(id: string, name: string, overwrite: boolean): Promise<SnapshotMeta> {
    return createSnapshot(this.#host, id, name, overwrite);
  }

  deleteSnapshot(name: string): Promise<void> {
    return deleteSnapshot(this.#host, name);
  }

  destroy(id: string): Promise<void> {
    return destroy(this.#host, id);
  }

  /** Destroys every sandbox, the warm pool's entries and the standby VMMs (tests, `wrenn up` teardown). */
  async destroyAll(): Promise<void> {
    await this.#host.pool?.drain();
    // Before the host's rules go (agent shutdown): a standby starting after
    // them would build its slot, and the host table, again.
    await this.#host.standbys.clear();
    await Promise.all(
      this.#host.registry.all().map((l) => this.destroy(l.record.id).catch(() => undefined)),
    );
    await this.#host.writeBack.stop();
  }

  /**
   * New egress rules: applied at once to a running sandbox, kept for the
   * next resume of a paused one (its names checked now). Either way the
   * record keeps them, so they survive agent restarts.
   */
  async updateNetwork(id: string, rules: EgressRules): Promise<void> {
    const { registry, opts, records, log } = this.#host;
    registry.get(id);
    await registry.withLock(id, async () => {
      const live = registry.get(id);
      const { record } = live;
      if (record.status === "running" && live.slot !== null) {
        await opts.network.setEgress(live.slot, rules);
      } else if (record.status === "paused") {
        await opts.network.checkEgress(rules);
      } else {
        throw new WrennError(
          "failed_precondition",
          `sandbox '${id}' is ${record.status}; egress rules change only on a running or paused sandbox`,
        );
      }
      record.network = rules;
      await records.save(record);
      log.info(
        { sandbox: id, allowOut: rules.allowOut.length, denyOut: rules.denyOut.length },
        "egress rules updated",
      );
    });
  }

  execStream(id: string, params: ExecParams): AsyncGenerator<ExecEvent> {
    return execStream(this.#host, id, params);
  }

  exec(id: string, params: ExecParams): Promise<ExecResult> {
    return exec(this.#host, id, params);
  }

  /** The guest's serial console (kernel, init, envd) of the VM's current run, from `offset`. */
  logs(id: string, opts: LogsOptions = {}): Promise<LogsResult> {
    return logs(this.#host, id, opts);
  }

  async ping(id: string): Promise<void> {
    const { envd } = this.#host.registry.running(id);
    if (!(await envd.healthy(5000))) {
      throw new WrennError("unavailable", `sandbox '${id}' does not answer`);
    }
  }

  get(id: string): Live {
    return this.#host.registry.get(id);
  }

  /** The sandboxes of this host (the warm pool's entries are no one's yet). */
  list(): SandboxRecord[] {
    return this.#host.registry
      .all()
      .map((l) => l.record)
      .filter((r) => !isPooled(r.id));
  }

  /** Every VMM the agent runs, warm pool entries' too: what the host's measured use counts. */
  vmmPids(): number[] {
    return this.#host.registry.all().flatMap((l) => (l.record.vm ? [l.record.vm.pid] : []));
  }

  /**
   * The metrics sampler's targets: running sandboxes no lifecycle operation
   * holds (a frozen or stopping guest would only time the sample out). Not
   * a use of the sandbox: its idle time is left alone.
   */
  sampleTargets(): Array<{ record: SandboxRecord; envd: EnvdClient }> {
    const { registry } = this.#host;
    const out: Array<{ record: SandboxRecord; envd: EnvdClient }> = [];
    for (const live of registry.all()) {
      const { record, envd } = live;
      if (record.status !== "running" || envd === null || live.stopping) continue;
      if (registry.locked(record.id) || isPooled(record.id)) continue;
      // Stopped until its disk has space: a sample would only time out.
      if (live.vm?.waitsForSpace) continue;
      out.push({ record, envd });
    }
    return out;
  }

  baseTemplates(): Promise<TemplateImage[]> {
    return this.#host.opts.images.templates();
  }

  reapedIds(): string[] {
    return [...this.#host.registry.reaped.keys()];
  }

  autoPausedIds(): string[] {
    return [...this.#host.registry.autoPaused];
  }

  /** The envd of a running sandbox; marks it active. */
  envdOf(id: string): EnvdClient {
    return this.#host.registry.running(id).envd;
  }

  /**
   * Where the host reaches a running sandbox's guest (the traffic proxy), and
   * the signal that this run of its VM ended; marks it active.
   */
  guestAddress(id: string): { host: string; gone: AbortSignal } {
    const { live } = this.#host.registry.running(id);
    if (!live.slot) throw new WrennError("failed_precondition", `sandbox '${id}' has no network`);
    return { host: live.slot.hostAddress, gone: live.gone.signal };
  }

  async diskUsage(record: SandboxRecord): Promise<number> {
    return record.disk ? this.#host.opts.storage.usage(record.disk).catch(() => 0) : 0;
  }

  envdAddress(id: string): string {
    const live = this.get(id);
    return live.slot ? `${live.slot.hostAddress}:${ENVD_PORT}` : "";
  }

  /** Starts the TTL reaper: sandboxes idle past their timeout are paused. */
  startReaper(intervalMs: number): void {
    this.#reaper.start(intervalMs);
  }

  reap(now = Date.now()): Promise<void> {
    return this.#reaper.reap(now);
  }

  /**
   * Agent shutdown: stops the reaper, destroys the warm pool (no one's
   * sandboxes), leaves the rest running for the next agent to adopt.
   */
  async close(): Promise<void> {
    this.#reaper.stop();
    await this.#host.pool?.close();
    await this.#host.standbys.close();
    await this.#host.registry.idle();
    await Promise.all(this.#host.registry.all().map((l) => l.releasing));
    this.#host.closed = true;
    for (const live of this.#host.registry.all()) {
      live.vm?.release();
      live.envd?.close();
    }
  }
}

export function newAccessToken(): string {
  return randomBytes(16).toString("hex");
}
