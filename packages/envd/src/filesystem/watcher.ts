import { watch, type FSWatcher, type Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { EventType } from "@wrenn/proto/filesystem/filesystem_pb.js";
import { errnoOf } from "./errors.ts";

export interface WatchEvent {
  /** Path relative to the watched directory ("a.txt", "sub/b.txt"). */
  name: string;
  type: EventType;
  /** The absolute path, for building an EntryInfo when asked. */
  path: string;
}

interface Known {
  ino: number;
  dir: boolean;
}

/**
 * Watches a directory (optionally its whole tree) and reports E2B's event
 * types. Node's fs.watch only says "rename" or "change", and its recursive
 * mode drops creations in subdirectories, so this keeps one inotify watch per
 * directory itself and recovers the real event from what it knew before:
 * a name that appears is CREATE, one that vanishes is REMOVE — or RENAME when
 * its inode shows up under another name in the same inotify batch — and a
 * change is WRITE, or CHMOD when only the inode's ctime moved past its mtime.
 */
export class DirWatcher {
  readonly root: string;
  readonly recursive: boolean;
  private readonly onEvent: (event: WatchEvent) => void;
  private readonly onError: (err: Error) => void;
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly known = new Map<string, Known>();
  private pending: { rel: string; kind: string }[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    root: string,
    recursive: boolean,
    onEvent: (event: WatchEvent) => void,
    onError: (err: Error) => void,
  ) {
    this.root = root;
    this.recursive = recursive;
    this.onEvent = onEvent;
    this.onError = onError;
  }

  /** Starts watching; resolves once every watch is in place. */
  static async start(
    root: string,
    recursive: boolean,
    onEvent: (event: WatchEvent) => void,
    onError: (err: Error) => void,
  ): Promise<DirWatcher> {
    const watcher = new DirWatcher(root, recursive, onEvent, onError);
    try {
      await watcher.addDir("", false);
    } catch (err) {
      watcher.close();
      throw err;
    }
    return watcher;
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.known.clear();
  }

  /** Watches one directory and learns its children; reports them as created when `announce`. */
  private async addDir(rel: string, announce: boolean): Promise<void> {
    if (this.closed || this.watchers.has(rel)) return;
    const abs = join(this.root, rel);
    const w = watch(abs, { persistent: false }, (kind, filename) => {
      if (filename === null) return;
      this.pending.push({ rel: rel === "" ? filename : join(rel, filename), kind });
      if (this.pending.length === 1) setImmediate(() => this.schedule());
    });
    w.on("error", (err) => {
      // The directory itself went away: its parent's watch reports that.
      if (rel !== "" && errnoOf(err) === "ENOENT") return;
      this.onError(err);
    });
    this.watchers.set(rel, w);
    let children;
    try {
      children = await readdir(abs, { withFileTypes: true });
    } catch (err) {
      if (rel !== "" && errnoOf(err) === "ENOENT") return;
      throw err;
    }
    for (const child of children) {
      const childRel = rel === "" ? child.name : join(rel, child.name);
      if (this.known.has(childRel)) continue;
      const st = await lstat(join(abs, child.name)).catch(() => undefined);
      if (st === undefined) continue;
      this.known.set(childRel, { ino: st.ino, dir: st.isDirectory() });
      if (announce) this.emit(childRel, EventType.CREATE);
      if (this.recursive && st.isDirectory()) await this.addDir(childRel, announce);
    }
  }

  private removeTree(rel: string): void {
    for (const key of [...this.known.keys()]) {
      if (key === rel || key.startsWith(rel + "/")) this.known.delete(key);
    }
    for (const [key, w] of [...this.watchers]) {
      if (key === rel || key.startsWith(rel + "/")) {
        w.close();
        this.watchers.delete(key);
      }
    }
  }

  private emit(rel: string, type: EventType): void {
    if (!this.closed) this.onEvent({ name: rel, type, path: join(this.root, rel) });
  }

  private schedule(): void {
    const batch = this.pending;
    this.pending = [];
    // Batches are handled one after another so `known` stays consistent.
    this.flushing = this.flushing
      .then(() => this.flush(batch))
      .catch((err: unknown) => this.onError(err instanceof Error ? err : new Error(String(err))));
  }

  private async flush(batch: { rel: string; kind: string }[]): Promise<void> {
    if (this.closed) return;
    const stats = new Map<string, Stats | undefined>();
    for (const { rel } of batch) {
      if (!stats.has(rel)) stats.set(rel, await lstat(join(this.root, rel)).catch(() => undefined));
    }
    const appearedInodes = new Set<number>();
    for (const [rel, st] of stats) {
      const before = this.known.get(rel);
      if (st !== undefined && (before === undefined || before.ino !== st.ino))
        appearedInodes.add(st.ino);
    }
    for (const { rel, kind } of batch) {
      const st = stats.get(rel);
      const before = this.known.get(rel);
      if (st === undefined) {
        if (before === undefined && kind !== "rename") continue;
        this.removeTree(rel);
        const moved = before !== undefined && appearedInodes.has(before.ino);
        this.emit(rel, moved ? EventType.RENAME : EventType.REMOVE);
        continue;
      }
      if (before === undefined || before.ino !== st.ino) {
        if (before !== undefined) this.removeTree(rel);
        this.known.set(rel, { ino: st.ino, dir: st.isDirectory() });
        this.emit(rel, EventType.CREATE);
        if (this.recursive && st.isDirectory()) await this.addDir(rel, true);
        continue;
      }
      if (kind === "change") {
        // A write moves mtime and ctime together; chmod/chown move only ctime.
        this.emit(rel, st.ctimeMs > st.mtimeMs ? EventType.CHMOD : EventType.WRITE);
      }
    }
  }
}
