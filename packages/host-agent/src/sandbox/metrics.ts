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
  intervalMs?: number;
  /** Samples kept per sandbox (default 120: ten minutes at the default interval). */
  keep?: number;
}

interface Series {
  /** The record the samples belong to: an id destroyed and created again starts afresh. */
  record: SandboxRecord;
  samples: MetricSample[];
}

export const DEFAULT_METRICS_INTERVAL_MS = 5000;
const DEFAULT_KEEP = 120;

/**
 * Asks every running sandbox's envd for a resource sample on an interval and
 * keeps the last `keep` per sandbox in memory. It never takes a sandbox's
 * lifecycle lock: the manager leaves out sandboxes being paused, resumed or
 * destroyed, and a sample cut short by one of those is dropped (logged at
 * debug: a guest under load or a pause racing a sample is not an error).
 */
export class MetricsSampler {
  private readonly source: MetricsSource;
  private readonly log: Logger;
  readonly intervalMs: number;
  private readonly keep: number;
  private readonly series = new Map<string, Series>();
  /** Sandboxes with a sample in flight: a slow guest is not asked twice at once. */
  private readonly inFlight = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: MetricsSamplerOptions) {
    this.source = options.source;
    this.log = options.log.child({ component: "metrics" });
    this.intervalMs = options.intervalMs ?? DEFAULT_METRICS_INTERVAL_MS;
    this.keep = options.keep ?? DEFAULT_KEEP;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round: drops the series of sandboxes that are gone, samples the running ones. */
  async tick(): Promise<void> {
    const alive = new Set(this.source.list());
    for (const [id, s] of this.series) if (!alive.has(s.record)) this.series.delete(id);
    await Promise.all(
      this.source
        .sampleTargets()
        .map((t) => (this.inFlight.has(t.record.id) ? null : this.take(t))),
    );
  }

  private async take({ record, envd }: SampleTarget): Promise<void> {
    const id = record.id;
    this.inFlight.add(id);
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

  /** The kept samples of `record`'s sandbox taken at or after `sinceMs`, oldest first. */
  samples(record: SandboxRecord, sinceMs = 0): MetricSample[] {
    const s = this.series.get(record.id);
    if (s === undefined || s.record !== record) return [];
    return s.samples.filter((m) => m.timestampMs >= sinceMs);
  }
}
