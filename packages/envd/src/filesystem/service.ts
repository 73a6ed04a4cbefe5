import { EventEmitter, on } from "node:events";
import { cp, lstat, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  EventType,
  FilesystemEventSchema,
  WatchDirResponseSchema,
  type EntryInfo,
  type Filesystem,
  type FilesystemEvent,
  type WatchDirResponse,
} from "@wrenn/proto/filesystem/filesystem_pb.js";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdContext } from "../context.ts";
import { lookupUser, userFromAuthorization, type LinuxUser } from "../users.ts";
import { entryInfo } from "./entry.ts";
import { errnoOf, fsError } from "./errors.ts";
import { loadIdNames, type IdNames } from "./names.ts";
import { makeDirsFor } from "./ownership.ts";
import { resolveUserPath } from "./paths.ts";
import type { WatchEvent } from "./watcher.ts";
import { DirWatcher } from "./watcher.ts";
import { WatcherRegistry } from "./watchers.ts";

/** How often WatchDir sends keepalives when the client asks for none (seconds). */
const DEFAULT_KEEPALIVE_S = 50;

async function requestUser(ctx: EnvdContext, hc: HandlerContext): Promise<LinuxUser> {
  return lookupUser(
    userFromAuthorization(hc.requestHeader.get("authorization"), ctx.state.defaultUser),
  );
}

async function requirePath(path: string, ctx: EnvdContext, hc: HandlerContext): Promise<string> {
  return resolveUserPath(path, await requestUser(ctx, hc));
}

async function requireDir(path: string): Promise<void> {
  const st = await stat(path).catch((err: unknown) => {
    throw fsError(err, path);
  });
  if (!st.isDirectory()) throw new WrennError("invalid_argument", `'${path}' is not a directory`);
}

async function listDir(
  dir: string,
  depth: number,
  names: IdNames,
  out: EntryInfo[],
): Promise<void> {
  let children;
  try {
    children = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw fsError(err, dir);
  }
  children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const child of children) {
    const path = join(dir, child.name);
    let info: EntryInfo;
    try {
      info = await entryInfo(path, names);
    } catch (err) {
      // Deleted between readdir and lstat: it is simply no longer there.
      if (err instanceof WrennError && err.code === "not_found") continue;
      throw err;
    }
    out.push(info);
    // Symlinked directories are not descended into, so loops cannot happen.
    if (depth > 1 && child.isDirectory()) await listDir(path, depth - 1, names, out);
  }
}

async function toEvent(
  event: WatchEvent,
  includeEntry: boolean,
  names: IdNames | undefined,
): Promise<FilesystemEvent> {
  const gone = event.type === EventType.REMOVE || event.type === EventType.RENAME;
  const entry =
    includeEntry && !gone && names !== undefined
      ? await entryInfo(event.path, names).catch(() => undefined)
      : undefined;
  return create(FilesystemEventSchema, { name: event.name, type: event.type, entry });
}

function keepaliveSeconds(hc: HandlerContext): number {
  const raw = Number(hc.requestHeader.get("keepalive-ping-interval"));
  return Number.isFinite(raw) && raw > 0 ? raw : DEFAULT_KEEPALIVE_S;
}

export function filesystemService(
  ctx: EnvdContext,
  watchers: WatcherRegistry = new WatcherRegistry(),
): ServiceImpl<typeof Filesystem> {
  return {
    async stat(req, hc) {
      const path = await requirePath(req.path, ctx, hc);
      return { entry: await entryInfo(path, await loadIdNames()) };
    },

    async makeDir(req, hc) {
      const user = await requestUser(ctx, hc);
      const path = resolveUserPath(req.path, user);
      const existing = await stat(path).catch(() => undefined);
      if (existing?.isDirectory())
        throw new WrennError("already_exists", `directory '${path}' already exists`);
      if (existing !== undefined) {
        throw new WrennError("invalid_argument", `'${path}' already exists and is not a directory`);
      }
      await makeDirsFor(path, user);
      return { entry: await entryInfo(path, await loadIdNames()) };
    },

    async move(req, hc) {
      const user = await requestUser(ctx, hc);
      if (req.source === "" || req.destination === "") {
        throw new WrennError("invalid_argument", "source and destination are required");
      }
      const source = resolveUserPath(req.source, user);
      const destination = resolveUserPath(req.destination, user);
      await lstat(source).catch((err: unknown) => {
        throw fsError(err, source);
      });
      await makeDirsFor(dirname(destination), user);
      try {
        await rename(source, destination);
      } catch (err) {
        if (errnoOf(err) !== "EXDEV") throw fsError(err, destination);
        // Across filesystems rename cannot work: copy, then delete the original.
        await cp(source, destination, {
          recursive: true,
          preserveTimestamps: true,
          verbatimSymlinks: true,
        });
        await rm(source, { recursive: true, force: true });
      }
      return { entry: await entryInfo(destination, await loadIdNames()) };
    },

    async listDir(req, hc) {
      const path = await requirePath(req.path, ctx, hc);
      await requireDir(path);
      const entries: EntryInfo[] = [];
      // Depth 0 means "the default", which is the directory's own children.
      await listDir(path, Math.max(1, req.depth), await loadIdNames(), entries);
      return { entries };
    },

    async remove(req, hc) {
      const path = await requirePath(req.path, ctx, hc);
      await lstat(path).catch((err: unknown) => {
        throw fsError(err, path);
      });
      await rm(path, { recursive: true, force: true }).catch((err: unknown) => {
        throw fsError(err, path);
      });
      return {};
    },

    async *watchDir(req, hc): AsyncGenerator<WatchDirResponse> {
      const path = await requirePath(req.path, ctx, hc);
      await requireDir(path);
      const names = req.includeEntry ? await loadIdNames() : undefined;
      const bus = new EventEmitter();
      const watcher = await DirWatcher.start(
        path,
        req.recursive,
        (event) => bus.emit("event", event),
        (err) => bus.emit("error", fsError(err, path)),
      );
      const untrack = watchers.track(watcher);
      const keepalive = setInterval(
        () => bus.emit("event", "keepalive"),
        keepaliveSeconds(hc) * 1000,
      );
      try {
        yield create(WatchDirResponseSchema, { event: { case: "start", value: {} } });
        for await (const [item] of on(bus, "event", { signal: hc.signal }) as AsyncIterable<
          [WatchEvent | "keepalive"]
        >) {
          if (item === "keepalive") {
            yield create(WatchDirResponseSchema, { event: { case: "keepalive", value: {} } });
          } else {
            const value = await toEvent(item, req.includeEntry, names);
            yield create(WatchDirResponseSchema, { event: { case: "filesystem", value } });
          }
        }
      } catch (err) {
        // The client went away or its deadline passed: that is the normal end of a watch.
        if (hc.signal.aborted) return;
        throw err;
      } finally {
        clearInterval(keepalive);
        untrack();
      }
    },

    async createWatcher(req, hc) {
      const path = await requirePath(req.path, ctx, hc);
      await requireDir(path);
      return { watcherId: await watchers.create(path, req.recursive, req.includeEntry) };
    },

    async getWatcherEvents(req) {
      if (req.watcherId === "") throw new WrennError("invalid_argument", "watcher_id is required");
      const { events, includeEntry } = watchers.drain(req.watcherId);
      const names = includeEntry ? await loadIdNames() : undefined;
      return { events: await Promise.all(events.map((e) => toEvent(e, includeEntry, names))) };
    },

    async removeWatcher(req) {
      if (req.watcherId === "") throw new WrennError("invalid_argument", "watcher_id is required");
      watchers.remove(req.watcherId);
      return {};
    },
  };
}
