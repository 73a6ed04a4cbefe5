/**
 * Each sandbox's VMM in a cgroup of its own, so one guest cannot take the
 * host's CPU, memory or process table: a CPU weight by its vCPUs, a memory
 * ceiling of its RAM plus the VMM's overhead, a pids limit. The group is
 * made before the VMM starts, the VMM moves into it before its guest runs,
 * the group is removed when the VMM has exited, and groups a crashed agent
 * left empty are swept at start.
 * Hosts have cgroup v1 (or hybrid: v1 controllers) or v2; one driver each.
 */
import { access, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CgroupV1 } from "./v1.ts";
import { CgroupV2 } from "./v2.ts";

export interface CgroupLimits {
  /** Relative CPU share, cgroup v2's scale (1–10000, 100 = one default process). */
  cpuWeight: number;
  memoryMaxBytes: number;
  pidsMax: number;
}

export interface CgroupDriver {
  readonly version: "v1" | "v2";
  /** Creates (or reuses) the group and sets its limits; the `cgroup.procs` files a process joins. */
  create(name: string, limits: CgroupLimits): Promise<string[]>;
  /** Sets the group's relative CPU share (cgroup v2's scale, as `CgroupLimits.cpuWeight`). */
  setCpuWeight(name: string, weight: number): Promise<void>;
  /** Removes the group once its processes are gone (waits briefly for an exiting one). */
  remove(name: string): Promise<void>;
  /** Removes every empty group under the agent's parent older than a minute (what a crash left); their names. */
  sweep(): Promise<string[]>;
  /** The group's directories, one per hierarchy (v1: cpu, memory, pids). */
  dirs(name: string): string[];
}

export { CGROUP_PARENT } from "./common.ts";

/**
 * Moves a process, all its threads, into a group (`create`'s files). The
 * kernel waits out an RCU grace period for each move (11–23 ms here), so a
 * VMM moves while it starts up, paused, rather than before it starts.
 */
export async function moveInto(procs: readonly string[], pid: number): Promise<void> {
  await Promise.all(procs.map((file) => writeFile(file, String(pid))));
}

async function present(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * The host's cgroup driver: v2 when /sys/fs/cgroup is the unified hierarchy,
 * v1 when the cpu, memory and pids controllers are mounted there (v1 or
 * hybrid), else null (no cgroups: the VMM runs without, and the agent says so).
 */
export async function detectCgroups(root = "/sys/fs/cgroup"): Promise<CgroupDriver | null> {
  if (await present(join(root, "cgroup.controllers"))) return new CgroupV2(root);
  // The root group has no pids.max: its cgroup.procs shows the controller is mounted.
  const v1 = ["cpu/cpu.shares", "memory/memory.limit_in_bytes", "pids/cgroup.procs"];
  if ((await Promise.all(v1.map((f) => present(join(root, f))))).every(Boolean)) {
    return new CgroupV1(root);
  }
  return null;
}

/** A VM's CPU share: a default process's per vCPU. */
export function vmCpuWeight(vcpus: number): number {
  return Math.min(10_000, Math.max(1, 100 * vcpus));
}

/**
 * The CPU share of a VM nobody is using yet (a warm pool entry): a quarter
 * of one vCPU's. On a host whose cores running sandboxes keep busy, the
 * entry gets a small slice and they keep most of theirs; with the least
 * share (1) an entry's warm-up never finished there (120 s and more).
 */
export const BACKGROUND_CPU_WEIGHT = 25;

/** What a VM of `memoryMb` guest RAM and `vcpus` may use, its VMM's own memory included. */
export function vmLimits(opts: {
  vcpus: number;
  memoryMb: number;
  overheadMb: number;
}): CgroupLimits {
  return {
    cpuWeight: vmCpuWeight(opts.vcpus),
    memoryMaxBytes: (opts.memoryMb + opts.overheadMb) * 1024 * 1024,
    // vCPU threads, the block layer's worker pool (up to 64), a migration's sh and cat.
    pidsMax: 128 + 8 * opts.vcpus,
  };
}
