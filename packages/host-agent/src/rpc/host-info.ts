/**
 * GetHostInfo: the host's capacity and what it really uses, so the control
 * plane admits sandboxes by measured use instead of by what they declare (an
 * idle guest uses a few percent of a core and a fraction of its RAM).
 */
import { cpus, totalmem } from "node:os";
import { readFileSync } from "node:fs";
import { readFile, readdir, statfs } from "node:fs/promises";
import { join } from "node:path";
import { CGROUP_PARENT } from "../cgroup/cgroup.ts";

const MIB = 1024 * 1024;

/** Jiffies since boot: all of them, and those the CPUs were busy (all but idle and iowait). */
interface CpuTimes {
  atMs: number;
  total: number;
  busy: number;
}

export interface HostUsage {
  cpuBusyCores: number;
  cpuIntervalMs: number;
  memoryUsedMb: number;
  memoryAvailableMb: number;
  vmmMemoryMb: number;
  vmmCount: number;
}

export function parseProcStat(text: string, atMs: number): CpuTimes {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) throw new Error("/proc/stat has no cpu line");
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { atMs, total, busy: total - (f[3] ?? 0) - (f[4] ?? 0) };
}

/** MemTotal and MemAvailable in KiB. */
export function parseMeminfo(text: string): { totalKb: number; availableKb: number } {
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text);
    if (!m?.[1]) throw new Error(`/proc/meminfo has no ${name}`);
    return Number(m[1]);
  };
  return { totalKb: field("MemTotal"), availableKb: field("MemAvailable") };
}

/** Proportional resident KiB of a process, and of that its file-backed part (the guest RAM file). */
export function parseSmapsRollup(text: string): { pssKb: number; pssFileKb: number } {
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return { pssKb: field("Pss"), pssFileKb: field("Pss_File") };
}

/** The processes in the sandboxes' cgroups (every agent's on this host: the memory is the host's). */
async function cgroupPids(root: string): Promise<number[]> {
  const pids: number[] = [];
  for (const parent of [join(root, CGROUP_PARENT), join(root, "memory", CGROUP_PARENT)]) {
    const groups = await readdir(parent, { withFileTypes: true }).catch(() => []);
    for (const g of groups) {
      if (!g.isDirectory()) continue;
      const procs = await readFile(join(parent, g.name, "cgroup.procs"), "utf8").catch(() => "");
      for (const p of procs.split("\n")) if (/^\d+$/.test(p)) pids.push(Number(p));
    }
  }
  return pids;
}

export interface HostUsageOptions {
  /** The VMM pids the agent knows (its records); cgroup members are added. */
  vmmPids: () => number[];
  proc?: string;
  cgroupRoot?: string;
  /** CPU busy is measured over at least this long: back-to-back asks reuse the last figure. */
  minIntervalMs?: number;
}

/**
 * Measures the host when asked. CPU busy covers the time since the previous
 * measurement (the first covers the time since the agent started), so the
 * figure a heartbeat carries is the load over the heartbeat interval.
 */
export class HostUsageMeter {
  readonly #o: Required<Omit<HostUsageOptions, "vmmPids">> & Pick<HostUsageOptions, "vmmPids">;
  #last: CpuTimes | null = null;
  #cpu = { cores: 0, intervalMs: 0 };

  constructor(options: HostUsageOptions) {
    this.#o = {
      proc: "/proc",
      cgroupRoot: "/sys/fs/cgroup",
      minIntervalMs: 1000,
      ...options,
    };
    // The first measurement's CPU figure counts from the agent's start.
    try {
      this.#last = parseProcStat(readFileSync(join(this.#o.proc, "stat"), "utf8"), Date.now());
    } catch {
      this.#last = null;
    }
  }

  async #cpuTimes(): Promise<CpuTimes> {
    return parseProcStat(await readFile(join(this.#o.proc, "stat"), "utf8"), Date.now());
  }

  async #cpuBusy(): Promise<{ cores: number; intervalMs: number }> {
    const now = await this.#cpuTimes();
    const last = this.#last;
    if (last && now.atMs - last.atMs < this.#o.minIntervalMs && this.#cpu.intervalMs > 0) {
      return this.#cpu;
    }
    if (!last || now.total <= last.total) {
      this.#last = now;
      return this.#cpu;
    }
    const ncpu = cpus().length;
    const share = (now.busy - last.busy) / (now.total - last.total);
    this.#cpu = {
      cores: Math.min(ncpu, Math.max(0, share * ncpu)),
      intervalMs: now.atMs - last.atMs,
    };
    this.#last = now;
    return this.#cpu;
  }

  async measure(): Promise<HostUsage> {
    const [cpu, meminfo, pids] = await Promise.all([
      this.#cpuBusy(),
      readFile(join(this.#o.proc, "meminfo"), "utf8").then(parseMeminfo),
      cgroupPids(this.#o.cgroupRoot),
    ]);
    let pssKb = 0;
    let pssFileKb = 0;
    let count = 0;
    for (const pid of new Set([...pids, ...this.#o.vmmPids()])) {
      // A VMM that exited meanwhile has nothing to count.
      const text = await readFile(join(this.#o.proc, String(pid), "smaps_rollup"), "utf8").catch(
        () => null,
      );
      if (text === null) continue;
      const r = parseSmapsRollup(text);
      pssKb += r.pssKb;
      pssFileKb += r.pssFileKb;
      count++;
    }
    const usedKb = meminfo.totalKb - meminfo.availableKb + pssFileKb;
    return {
      cpuBusyCores: cpu.cores,
      cpuIntervalMs: cpu.intervalMs,
      memoryUsedMb: Math.min(Math.floor(meminfo.totalKb / 1024), Math.ceil(usedKb / 1024)),
      memoryAvailableMb: Math.floor(meminfo.availableKb / 1024),
      vmmMemoryMb: Math.ceil(pssKb / 1024),
      vmmCount: count,
    };
  }
}

/** The GetHostInfo answer: capacity, and the use measured now. */
export async function hostInfo(deps: {
  hostId: string;
  dataDir: string;
  vmm: string;
  storage: string;
  version: string;
  runningSandboxes: number;
  warmSandboxes: number;
  meter: HostUsageMeter;
}) {
  const [fs, usage] = await Promise.all([statfs(deps.dataDir), deps.meter.measure()]);
  return {
    hostId: deps.hostId,
    vmm: deps.vmm,
    storage: deps.storage,
    totalVcpus: cpus().length,
    totalMemoryMb: BigInt(Math.floor(totalmem() / MIB)),
    freeDiskMb: BigInt(Math.floor((fs.bavail * fs.bsize) / MIB)),
    runningSandboxes: deps.runningSandboxes,
    warmSandboxes: deps.warmSandboxes,
    version: deps.version,
    usage: {
      cpuBusyCores: usage.cpuBusyCores,
      cpuIntervalMs: usage.cpuIntervalMs,
      memoryUsedMb: BigInt(usage.memoryUsedMb),
      memoryAvailableMb: BigInt(usage.memoryAvailableMb),
      vmmMemoryMb: BigInt(usage.vmmMemoryMb),
      vmmCount: usage.vmmCount,
    },
  };
}
