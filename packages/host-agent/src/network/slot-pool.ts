import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

export interface SlotPoolOptions {
  /** Slots kept built ahead of requests; 0 keeps none. */
  size: number;
  /**
   * Builds one slot and returns its index, or null when none may be spared
   * (the range is nearly full: requests win over the pool). A failure must
   * leave nothing behind.
   */
  build: () => Promise<number | null>;
  /** Tears a pooled slot down and frees its index. */
  destroy: (index: number) => Promise<void>;
  log: Logger;
}

/**
 * Network slots built before anyone asks, so a create or resume takes one
 * at no cost. Every pooled slot is fresh: nobody has had it, and a slot
 * given back is torn down, never pooled again (no conntrack entry, rule or
 * ARP entry crosses from one sandbox to the next). Refill builds one slot
 * at a time in the background; a failed build ends that round (logged) and
 * the next `refill()` tries again, so a host that cannot build slots does
 * not spin.
 */
export class SlotPool {
  readonly size: number;
  readonly #build: () => Promise<number | null>;
  readonly #destroy: (index: number) => Promise<void>;
  readonly #log: Logger;
  readonly #ready: number[] = [];
  #refilling: Promise<void> | null = null;
  #paused = 0;
  #closed = false;

  constructor(options: SlotPoolOptions) {
    if (!Number.isInteger(options.size) || options.size < 0) {
      throw new RangeError(`network pool size must be a whole number ≥ 0, got ${options.size}`);
    }
    this.size = options.size;
    this.#build = options.build;
    this.#destroy = options.destroy;
    this.#log = options.log;
  }

  /** Indexes of the slots ready to hand out. */
  get ready(): number[] {
    return [...this.#ready].sort((a, b) => a - b);
  }

  /** True while a background build runs. */
  get building(): boolean {
    return this.#refilling !== null;
  }

  /** A ready slot's index, now its taker's; undefined when the pool is empty. Synchronous: two takers never get one slot. */
  take(): number | undefined {
    return this.#ready.shift();
  }

  has(index: number): boolean {
    return this.#ready.includes(index);
  }

  /** Takes a given index out of the pool (it has become someone's); true if it was pooled. */
  remove(index: number): boolean {
    const at = this.#ready.indexOf(index);
    if (at < 0) return false;
    this.#ready.splice(at, 1);
    return true;
  }

  /**
   * Starts building up to `size` in the background, `afterMs` from now,
   * unless that already runs (or waits), is paused or closed.
   */
  refill(afterMs = 0): void {
    if (this.#refilling || this.#paused > 0 || this.#closed) return;
    if (this.#ready.length >= this.size) return;
    this.#refilling = this.#fill(afterMs).finally(() => {
      this.#refilling = null;
    });
  }

  /** Waits for the background build in progress, if any. */
  async settled(): Promise<void> {
    await this.#refilling;
  }

  /**
   * Runs `fn` with no build in progress and none starting (`cleanupStale`
   * lists and deletes slots; a half-built one would look stale), then
   * refills.
   */
  async paused<T>(fn: () => Promise<T>): Promise<T> {
    this.#paused++;
    try {
      await this.#refilling;
      return await fn();
    } finally {
      this.#paused--;
      this.refill();
    }
  }

  /** Stops refilling for good and tears down every pooled slot (agent shutdown). */
  async drain(): Promise<void> {
    this.#closed = true;
    await this.#refilling;
    const failures: unknown[] = [];
    for (let index = this.take(); index !== undefined; index = this.take()) {
      try {
        await this.#destroy(index);
      } catch (err) {
        // Left for the next agent's cleanupStale: a pooled slot is in no record's keep.
        failures.push(err);
        this.#log.error({ slot: index, err: messageOf(err) }, "could not tear down a pooled slot");
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, "draining the network pool failed");
  }

  async #fill(afterMs: number): Promise<void> {
    // Spawning is synchronous work: let whoever just took a slot go on first.
    await new Promise((resolve) =>
      afterMs > 0 ? setTimeout(resolve, afterMs) : setImmediate(resolve),
    );
    while (!this.#closed && this.#paused === 0 && this.#ready.length < this.size) {
      let index: number | null;
      try {
        index = await this.#build();
      } catch (err) {
        this.#log.warn(
          { err: messageOf(err), ready: this.#ready.length, size: this.size },
          "network pool refill failed; creates build their slot on request until the next refill",
        );
        return;
      }
      if (index === null) return;
      // Even when closed or paused meanwhile: drain and cleanupStale see it here.
      this.#ready.push(index);
    }
  }
}
