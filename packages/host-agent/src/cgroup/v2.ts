/**
 * cgroup v2: one hierarchy; the parent group delegates the cpu, memory and
 * pids controllers to its children (cgroup.subtree_control), and each group
 * sets cpu.weight, memory.max and pids.max.
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

const CONTROLLERS = "+cpu +memory +pids";

export class CgroupV2 implements CgroupDriver {
  readonly version = "v2" as const;
  readonly #root: string;
  #parentReady: Promise<void> | null = null;

  constructor(root: string) {
    this.#root = root;
  }

  get #parent(): string {
    return join(this.#root, CGROUP_PARENT);
  }

  dirs(name: string): string[] {
    return [join(this.#parent, checkName(name))];
  }

  /** Controllers flow down one level at a time: the root gives them to the parent, it to its children. */
  #prepare(): Promise<void> {
    this.#parentReady ??= (async () => {
      await put(join(this.#root, "cgroup.subtree_control"), CONTROLLERS);
      await ensureDir(this.#parent);
      await put(join(this.#parent, "cgroup.subtree_control"), CONTROLLERS);
    })().catch((err: unknown) => {
      this.#parentReady = null;
      throw err;
    });
    return this.#parentReady;
  }

  async create(name: string, limits: CgroupLimits): Promise<string[]> {
    await this.#prepare();
    const [dir] = this.dirs(name) as [string];
    await ensureDir(dir);
    await put(join(dir, "cpu.weight"), limits.cpuWeight);
    await put(join(dir, "memory.max"), limits.memoryMaxBytes);
    await put(join(dir, "pids.max"), limits.pidsMax);
    return [join(dir, "cgroup.procs")];
  }

  async setCpuWeight(name: string, weight: number): Promise<void> {
    const [dir] = this.dirs(name) as [string];
    await put(join(dir, "cpu.weight"), weight);
  }

  async remove(name: string): Promise<void> {
    await Promise.all(this.dirs(name).map(removeDir));
  }

  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await children(this.#parent)) {
      if (await removeIfStale(join(this.#parent, name))) removed.push(name);
    }
    return removed;
  }
}
