import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import type { EnvdClient } from "../envd/client.ts";
import type { SandboxRecord } from "./records.ts";

/** One resource sample of a sandbox's guest. */
export interface MetricSample {
  /** The host's clock when the guest answered (a resumed guest's clock may lag until /init). */
  timestampMs: number;
  cpuCount: number;
  cpuUsedPct: number;
  memUsedBytes: number;
  memTotalBytes: number;
  diskUsedBytes: number;
  diskTotalBytes: number;
}

/** A sandbox the sampler may ask now: running, no lifecycle operation under way. */
export interface SampleTarget {
  record: SandboxRecord;
  envd: EnvdClient;
}

export interface MetricsSource {
  /** Running sandboxes that no create, pause, resume or destroy holds right now. */
  sampleTargets(): SampleTarget[];
  /** Every sandbox this agent holds, whatever its state. */
  list(): SandboxRecord[];
}

export interface MetricsSamplerOptions {
  source: MetricsSource;
  log: Logger;
  /** How often a watched sandbox (its metrics asked for lately) is sampled. */
  intervalMs?: number;
  /** How often one nobody has asked about for `watchMs` is sampled (0: every round). */
  idleIntervalMs?: number;
  /** How long after an ask a sandbox counts as watched. */
  watchMs?: number;
  /** Samples kept per sandbox (default 120: ten minutes at the default interval). */
  keep?: number;
}

interface Series {
  /** The record the samples belong to: an id destroyed and created again starts afresh. */
  record: SandboxRecord;
  samples: MetricSample[];
}

export const DEFAULT_METRICS_INTERVAL_MS = 5000;
/**
 * Every sample wakes the guest (an HTTP request into Node under TCG costs
 * ≈ 75 ms of a core): at 5 s that was 1.5 % of a core per idle sandbox, more
 * than the idle guest itself. Nobody watching, one a minute keeps a chart's
 * history at 0.1 %.
 */
export const DEFAULT_METRICS_IDLE_INTERVAL_MS = 60_000;
/** The dashboard polls while its chart is open; E2B's SDK asks when its user does. */
export const DEFAULT_METRICS_WATCH_MS = 10 * 60_000;
const DEFAULT_KEEP = 120;

/**
 * Asks running sandboxes' envd for a resource sample and keeps the last
 * `keep` per sandbox in memory: every `intervalMs` while someone asks for a
 * sandbox's metrics (and at once when an ask finds its latest sample older
 * than that), every `idleIntervalMs` otherwise, and once when it has run for
 * `intervalMs`.
 * It never takes a sandbox's lifecycle lock: the manager leaves out
 * sandboxes being paused, resumed or destroyed, and a sample cut short by
 * one of those is dropped (logged at debug: a guest under load or a pause
 * racing a sample is not an error).
 */
export class MetricsSampler {
  private readonly source: MetricsSource;
  private readonly log: Logger;
  readonly intervalMs: number;
  readonly idleIntervalMs: number;
  readonly watchMs: number;
  private readonly keep: number;
  private readonly series = new Map<string, Series>();
  /** Sandboxes with a sample in flight: a slow guest is not asked twice at once. */
  private readonly inFlight = new Set<string>();
  /** When each sandbox's metrics were last asked for, and last sampled (tried). */
  private readonly askedAt = new WeakMap<SandboxRecord, number>();
  private readonly triedAt = new WeakMap<SandboxRecord, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: MetricsSamplerOptions) {
    this.source = options.source;
    this.log = options.log.child({ component: "metrics" });
    this.intervalMs = options.intervalMs ?? DEFAULT_METRICS_INTERVAL_MS;
    this.idleIntervalMs = options.idleIntervalMs ?? DEFAULT_METRICS_IDLE_INTERVAL_MS;
    this.watchMs = options.watchMs ?? DEFAULT_METRICS_WATCH_MS;
    this.keep = options.keep ?? DEFAULT_KEEP;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * One round: drops the series of sandboxes that are gone, samples the
   * running ones that are due (watched, or idle past `idleIntervalMs`).
   */
  async tick(): Promise<void> {
    const alive = new Set(this.source.list());
    for (const [id, s] of this.series) if (!alive.has(s.record)) this.series.delete(id);
    const now = Date.now();
    await Promise.all(
      this.source.sampleTargets().map((t) => (this.due(t.record, now) ? this.take(t) : null)),
    );
  }

  private watched(record: SandboxRecord, now: number): boolean {
    const asked = this.askedAt.get(record);
    return asked !== undefined && now - asked < this.watchMs;
  }

  private due(record: SandboxRecord, now: number): boolean {
    if (this.inFlight.has(record.id)) return false;
    if (this.watched(record, now)) return true;
    const tried = this.triedAt.get(record);
    // A new sandbox's first seconds are its user's: sampled at its first
    // round, every guest of a burst of creates answered a sample inside the
    // burst (≈ 12 ms of a TCG core apiece, 2026-12-05), and the last creates waited.
    if (tried === undefined) return now - record.createdAtMs >= this.intervalMs;
    return now - tried >= this.idleIntervalMs;
  }

  private async take({ record, envd }: SampleTarget): Promise<void> {
    const id = record.id;
    this.inFlight.add(id);
    this.triedAt.set(record, Date.now());
    try {
      // A guest that cannot answer within an interval is skipped this round.
      const m = await envd.metrics(Math.max(1000, this.intervalMs));
      let s = this.series.get(id);
      if (s === undefined || s.record !== record) {
        s = { record, samples: [] };
        this.series.set(id, s);
      }
      s.samples.push({
        timestampMs: Date.now(),
        cpuCount: m.cpu_count,
        cpuUsedPct: m.cpu_used_pct,
        memUsedBytes: m.mem_used,
        memTotalBytes: m.mem_total,
        diskUsedBytes: m.disk_used,
        diskTotalBytes: m.disk_total,
      });
      if (s.samples.length > this.keep) s.samples.splice(0, s.samples.length - this.keep);
    } catch (err) {
      this.log.debug({ sandbox: id, err: messageOf(err) }, "metrics sample failed");
    } finally {
      this.inFlight.delete(id);
    }
  }

  /**
   * The kept samples of `record`'s sandbox taken at or after `sinceMs`, oldest
   * first. Asking makes the sandbox watched; when its latest sample is older
   * than the interval, one is taken now for the next ask.
   */
  samples(record: SandboxRecord, sinceMs = 0): MetricSample[] {
    const now = Date.now();
    this.askedAt.set(record, now);
    const tried = this.triedAt.get(record);
    if (tried !== undefined && now - tried >= this.intervalMs && !this.inFlight.has(record.id)) {
      const target = this.source.sampleTargets().find((t) => t.record === record);
      if (target) void this.take(target);
    }
    const s = this.series.get(record.id);
    if (s === undefined || s.record !== record) return [];
    return s.samples.filter((m) => m.timestampMs >= sinceMs);
  }
}
