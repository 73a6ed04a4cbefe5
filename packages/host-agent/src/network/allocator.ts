import { WrennError } from "@wrenn/shared/errors.ts";

/**
 * Hands out the smallest free slot index. Taking and freeing are synchronous,
 * so concurrent `acquire()` calls in one process never get the same index;
 * indexes held by other processes are found by the setup itself (the kernel
 * refuses a second namespace or route of the same name) and skipped.
 */
export class SlotAllocator {
  readonly #first: number;
  readonly #last: number;
  readonly #taken = new Set<number>();

  constructor(first: number, last: number) {
    if (!(Number.isInteger(first) && Number.isInteger(last) && first <= last)) {
      throw new WrennError("invalid_argument", `bad slot range ${first}..${last}`);
    }
    this.#first = first;
    this.#last = last;
  }

  /** Takes the smallest free index not in `skip`. */
  take(skip: ReadonlySet<number> = new Set()): number {
    for (let i = this.#first; i <= this.#last; i++) {
      if (!this.#taken.has(i) && !skip.has(i)) {
        this.#taken.add(i);
        return i;
      }
    }
    throw new WrennError(
      "resource_exhausted",
      `all ${this.#last - this.#first + 1} network slots are in use${skip.size ? ` (${skip.size} held by other processes)` : ""}; destroy or pause a sandbox first`,
    );
  }

  /** Marks an index as taken (re-adoption); true if it was free. */
  mark(index: number): boolean {
    if (this.#taken.has(index)) return false;
    this.#taken.add(index);
    return true;
  }

  free(index: number): void {
    this.#taken.delete(index);
  }

  has(index: number): boolean {
    return this.#taken.has(index);
  }

  /** How many indexes `take(skip)` could still hand out. */
  available(skip: ReadonlySet<number> = new Set()): number {
    let skipped = 0;
    for (const i of skip) if (this.inRange(i) && !this.#taken.has(i)) skipped++;
    return this.#last - this.#first + 1 - this.#taken.size - skipped;
  }

  inRange(index: number): boolean {
    return index >= this.#first && index <= this.#last;
  }

  get taken(): number[] {
    return [...this.#taken].sort((a, b) => a - b);
  }
}
