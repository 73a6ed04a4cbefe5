import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdClient } from "../envd/client.ts";
import type { NetworkSlot } from "../network/network.ts";
import type { VmHandle } from "../vmm/vmm.ts";
import type { SandboxRecord } from "./records.ts";

/** A sandbox this agent holds, with the live handles behind its record. */
export interface Live {
  record: SandboxRecord;
  vm: VmHandle | null;
  slot: NetworkSlot | null;
  envd: EnvdClient | null;
  /** Set while the agent itself is stopping the VM, so its exit is not a failure. */
  stopping: boolean;
  /** Aborted when the VM exits: in-flight envd calls fail at once instead of hanging. */
  gone: AbortController;
  /**
   * The teardown of the network slot its last pause gave up, which runs
   * after the pause has answered (pause.ts); destroy and the agent's close
   * wait for it. Never rejects.
   */
  releasing: Promise<void> | null;
}

export function newLive(record: SandboxRecord): Live {
  return {
    record,
    vm: null,
    slot: null,
    envd: null,
    stopping: false,
    gone: new AbortController(),
    releasing: null,
  };
}

/**
 * The sandboxes this agent holds, each with a lock that serialises the
 * operations on it (different sandboxes run concurrently), and what the
 * agent did to them on its own (reaped, auto-paused) for the next report.
 */
export class Registry {
  readonly #live = new Map<string, Live>();
  readonly #locks = new Map<string, Promise<unknown>>();
  /** Sandboxes removed by the agent itself (TTL, VM death, restart), with why. */
  readonly reaped = new Map<string, string>();
  readonly autoPaused = new Set<string>();

  has(id: string): boolean {
    return this.#live.has(id);
  }

  set(live: Live): void {
    this.#live.set(live.record.id, live);
  }

  delete(id: string): void {
    this.#live.delete(id);
  }

  find(id: string): Live | undefined {
    return this.#live.get(id);
  }

  get(id: string): Live {
    const live = this.#live.get(id);
    if (live === undefined) {
      throw new WrennError("not_found", `sandbox '${id}' does not exist on this host`);
    }
    return live;
  }

  all(): Live[] {
    return [...this.#live.values()];
  }

  locked(id: string): boolean {
    return this.#locks.has(id);
  }

  async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#locks.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(id) === tail) this.#locks.delete(id);
    }
  }

  /** Resolves once every operation under way has finished. */
  async idle(): Promise<void> {
    await Promise.all([...this.#locks.values()]);
  }

  /** The envd of a running sandbox; marks it active (the TTL counts idle time). */
  running(id: string): { live: Live; envd: EnvdClient } {
    const live = this.get(id);
    if (live.record.status !== "running" || live.envd === null) {
      const detail = live.record.error ? `: ${live.record.error}` : "";
      throw new WrennError(
        "failed_precondition",
        `sandbox '${id}' is ${live.record.status}, not running${detail}`,
      );
    }
    if (live.vm?.waitsForSpace) {
      // Its guest would not answer until then: say why now, not at a timeout.
      throw new WrennError(
        "resource_exhausted",
        `sandbox '${id}' is stopped until the host's data disk has space: its disk could not grow; free space on it and the sandbox runs on where it was`,
      );
    }
    live.record.lastActiveAtMs = Date.now();
    return { live, envd: live.envd };
  }
}
