import { readFileSync, statfsSync } from "node:fs";
import { availableParallelism } from "node:os";

/** GET /metrics as E2B's envd answers it (snake_case; ts in Unix seconds, sizes in bytes). */
export interface Metrics {
  ts: number;
  cpu_count: number;
  cpu_used_pct: number;
  mem_total: number;
  mem_used: number;
  disk_used: number;
  disk_total: number;
}

/** Jiffies since boot summed over every CPU: busy and total. */
export interface CpuTimes {
  busy: number;
  total: number;
}

/**
 * The aggregate `cpu` line of /proc/stat. Idle is idle + iowait (a CPU
 * waiting on I/O is free to run something else); guest time is already
 * counted in user and nice, so it is left out of the total.
 */
export function parseProcStat(text: string): CpuTimes {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (line === undefined) throw new Error("/proc/stat has no aggregate cpu line");
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map((v) => Number(v) || 0);
  const idleAll = (idle ?? 0) + (iowait ?? 0);
  const busy = [user, nice, system, irq, softirq, steal].reduce<number>((a, v) => a + (v ?? 0), 0);
  return { busy, total: busy + idleAll };
}

/** Percent busy between two readings, rounded to 0.01; 0 when no time passed. */
export function cpuPercent(prev: CpuTimes, now: CpuTimes): number {
  const total = now.total - prev.total;
  if (total <= 0) return 0;
  const pct = ((now.busy - prev.busy) / total) * 100;
  return Math.round(Math.min(100, Math.max(0, pct)) * 100) / 100;
}

/** MemTotal and MemTotal − MemAvailable from /proc/meminfo, in bytes. */
export function parseMeminfo(text: string): { total: number; used: number } {
  const kib = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kib("MemTotal");
  if (total === undefined) throw new Error("/proc/meminfo has no MemTotal");
  // Kernels before 3.14 have no MemAvailable: free + buffers + cache is its old estimate.
  const available =
    kib("MemAvailable") ?? (kib("MemFree") ?? 0) + (kib("Buffers") ?? 0) + (kib("Cached") ?? 0);
  return { total, used: Math.max(0, total - available) };
}

/**
 * Samples the guest. The CPU figure is the share of busy time since the
 * previous call (or since boot on the first), so the host agent's sampling
 * interval is what it averages over.
 */
export class MetricsSampler {
  private last: CpuTimes | null = null;
  private readonly root: string;

  constructor(root = "/") {
    this.root = root;
  }

  /**
   * Synchronous on purpose: the host agent asks every few seconds for the
   * life of the sandbox, and three reads through libuv's thread pool are
   * three thread hand-offs each time, which a one-vCPU TCG guest pays for in
   * idle CPU. Reading /proc and statfs answer from kernel memory at once.
   */
  sample(): Metrics {
    const stat = readFileSync("/proc/stat", "utf8");
    const meminfo = readFileSync("/proc/meminfo", "utf8");
    const fs = statfsSync(this.root);
    const cpu = parseProcStat(stat);
    const pct = cpuPercent(this.last ?? { busy: 0, total: 0 }, cpu);
    this.last = cpu;
    const mem = parseMeminfo(meminfo);
    return {
      ts: Math.floor(Date.now() / 1000),
      cpu_count: availableParallelism(),
      cpu_used_pct: pct,
      mem_total: mem.total,
      mem_used: mem.used,
      // As df counts: blocks in use, and the size the filesystem reports.
      disk_used: (fs.blocks - fs.bfree) * fs.bsize,
      disk_total: fs.blocks * fs.bsize,
    };
  }
}
