import { WrennError } from "@wrenn/shared/errors.ts";
import type { ExitInfo } from "./exit-status.ts";

export type OutputStream = "stdout" | "stderr" | "pty";

export type OutputItem =
  | { type: "data"; stream: OutputStream; bytes: Uint8Array }
  | { type: "end"; exit: ExitInfo }
  | { type: "keepalive" };

/** Lets the hub hold the process's output back while a live reader catches up. */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

export interface OutputLimits {
  /** Queued bytes at which a reader counts as behind and the process is paused. */
  highWaterBytes: number;
  /** Queued bytes below which a reader that was behind lets the process go on. */
  lowWaterBytes: number;
  /**
   * How long a reader that is behind may go without taking anything before it
   * is cut off: a vanished client must not hold the process on a full pipe.
   */
  stallMs: number;
}

/** WRENN_ENVD_OUTPUT_STALL_MS overrides how long a stalled reader may hold a process. */
export function outputLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): OutputLimits {
  const stallMs = Number(env.WRENN_ENVD_OUTPUT_STALL_MS);
  return {
    highWaterBytes: 4 << 20,
    lowWaterBytes: 1 << 20,
    stallMs: Number.isFinite(stallMs) && stallMs > 0 ? stallMs : 10_000,
  };
}

/** One reader's view of a process's output, from the moment it subscribed. */
export class Subscription {
  readonly #hub: OutputHub;
  #queue: OutputItem[] = [];
  #bytes = 0;
  #wake: (() => void) | undefined;
  #closed = false;
  #ended = false;
  #error: WrennError | undefined;
  #stallTimer: NodeJS.Timeout | undefined;

  constructor(hub: OutputHub) {
    this.#hub = hub;
  }

  get queuedBytes(): number {
    return this.#bytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  push(item: OutputItem): void {
    if (this.#closed) return;
    this.#queue.push(item);
    if (item.type === "data") this.#bytes += item.bytes.byteLength;
    if (item.type === "end") this.#ended = true;
    this.#wake?.();
  }

  /** Adds a keepalive unless the reader already has something to read. */
  keepalive(): void {
    if (this.#queue.length === 0) this.push({ type: "keepalive" });
  }

  /**
   * The next item, or undefined after the end, once the reader went away
   * (signal) or the subscription was closed. Throws when the hub cut this
   * reader off.
   */
  async next(signal: AbortSignal): Promise<OutputItem | undefined> {
    for (;;) {
      const item = this.#queue.shift();
      if (item !== undefined) {
        if (item.type === "data") {
          this.#bytes -= item.bytes.byteLength;
          this.#hub.drained(this);
        }
        return item;
      }
      if (this.#error !== undefined) throw this.#error;
      if (this.#closed || this.#ended || signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const onAbort = () => resolve();
        signal.addEventListener("abort", onAbort, { once: true });
        this.#wake = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  armStallTimer(ms: number, onStall: () => void): void {
    clearTimeout(this.#stallTimer);
    this.#stallTimer = setTimeout(onStall, ms);
  }

  disarmStallTimer(): void {
    clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
  }

  /** Stops delivery; with an error, the reader gets it after what is already queued. */
  close(error?: WrennError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.disarmStallTimer();
    if (error !== undefined) {
      this.#error = error;
      // What is still queued stays readable; only future output is withheld.
    } else {
      this.#queue = [];
      this.#bytes = 0;
    }
    this.#hub.unsubscribe(this);
    this.#wake?.();
  }
}

/**
 * Fans a process's output out to every reader. Output is always read from
 * the process: with no reader it is dropped, and a reader that falls behind
 * pauses the process only until it catches up or stalls for `stallMs`.
 */
export class OutputHub {
  readonly #flow: FlowControl;
  readonly #limits: OutputLimits;
  readonly #readers = new Set<Subscription>();
  readonly #behind = new Set<Subscription>();
  #end: ExitInfo | undefined;
  #paused = false;
  readonly #onStall: (sub: Subscription) => void;

  constructor(flow: FlowControl, limits: OutputLimits, onStall: (sub: Subscription) => void) {
    this.#flow = flow;
    this.#limits = limits;
    this.#onStall = onStall;
  }

  get readers(): number {
    return this.#readers.size;
  }

  get paused(): boolean {
    return this.#paused;
  }

  subscribe(): Subscription {
    const sub = new Subscription(this);
    if (this.#end !== undefined) {
      sub.push({ type: "end", exit: this.#end });
    } else {
      this.#readers.add(sub);
    }
    return sub;
  }

  publish(stream: OutputStream, bytes: Uint8Array): void {
    for (const sub of this.#readers) {
      sub.push({ type: "data", stream, bytes });
      if (sub.queuedBytes >= this.#limits.highWaterBytes && !this.#behind.has(sub)) {
        this.#behind.add(sub);
        sub.armStallTimer(this.#limits.stallMs, () => this.#stall(sub));
      }
    }
    this.#applyFlow();
  }

  finish(exit: ExitInfo): void {
    if (this.#end !== undefined) return;
    this.#end = exit;
    for (const sub of this.#readers) sub.push({ type: "end", exit });
    this.#readers.clear();
    for (const sub of this.#behind) sub.disarmStallTimer();
    this.#behind.clear();
    this.#applyFlow();
  }

  /** Called by a reader whenever it took data off its queue. */
  drained(sub: Subscription): void {
    if (!this.#behind.has(sub)) return;
    if (sub.queuedBytes <= this.#limits.lowWaterBytes) {
      this.#behind.delete(sub);
      sub.disarmStallTimer();
      this.#applyFlow();
    } else {
      sub.armStallTimer(this.#limits.stallMs, () => this.#stall(sub));
    }
  }

  unsubscribe(sub: Subscription): void {
    this.#readers.delete(sub);
    if (this.#behind.delete(sub)) this.#applyFlow();
  }

  #stall(sub: Subscription): void {
    this.#onStall(sub);
    sub.close(
      new WrennError(
        "resource_exhausted",
        `stopped reading the process's output for ${this.#limits.stallMs} ms with ${sub.queuedBytes} bytes queued; the process runs on, reconnect to follow it again`,
      ),
    );
  }

  #applyFlow(): void {
    const shouldPause = this.#behind.size > 0;
    if (shouldPause === this.#paused) return;
    this.#paused = shouldPause;
    if (shouldPause) this.#flow.pause();
    else this.#flow.resume();
  }
}
