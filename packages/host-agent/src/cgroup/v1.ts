/**
 * cgroup v1 (and hybrid hosts, whose controllers are v1): one hierarchy per
 * controller, so a group is three directories — cpu (cpu.shares), memory
 * (memory.limit_in_bytes) and pids (pids.max) — and a process joins each.
 */
import { join } from "node:path";
import type { CgroupDriver, CgroupLimits } from "./cgroup.ts";
import {
  CGROUP_PARENT,
  checkName,
  children,
  ensureDir,
  put,
  removeDir,
  removeIfStale,
} from "./common.ts";

const CONTROLLERS = ["cpu", "memory", "pids"] as const;

export class CgroupV1 implements CgroupDriver {
  readonly version = "v1" as const;
  readonly #root: string;

  constructor(root: string) {
    this.#root = root;
  }

  dirs(name: string): string[] {
    return CONTROLLERS.map((c) => join(this.#root, c, CGROUP_PARENT, checkName(name)));
  }

  async create(name: string, limits: CgroupLimits): Promise<string[]> {
    const [cpu, memory, pids] = this.dirs(name) as [string, string, string];
    await Promise.all([cpu, memory, pids].map(ensureDir));
    await put(join(cpu, "cpu.shares"), sharesOf(limits.cpuWeight));
    await put(join(memory, "memory.limit_in_bytes"), limits.memoryMaxBytes);
    await put(join(pids, "pids.max"), limits.pidsMax);
    return [cpu, memory, pids].map((d) => join(d, "cgroup.procs"));
  }

  async setCpuWeight(name: string, weight: number): Promise<void> {
    const [cpu] = this.dirs(name) as [string];
    await put(join(cpu, "cpu.shares"), sharesOf(weight));
  }

  async remove(name: string): Promise<void> {
    await Promise.all(this.dirs(name).map(removeDir));
  }

  async sweep(): Promise<string[]> {
    const removed = new Set<string>();
    for (const c of CONTROLLERS) {
      const parent = join(this.#root, c, CGROUP_PARENT);
      for (const name of await children(parent)) {
        if (await removeIfStale(join(parent, name))) removed.add(name);
      }
    }
    return [...removed];
  }
}

/** v1's default share is 1024 for v2's weight of 100. */
function sharesOf(weight: number): number {
  return Math.max(2, Math.round((weight * 1024) / 100));
}
