/**
 * The warm pool: sandboxes restored ahead of demand from the templates in
 * use — envd answering, its exec path run once — that a create of the same
 * template claims (claim.ts) instead of restoring one on the request path.
 *
 * A source (a snapshot template, or a base template's boot snapshot of one
 * shape) is kept filled while creates ask for it: one entry, more while
 * creates come faster, at most its template's size (`templates`, else
 * `size`); none once it has not been asked for in `idleMs`. Refills run
 * one at a time in the background, after creates have paused, so a burst
 * of demand never becomes a burst of restores competing with running
 * sandboxes. Entries are hidden sandboxes (ids with POOL_PREFIX): they
 * count in the host's use like any other VM, and a restarted agent
 * destroys the ones it finds (recovery.ts).
 */
import { randomBytes } from "node:crypto";
import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

export const POOL_PREFIX = "pool-";

export function isPooled(id: string): boolean {
  return id.startsWith(POOL_PREFIX);
}

/** What an entry is made from: a create's template and shape. */
export interface Recipe {
  template: string;
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
}

export interface PoolOptions {
  /** Most ready entries per source; 0 keeps none but for the templates named in `templates`. */
  size: number;
  /** Most ready entries per source of these templates (by the name creates give), instead of `size`; 0: none. */
  templates?: Readonly<Record<string, number>>;
  /** A source nobody has created from for this long is drained (default 10 min). */
  idleMs?: number;
}

export interface PoolActions {
  /** Makes an entry under `id` from the recipe; returns the source it restored (its key). */
  make(id: string, recipe: Recipe): Promise<string>;
  destroy(id: string): Promise<void>;
}

/** Creates within this window size a source (one entry per create, up to `size`). */
const DEMAND_WINDOW_MS = 60_000;
/** After a failed refill, the source waits this long (or for the next create). */
const RETRY_MS = 30_000;
/**
 * A refill starts this long after the last create: a restore beside a
 * sandbox's first commands would take the cores they need (TCG translates
 * a new VM's code afresh), and a burst of creates is better served first.
 */
const REFILL_DELAY_MS = 1500;

interface Source {
  recipe: Recipe;
  /** When creates asked for it lately, oldest first. */
  demand: number[];
  ready: string[];
  retryAtMs: number;
}

export class WarmPool {
  readonly #size: number;
  readonly #templates: ReadonlyMap<string, number>;
  readonly #idleMs: number;
  readonly #actions: PoolActions;
  readonly #log: Logger;
  readonly #sources = new Map<string, Source>();
  /** The refill under way: which source, and when it is done. */
  #current: { key: string; done: Promise<void> } | null = null;
  #filling: Promise<void> | null = null;
  #timer: NodeJS.Timeout | undefined;
  #delay: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: PoolOptions, actions: PoolActions, log: Logger) {
    this.#size = wholeSize(opts.size);
    this.#templates = new Map(
      Object.entries(opts.templates ?? {}).map(([name, n]) => [name, wholeSize(n)]),
    );
    this.#idleMs = opts.idleMs ?? 10 * 60_000;
    this.#actions = actions;
    this.#log = log.child({ part: "pool" });
  }

  get enabled(): boolean {
    return !this.#closed && (this.#size > 0 || [...this.#templates.values()].some((n) => n > 0));
  }

  /** Most ready entries of a source made from `template`. */
  sizeOf(template: string): number {
    return this.#templates.get(template) ?? this.#size;
  }

  /** A ready entry of the source, now no longer the pool's; null when it has none. */
  take(key: string): string | null {
    return this.#sources.get(key)?.ready.shift() ?? null;
  }

  /** A create asked for this source (served from the pool or not): keep it filled. */
  wanted(key: string, recipe: Recipe, now = Date.now()): void {
    if (!this.enabled || this.sizeOf(recipe.template) === 0) return;
    for (const [other, s] of this.#sources) {
      // The same request now restores something else (image rebuilt, new kernel).
      if (other !== key && sameRecipe(s.recipe, recipe)) void this.drain((k) => k === other);
    }
    let source = this.#sources.get(key);
    if (source === undefined) {
      source = { recipe, demand: [], ready: [], retryAtMs: 0 };
      this.#sources.set(key, source);
    }
    source.demand = [...source.demand.filter((t) => now - t < DEMAND_WINDOW_MS), now];
    source.retryAtMs = 0;
    if (this.#timer === undefined) {
      // Drains sources that went idle even when no create comes to notice.
      this.#timer = setInterval(() => this.#kick(), Math.min(this.#idleMs, DEMAND_WINDOW_MS));
      this.#timer.unref();
    }
    clearTimeout(this.#delay);
    this.#delay = setTimeout(() => this.#kick(), REFILL_DELAY_MS);
    this.#delay.unref();
  }

  /** Ready entries, per source (tests, the host's report). */
  counts(): Record<string, number> {
    return Object.fromEntries([...this.#sources].map(([k, s]) => [k, s.ready.length]));
  }

  /**
   * Destroys the entries of the sources `match` selects and forgets them,
   * waiting for a refill of one of them under way (a template about to be
   * deleted or replaced must have no entry left using it).
   */
  async drain(match: (key: string) => boolean = () => true): Promise<void> {
    const ids: string[] = [];
    for (const [key, s] of this.#sources) {
      if (!match(key)) continue;
      ids.push(...s.ready);
      this.#sources.delete(key);
    }
    const current = this.#current;
    if (current !== null && match(current.key)) await current.done;
    await this.#destroy(ids);
  }

  /** Agent shutdown: no more refills, every entry destroyed. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#delay);
    await this.#filling;
    await this.drain();
  }

  #kick(): void {
    if (this.#filling !== null || this.#closed) return;
    this.#filling = this.#fill().finally(() => {
      this.#filling = null;
    });
  }

  async #fill(): Promise<void> {
    for (;;) {
      if (this.#closed) return;
      const now = Date.now();
      let next: [string, Source] | undefined;
      for (const [key, s] of this.#sources) {
        const target = this.#target(s, now);
        if (target === 0) {
          await this.drain((k) => k === key);
        } else if (next === undefined && s.ready.length < target && now >= s.retryAtMs) {
          next = [key, s];
        }
      }
      if (next === undefined) return;
      const [key, source] = next;
      let finish = (): void => undefined;
      this.#current = { key, done: new Promise<void>((r) => (finish = r)) };
      try {
        await this.#refill(key, source);
      } finally {
        this.#current = null;
        finish();
      }
    }
  }

  async #refill(key: string, source: Source): Promise<void> {
    const id = `${POOL_PREFIX}${randomBytes(6).toString("hex")}`;
    const t0 = performance.now();
    let made: string;
    try {
      made = await this.#actions.make(id, source.recipe);
    } catch (err) {
      // make() gave back whatever it took; the source waits before trying again.
      source.retryAtMs = Date.now() + RETRY_MS;
      this.#log.warn(
        { source: key, err: messageOf(err) },
        "refilling the warm pool failed; creates of it take the slow path",
      );
      return;
    }
    if (made !== key || this.#closed || this.#sources.get(key) !== source) {
      // Drained while it was made, or the template changed under it.
      await this.#destroy([id]);
      return;
    }
    source.ready.push(id);
    this.#log.info(
      {
        source: key,
        entry: id,
        ready: source.ready.length,
        ms: Math.round(performance.now() - t0),
      },
      "warm pool entry ready",
    );
  }

  #target(s: Source, now: number): number {
    const last = s.demand.at(-1) ?? 0;
    if (now - last >= this.#idleMs) return 0;
    const recent = s.demand.filter((t) => now - t < DEMAND_WINDOW_MS).length;
    return Math.min(this.sizeOf(s.recipe.template), Math.max(1, recent));
  }

  async #destroy(ids: string[]): Promise<void> {
    for (const id of ids) {
      await this.#actions.destroy(id).catch((err: unknown) => {
        this.#log.warn({ entry: id, err: messageOf(err) }, "destroying a warm pool entry failed");
      });
    }
  }
}

function wholeSize(n: number): number {
  return Number.isFinite(n) ? Math.max(0, Math.floor(n)) : 0;
}

function sameRecipe(a: Recipe, b: Recipe): boolean {
  return (
    a.template === b.template &&
    a.vcpus === b.vcpus &&
    a.memoryMb === b.memoryMb &&
    a.diskSizeMb === b.diskSizeMb
  );
}
