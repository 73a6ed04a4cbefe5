import { WrennError, isWrennError } from "@wrenn/shared/errors.ts";

/**
 * Terminals that outlive their viewers, with what was on screen.
 *
 * The scrollback lives here, in the host agent, beside the PTY's one stream
 * from envd: the control plane is stateless (a reload may reach another
 * replica, a restart loses nothing that matters there), and only a reader
 * that stays attached while nobody watches can record what the shell prints
 * meanwhile. One reader per (sandbox, pid) fans out to every viewer and
 * keeps the last `scrollbackBytes`; a viewer that (re)attaches gets that
 * first, then the live bytes. The reader ends with the process, or with the
 * VM's run (envd's stream is cut on pause or destroy: the buffer stays, and
 * a reattach after resume opens a new stream and replays it first).
 */

export type PtyEvent =
  | { type: "start"; pid: number }
  | { type: "data"; data: Uint8Array }
  | { type: "end"; exitCode: number; error?: string };

export interface PtyRequest {
  pid: number;
  cols: number;
  rows: number;
  user?: string;
}

/** Opens envd's stream for a PTY: a new shell (pid 0) or an existing one. */
export type OpenPty = (req: PtyRequest & { signal: AbortSignal }) => AsyncIterable<PtyEvent>;

export interface PtySessionOptions {
  /** Bytes of output kept per terminal (64 KiB: a few screens of a busy shell). */
  scrollbackBytes?: number;
  /** Terminals remembered per agent; the least recently used go first. */
  maxSessions?: number;
  /** A reader nobody watches is stopped after this long (the buffer stays). */
  lingerMs?: number;
}

/** Replayed bytes go out in pieces of this size, like live output. */
const REPLAY_CHUNK = 16 * 1024;

/** A viewer is handed the terminal's events, or the error that ended its stream. */
type Viewer = (ev: PtyEvent | Error) => void;

class Session {
  readonly key: string;
  readonly #limit: number;
  #chunks: Uint8Array[] = [];
  #bytes = 0;
  #trimmed = false;
  readonly viewers = new Set<Viewer>();
  reader: AbortController | undefined;
  lingerTimer: NodeJS.Timeout | undefined;

  constructor(key: string, limit: number) {
    this.key = key;
    this.#limit = limit;
  }

  append(data: Uint8Array): void {
    this.#chunks.push(data);
    this.#bytes += data.length;
    while (this.#bytes > this.#limit && this.#chunks.length > 0) {
      const first = this.#chunks[0] as Uint8Array;
      const over = this.#bytes - this.#limit;
      if (first.length <= over) {
        this.#chunks.shift();
        this.#bytes -= first.length;
      } else {
        this.#chunks[0] = first.subarray(over);
        this.#bytes -= over;
      }
      this.#trimmed = true;
    }
  }

  /** The kept output; once trimmed, from the first line start on (not mid escape sequence). */
  replay(): Uint8Array[] {
    if (this.#bytes === 0) return [];
    const all = Buffer.concat(this.#chunks);
    let from = 0;
    if (this.#trimmed) {
      const nl = all.indexOf(0x0a);
      if (nl >= 0 && nl < 4096) from = nl + 1;
    }
    const out: Uint8Array[] = [];
    for (let off = from; off < all.length; off += REPLAY_CHUNK) {
      out.push(all.subarray(off, Math.min(all.length, off + REPLAY_CHUNK)));
    }
    return out;
  }

  get size(): number {
    return this.#bytes;
  }

  broadcast(ev: PtyEvent | Error): void {
    for (const v of this.viewers) v(ev);
  }
}

/** An async queue a viewer's generator waits on. */
class Inbox {
  #items: Array<PtyEvent | Error> = [];
  #wake: (() => void) | undefined;

  push(ev: PtyEvent | Error): void {
    this.#items.push(ev);
    this.#wake?.();
  }

  async next(signal: AbortSignal): Promise<PtyEvent | Error | null> {
    while (this.#items.length === 0) {
      if (signal.aborted) return null;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
      this.#wake = undefined;
    }
    return this.#items.shift() ?? null;
  }
}

export class PtySessions {
  readonly #sessions = new Map<string, Session>();
  readonly #scrollback: number;
  readonly #max: number;
  readonly #lingerMs: number;

  constructor(options: PtySessionOptions = {}) {
    this.#scrollback = options.scrollbackBytes ?? 64 * 1024;
    this.#max = options.maxSessions ?? 256;
    this.#lingerMs = options.lingerMs ?? 60 * 60 * 1000;
  }

  /** How many terminals are remembered and how many have a reader (tests, metrics). */
  stats(): { sessions: number; reading: number; bytes: number } {
    let reading = 0;
    let bytes = 0;
    for (const s of this.#sessions.values()) {
      if (s.reader) reading++;
      bytes += s.size;
    }
    return { sessions: this.#sessions.size, reading, bytes };
  }

  /**
   * A viewer of a terminal: `start`, then the scrollback (when reattaching),
   * then live output until the process ends, the stream fails or `signal`
   * (the viewer leaving) aborts. Leaving does not stop the terminal's reader.
   */
  async *attach(
    sandboxId: string,
    req: PtyRequest,
    open: OpenPty,
    signal: AbortSignal,
  ): AsyncGenerator<PtyEvent> {
    const inbox = new Inbox();
    const viewer: Viewer = (ev) => inbox.push(ev);
    let session = req.pid === 0 ? undefined : this.#touch(`${sandboxId}/${req.pid}`);
    if (session?.reader) {
      yield { type: "start", pid: req.pid };
      for (const data of session.replay()) yield { type: "data", data };
      this.#watch(session, viewer);
    } else {
      // No reader: a new shell, a reattach after the VM's run ended, or after an agent restart.
      session = await this.#startReader(sandboxId, req, open, session, viewer, inbox);
    }
    try {
      for (;;) {
        const item = await inbox.next(signal);
        if (item === null) return;
        if (item instanceof Error) throw item;
        yield item;
        if (item.type === "end") return;
      }
    } finally {
      this.#unwatch(session, viewer);
    }
  }

  #touch(key: string): Session | undefined {
    const s = this.#sessions.get(key);
    if (s) {
      // Map order is the LRU order.
      this.#sessions.delete(key);
      this.#sessions.set(key, s);
    }
    return s;
  }

  #watch(session: Session, viewer: Viewer): void {
    clearTimeout(session.lingerTimer);
    session.lingerTimer = undefined;
    session.viewers.add(viewer);
  }

  #unwatch(session: Session, viewer: Viewer): void {
    session.viewers.delete(viewer);
    if (session.viewers.size === 0 && session.reader && !session.lingerTimer) {
      session.lingerTimer = setTimeout(() => session.reader?.abort(), this.#lingerMs);
      session.lingerTimer.unref();
    }
  }

  /**
   * Opens envd's stream and waits for its `start`: the pid names the session
   * (a new shell's is known only then). The earlier session's scrollback of
   * that pid, if any, is replayed to this viewer right after `start`.
   */
  async #startReader(
    sandboxId: string,
    req: PtyRequest,
    open: OpenPty,
    earlier: Session | undefined,
    viewer: Viewer,
    inbox: Inbox,
  ): Promise<Session> {
    const reader = new AbortController();
    const events = open({ ...req, signal: reader.signal })[Symbol.asyncIterator]();
    let first: IteratorResult<PtyEvent>;
    try {
      first = await events.next();
    } catch (err) {
      reader.abort();
      // The process is gone (the VM was started afresh): so is what it printed.
      if (earlier && isWrennError(err) && err.code === "not_found") {
        this.#sessions.delete(earlier.key);
      }
      throw err;
    }
    if (first.done || first.value.type !== "start") {
      reader.abort();
      throw new Error("the terminal's stream ended before it started");
    }
    const pid = first.value.pid;
    const key = `${sandboxId}/${pid}`;
    const session = earlier ?? this.#touch(key) ?? new Session(key, this.#scrollback);
    this.#sessions.set(key, session);
    this.#evict();
    session.reader = reader;
    inbox.push({ type: "start", pid });
    for (const data of session.replay()) inbox.push({ type: "data", data });
    this.#watch(session, viewer);
    void this.#pump(session, events, reader);
    return session;
  }

  async #pump(
    session: Session,
    events: AsyncIterator<PtyEvent>,
    reader: AbortController,
  ): Promise<void> {
    let ended: Error | null = new WrennError(
      "unavailable",
      "the terminal's stream ended; reconnect",
    );
    try {
      for (;;) {
        const r = await events.next();
        if (r.done) break;
        const ev = r.value;
        if (ev.type === "data") session.append(ev.data);
        session.broadcast(ev);
        if (ev.type === "end") {
          this.#sessions.delete(session.key);
          ended = null;
          return;
        }
      }
    } catch (err) {
      ended = err instanceof Error ? err : new Error(String(err));
    } finally {
      // Viewers of a cut stream (pause, destroy, a network error) reconnect; the buffer stays.
      if (session.reader === reader) {
        if (ended) session.broadcast(ended);
        session.reader = undefined;
      }
      clearTimeout(session.lingerTimer);
      session.lingerTimer = undefined;
      reader.abort();
    }
  }

  #evict(): void {
    for (const [key, s] of this.#sessions) {
      if (this.#sessions.size <= this.#max) return;
      s.reader?.abort();
      this.#sessions.delete(key);
    }
  }
}
