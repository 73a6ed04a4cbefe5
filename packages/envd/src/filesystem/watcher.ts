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

/**
 * Watches a directory (optionally its whole tree) and reports E2B's event
 * types. Node's fs.watch only says "rename" or "change", and its recursive
 * mode drops creations in subdirectories, so this keeps one inotify watch per
 * directory itself and recovers the real event from what it knew before:
 * a name that appears is CREATE; one that vanishes is RENAME when inotify
 * pairs it with a new name (moved-from, moved-to) or its inode reappears,
 * else REMOVE; a change is WRITE when contents moved and CHMOD when only
 * mode, owner or ctime did. A move out of the watched tree reads as REMOVE.
 */
export class DirWatcher {
  readonly root: string;
  readonly recursive: boolean;
  private readonly onEvent: (event: WatchEvent) => void;
  private readonly onError: (err: Error) => void;
  private readonly watchers = new Map<string, FSWatcher>();
  /** Paths seen so far with their last stat (null: seen, but gone before it could be stat'ed). */
  private readonly known = new Map<string, Stats | null>();
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
      this.known.set(childRel, st);
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
    const final = new Map<string, Stats | undefined>();
    const last = new Map<string, number>();
    for (const [i, { rel }] of batch.entries()) {
      last.set(rel, i);
      if (!final.has(rel)) final.set(rel, await lstat(join(this.root, rel)).catch(() => undefined));
    }
    const appeared = new Set<number>();
    for (const [rel, st] of final) {
      const before = this.known.get(rel);
      if (st !== undefined && (before === undefined || before?.ino !== st.ino))
        appeared.add(st.ino);
    }
    // Replays the batch in order against what was known, so a burst like
    // create → write → rename → delete still yields each step, even though
    // only the end state can be stat'ed.
    for (const [i, { rel, kind }] of batch.entries()) {
      const isLast = last.get(rel) === i;
      const st = isLast ? final.get(rel) : undefined;
      const known = this.known.has(rel);
      const before = this.known.get(rel);
      if (kind === "rename") {
        if (!known) {
          // An unknown name can only have appeared, even if it is gone again by
          // now: its disappearance is queued behind and reports REMOVE.
          await this.created(rel, isLast ? st : final.get(rel));
        } else if (isLast && st !== undefined) {
          // Replaced by another inode (renamed over), or a spurious event.
          if (before !== null && before !== undefined && before.ino !== st.ino) {
            this.removeTree(rel);
            await this.created(rel, st);
          }
        } else {
          const next = batch[i + 1];
          const pairedMove =
            next?.kind === "rename" && next.rel !== rel && !this.known.has(next.rel);
          const moved =
            pairedMove || (before !== null && before !== undefined && appeared.has(before.ino));
          this.removeTree(rel);
          this.emit(rel, moved ? EventType.RENAME : EventType.REMOVE);
        }
        continue;
      }
      // "change": contents or attributes.
      const now = final.get(rel);
      if (!known) {
        if (now !== undefined) await this.created(rel, now);
        continue;
      }
      if (now === undefined || before === null || before === undefined) {
        this.emit(rel, EventType.WRITE);
        continue;
      }
      this.known.set(rel, now);
      for (const type of changeTypes(before, now)) this.emit(rel, type);
    }
  }

  private async created(rel: string, st: Stats | undefined): Promise<void> {
    this.known.set(rel, st ?? null);
    this.emit(rel, EventType.CREATE);
    if (this.recursive && st?.isDirectory()) await this.addDir(rel, true);
  }
}

/**
 * What a "change" was, from the inode before and after: a write and a chmod
 * the same stat saw (a chmod right after a write, before the write's event
 * was handled) are both reported, the write first.
 */
export function changeTypes(before: Stats, now: Stats): EventType[] {
  const wrote = now.mtimeMs !== before.mtimeMs || now.size !== before.size;
  const chmodded = now.mode !== before.mode || now.uid !== before.uid || now.gid !== before.gid;
  if (wrote) return chmodded ? [EventType.WRITE, EventType.CHMOD] : [EventType.WRITE];
  if (chmodded || now.ctimeMs !== before.ctimeMs) return [EventType.CHMOD];
  // Already folded into an earlier event of this batch: a write moves mtime
  // and ctime together, chmod/chown only ctime.
  return [now.ctimeMs > now.mtimeMs ? EventType.CHMOD : EventType.WRITE];
}
