import { WrennError } from "@wrenn/shared/errors.ts";
import { DirWatcher, type WatchEvent } from "./watcher.ts";

/** Events kept per polling watcher between two GetWatcherEvents calls. */
const MAX_BUFFERED = 10_000;

interface Polled {
  watcher: DirWatcher;
  events: WatchEvent[];
  includeEntry: boolean;
  failure: { error?: Error };
}

/**
 * The watchers behind CreateWatcher/GetWatcherEvents/RemoveWatcher, and every
 * live WatchDir stream, so closing envd closes all of them.
 */
export class WatcherRegistry {
  private readonly polled = new Map<string, Polled>();
  private readonly streams = new Set<DirWatcher>();

  async create(path: string, recursive: boolean, includeEntry: boolean): Promise<string> {
    // Loaded here, not at envd's start (see http/auth.ts).
    const id = process.getBuiltinModule("node:crypto").randomUUID();
    const events: WatchEvent[] = [];
    const failure: { error?: Error } = {};
    const watcher = await DirWatcher.start(
      path,
      recursive,
      (event) => {
        // A client that stopped polling must not grow envd without bound.
        if (events.length >= MAX_BUFFERED) events.shift();
        events.push(event);
      },
      (err) => {
        failure.error = err;
      },
    );
    this.polled.set(id, { watcher, events, includeEntry, failure });
    return id;
  }

  /** Takes the events seen since the last call. */
  drain(id: string): { events: WatchEvent[]; includeEntry: boolean } {
    const entry = this.get(id);
    if (entry.failure.error !== undefined) {
      this.remove(id);
      throw new WrennError("internal", `watcher '${id}' failed: ${entry.failure.error.message}`);
    }
    return { events: entry.events.splice(0), includeEntry: entry.includeEntry };
  }

  remove(id: string): void {
    this.get(id).watcher.close();
    this.polled.delete(id);
  }

  /** Tracks a WatchDir stream's watcher until it ends. */
  track(watcher: DirWatcher): () => void {
    this.streams.add(watcher);
    return () => {
      watcher.close();
      this.streams.delete(watcher);
    };
  }

  get size(): number {
    return this.polled.size + this.streams.size;
  }

  closeAll(): void {
    for (const { watcher } of this.polled.values()) watcher.close();
    for (const watcher of this.streams) watcher.close();
    this.polled.clear();
    this.streams.clear();
  }

  private get(id: string): Polled {
    const entry = this.polled.get(id);
    if (entry === undefined) {
      throw new WrennError(
        "not_found",
        `watcher '${id}' does not exist (removed, or envd restarted)`,
      );
    }
    return entry;
  }
}
