import { WrennError } from "@wrenn/shared/errors.ts";
import type { ManagedProcess } from "./managed.ts";

export type Selector = { pid: number } | { tag: string };

/** How long an ended process stays reachable by Connect, to learn how it ended. */
const KEEP_ENDED_MS = 5 * 60_000;
const KEEP_ENDED_MAX = 1000;

function describe(selector: Selector): string {
  return "pid" in selector
    ? `process with pid ${selector.pid}`
    : `process with tag '${selector.tag}'`;
}

/** The processes envd started: running ones, and recently ended ones for re-attaching. */
export class ProcessTable {
  readonly #running = new Map<number, ManagedProcess>();
  readonly #ended = new Map<number, ManagedProcess>();
  readonly #reservedTags = new Set<string>();

  /** Claims a tag before the spawn, so two starts cannot both take it. */
  reserveTag(tag: string | undefined): () => void {
    if (tag === undefined) return () => {};
    const taken = [...this.#running.values()].some((p) => p.spec.tag === tag);
    if (taken || this.#reservedTags.has(tag)) {
      throw new WrennError("already_exists", `a running process already has the tag '${tag}'`);
    }
    this.#reservedTags.add(tag);
    return () => this.#reservedTags.delete(tag);
  }

  add(proc: ManagedProcess): void {
    this.#ended.delete(proc.pid);
    this.#running.set(proc.pid, proc);
    proc.onEnd(() => {
      if (this.#running.get(proc.pid) === proc) this.#running.delete(proc.pid);
      this.#ended.set(proc.pid, proc);
      this.#prune();
    });
  }

  running(): ManagedProcess[] {
    return [...this.#running.values()];
  }

  /** A running process, else a recently ended one (the newest with that tag). */
  find(selector: Selector): ManagedProcess {
    this.#prune();
    const match = (p: ManagedProcess) =>
      "pid" in selector ? p.pid === selector.pid : p.spec.tag === selector.tag;
    const running = [...this.#running.values()].find(match);
    if (running !== undefined) return running;
    const ended = [...this.#ended.values()].filter(match).at(-1);
    if (ended !== undefined) return ended;
    throw new WrennError("not_found", `no ${describe(selector)} (it may have ended long ago)`);
  }

  findRunning(selector: Selector): ManagedProcess {
    const proc = this.find(selector);
    if (!proc.running) {
      throw new WrennError(
        "not_found",
        `${describe(selector)} has already exited (${proc.exit?.status ?? "ended"})`,
      );
    }
    return proc;
  }

  #prune(): void {
    const cutoff = Date.now() - KEEP_ENDED_MS;
    for (const [pid, proc] of this.#ended) {
      if (proc.endedAt < cutoff || this.#ended.size > KEEP_ENDED_MAX) this.#ended.delete(pid);
      else break;
    }
  }
}
