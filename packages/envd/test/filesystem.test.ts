import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import {
  appendFile,
  chmod,
  lstat,
  mkdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { setAttribute } from "@napi-rs/xattr";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  EventType,
  FileType,
  Filesystem,
  type FilesystemEvent,
  type WatchDirResponse,
} from "@wrenn/proto/filesystem/filesystem_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startEnvd, type Envd } from "../src/server.ts";
import type { LinuxUser } from "../src/users.ts";
import { lookupUser } from "../src/users.ts";
import {
  basicAuth,
  eventually,
  inotifyWatches,
  isRoot,
  tempDir,
  tempUser,
} from "./filesystem-fixtures.ts";

const log = createLogger("envd-test", "warn");

interface Fixture {
  envd: Envd;
  dir: string;
  user: LinuxUser;
  fs: Client<typeof Filesystem>;
  auth: { headers: Record<string, string> };
}

/** envd on a free port, a scratch directory and (as root) a scratch user whose home is in it. */
async function setup(t: TestContext, binary: boolean): Promise<Fixture> {
  const dir = await tempDir(t);
  const user = isRoot ? await tempUser(t, dir) : await lookupUser(userInfo().username);
  const watchesBefore = await inotifyWatches();
  const envd = await startEnvd({ port: 0, host: "127.0.0.1", defaultUser: user.name, log });
  t.after(async () => {
    await envd.close();
    assert.equal(envd.watchers.size, 0, "directory watchers leaked");
    await eventually(
      async () => (await inotifyWatches()) === watchesBefore,
      2000,
      "inotify watches to be released",
    );
  });
  const transport = createConnectTransport({
    baseUrl: envd.url,
    httpVersion: "1.1",
    useBinaryFormat: binary,
  });
  return {
    envd,
    dir,
    user,
    fs: createClient(Filesystem, transport),
    auth: { headers: { authorization: basicAuth(user.name) } },
  };
}

async function rejectsWith(promise: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Collects a WatchDir stream in the background. */
function collect(stream: AsyncIterable<WatchDirResponse>): {
  items: WatchDirResponse[];
  done: Promise<unknown>;
} {
  const items: WatchDirResponse[] = [];
  const done = (async () => {
    for await (const item of stream) items.push(item);
  })().catch((err: unknown) => err);
  return { items, done };
}

function fsEvents(items: WatchDirResponse[]): FilesystemEvent[] {
  return items.flatMap((i) => (i.event.case === "filesystem" ? [i.event.value] : []));
}

/** `expected` appears in order within `events` (other events may sit between). */
function hasSequence(events: FilesystemEvent[], expected: [EventType, string][]): boolean {
  let i = 0;
  for (const e of events) {
    const want = expected[i];
    if (want !== undefined && e.type === want[0] && e.name === want[1]) i++;
  }
  return i === expected.length;
}

function describeEvents(events: FilesystemEvent[]): string {
  return events.map((e) => `${EventType[e.type]}:${e.name}`).join(" ");
}

for (const binary of [false, true]) {
  describe(`Filesystem service (${binary ? "binary" : "JSON"} codec)`, () => {
    test("Stat describes a file completely, metadata included", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      const file = join(dir, "a.txt");
      await writeFile(file, "hello");
      await chmod(file, 0o640);
      await setAttribute(file, "user.e2b.owner-team", "search");
      const { entry } = await fs.stat({ path: file }, auth);
      assert.ok(entry);
      const st = await stat(file);
      assert.equal(entry.name, "a.txt");
      assert.equal(entry.path, file);
      assert.equal(entry.type, FileType.FILE);
      assert.equal(entry.size, 5n);
      assert.equal(entry.mode, 0o640);
      assert.equal(entry.permissions, "-rw-r-----");
      assert.equal(entry.owner, userInfo().username);
      assert.equal(entry.group, isRoot ? "root" : entry.group);
      assert.equal(entry.symlinkTarget, undefined);
      assert.deepEqual(entry.metadata, { "owner-team": "search" });
      const ms =
        Number(entry.modifiedTime?.seconds) * 1000 + (entry.modifiedTime?.nanos ?? 0) / 1e6;
      assert.ok(Math.abs(ms - st.mtimeMs) < 1, `modified time ${ms} vs ${st.mtimeMs}`);
    });

    test("Stat reports directories and symlinks (with their target) as such", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      await mkdir(join(dir, "d"));
      await chmod(join(dir, "d"), 0o2775);
      await symlink("d", join(dir, "link"));
      const d = (await fs.stat({ path: join(dir, "d") }, auth)).entry;
      assert.equal(d?.type, FileType.DIRECTORY);
      assert.equal(d?.permissions, "drwxrwsr-x");
      const l = (await fs.stat({ path: join(dir, "link") }, auth)).entry;
      assert.equal(l?.type, FileType.SYMLINK);
      assert.equal(l?.symlinkTarget, "d");
      assert.match(l?.permissions ?? "", /^l/);
    });

    test("relative paths and ~ resolve against the user's home", async (t) => {
      const { fs, user, auth } = await setup(t, binary);
      await writeFile(join(user.home, "rel.txt"), "x");
      assert.equal(
        (await fs.stat({ path: "rel.txt" }, auth)).entry?.path,
        join(user.home, "rel.txt"),
      );
      assert.equal(
        (await fs.stat({ path: "~/rel.txt" }, auth)).entry?.path,
        join(user.home, "rel.txt"),
      );
      // Without Authorization the default user's home is used.
      assert.equal((await fs.stat({ path: "rel.txt" })).entry?.path, join(user.home, "rel.txt"));
    });

    test("bad input: missing path, unknown file, unknown user, malformed Authorization", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      await rejectsWith(fs.stat({ path: "" }, auth), Code.InvalidArgument, /path is required/);
      await rejectsWith(
        fs.stat({ path: join(dir, "nope") }, auth),
        Code.NotFound,
        /does not exist/,
      );
      await rejectsWith(
        fs.stat({ path: dir }, { headers: { authorization: basicAuth("no-such-user-wrenn") } }),
        Code.Unauthenticated,
        /no-such-user-wrenn/,
      );
      await rejectsWith(
        fs.stat({ path: dir }, { headers: { authorization: "Bearer x" } }),
        Code.Unauthenticated,
      );
      await rejectsWith(fs.listDir({ path: join(dir, "nope") }, auth), Code.NotFound);
      await rejectsWith(fs.move({ source: "", destination: "x" }, auth), Code.InvalidArgument);
    });

    test("MakeDir creates parents owned by the user, then reports AlreadyExists", async (t) => {
      const { fs, dir, user, auth } = await setup(t, binary);
      const path = join(dir, "x", "y", "z");
      const { entry } = await fs.makeDir({ path }, auth);
      assert.equal(entry?.type, FileType.DIRECTORY);
      assert.equal(entry?.path, path);
      for (const p of [join(dir, "x"), join(dir, "x", "y"), path]) {
        assert.equal((await stat(p)).uid, user.uid, `${p} belongs to the user`);
      }
      // The existing parent keeps its owner.
      assert.equal((await stat(dir)).uid, process.getuid?.());
      await rejectsWith(fs.makeDir({ path }, auth), Code.AlreadyExists);
      await writeFile(join(dir, "f"), "");
      await rejectsWith(
        fs.makeDir({ path: join(dir, "f") }, auth),
        Code.InvalidArgument,
        /not a directory/,
      );
    });

    test("Move renames into new parent directories and returns the new entry", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      await writeFile(join(dir, "from.txt"), "data");
      const { entry } = await fs.move(
        { source: join(dir, "from.txt"), destination: join(dir, "new", "to.txt") },
        auth,
      );
      assert.equal(entry?.path, join(dir, "new", "to.txt"));
      assert.equal(entry?.size, 4n);
      assert.equal(await readFile(join(dir, "new", "to.txt"), "utf8"), "data");
      await assert.rejects(lstat(join(dir, "from.txt")));
      await rejectsWith(
        fs.move({ source: join(dir, "gone"), destination: join(dir, "x") }, auth),
        Code.NotFound,
      );
    });

    test("ListDir: depth 0 and 1 list direct children, deeper depths descend", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      await mkdir(join(dir, "a", "b", "c"), { recursive: true });
      await writeFile(join(dir, "a", "f1"), "1");
      await writeFile(join(dir, "a", "b", "f2"), "22");
      await writeFile(join(dir, "a", "b", "c", "f3"), "333");
      await symlink(join(dir, "a"), join(dir, "a", "b", "loop"));
      const names = async (depth: number): Promise<string[]> =>
        (await fs.listDir({ path: join(dir, "a"), depth }, auth)).entries.map((e) =>
          e.path.slice(dir.length + 3),
        );
      assert.deepEqual(await names(0), ["b", "f1"]);
      assert.deepEqual(await names(1), ["b", "f1"]);
      assert.deepEqual(await names(2), ["b", "b/c", "b/f2", "b/loop", "f1"]);
      assert.deepEqual(await names(5), ["b", "b/c", "b/c/f3", "b/f2", "b/loop", "f1"]);
      const entries = (await fs.listDir({ path: join(dir, "a"), depth: 2 }, auth)).entries;
      assert.equal(entries.find((e) => e.name === "f2")?.size, 2n);
      assert.equal(entries.find((e) => e.name === "loop")?.type, FileType.SYMLINK);
      await rejectsWith(
        fs.listDir({ path: join(dir, "a", "f1") }, auth),
        Code.InvalidArgument,
        /not a directory/,
      );
    });

    test("Remove deletes files and whole trees; a missing path is NotFound", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      await mkdir(join(dir, "t", "u"), { recursive: true });
      await writeFile(join(dir, "t", "u", "f"), "x");
      await writeFile(join(dir, "g"), "x");
      await fs.remove({ path: join(dir, "g") }, auth);
      await fs.remove({ path: join(dir, "t") }, auth);
      await assert.rejects(lstat(join(dir, "g")));
      await assert.rejects(lstat(join(dir, "t")));
      await rejectsWith(fs.remove({ path: join(dir, "t") }, auth), Code.NotFound);
    });

    test("WatchDir streams start, then CREATE/WRITE/CHMOD/RENAME/REMOVE, and keepalives", async (t) => {
      const { fs, dir, envd, auth } = await setup(t, binary);
      const abort = new AbortController();
      t.after(() => abort.abort());
      const stream = fs.watchDir(
        { path: dir, includeEntry: true },
        { headers: { ...auth.headers, "keepalive-ping-interval": "1" }, signal: abort.signal },
      );
      const { items, done } = collect(stream);
      await eventually(() => items.length > 0, 5000, "the start event");
      assert.equal(items[0]?.event.case, "start");
      const file = join(dir, "w.txt");
      const step = async (
        what: string,
        expected: [EventType, string][],
        act: () => Promise<void>,
      ): Promise<void> => {
        const seen = fsEvents(items).length;
        await act();
        await eventually(
          () => hasSequence(fsEvents(items).slice(seen), expected),
          5000,
          what,
        ).catch(() => assert.fail(`${what}: got ${describeEvents(fsEvents(items))}`));
      };
      await step("create", [[EventType.CREATE, "w.txt"]], () => writeFile(file, "one"));
      await step("write", [[EventType.WRITE, "w.txt"]], () => appendFile(file, "two"));
      await step("chmod", [[EventType.CHMOD, "w.txt"]], () => chmod(file, 0o600));
      await step(
        "rename",
        [
          [EventType.RENAME, "w.txt"],
          [EventType.CREATE, "w2.txt"],
        ],
        () => rename(file, join(dir, "w2.txt")),
      );
      await step("remove", [[EventType.REMOVE, "w2.txt"]], () => rm(join(dir, "w2.txt")));
      const created = fsEvents(items).find((e) => e.type === EventType.CREATE);
      assert.equal(created?.entry?.path, file, "includeEntry attaches the entry");
      await eventually(() => items.some((i) => i.event.case === "keepalive"), 3000, "a keepalive");
      assert.equal(envd.watchers.size, 1);
      abort.abort();
      await done;
      await eventually(
        () => envd.watchers.size === 0,
        2000,
        "the watcher to close with the stream",
      );
    });

    test("WatchDir keeps the order of a fast burst: create, write, rename, remove", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      const abort = new AbortController();
      t.after(() => abort.abort());
      const { items, done } = collect(
        fs.watchDir({ path: dir }, { ...auth, signal: abort.signal }),
      );
      await eventually(() => items.length > 0, 5000, "the start event");
      await writeFile(join(dir, "x"), "data");
      await rename(join(dir, "x"), join(dir, "y"));
      await rm(join(dir, "y"));
      const expected: [EventType, string][] = [
        [EventType.CREATE, "x"],
        [EventType.WRITE, "x"],
        [EventType.RENAME, "x"],
        [EventType.CREATE, "y"],
        [EventType.REMOVE, "y"],
      ];
      await eventually(() => hasSequence(fsEvents(items), expected), 5000, "the burst").catch(() =>
        assert.fail(`got ${describeEvents(fsEvents(items))}`),
      );
      abort.abort();
      await done;
    });

    test("WatchDir recursive sees subdirectories, including ones created while watching", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      await mkdir(join(dir, "old"));
      const abort = new AbortController();
      t.after(() => abort.abort());
      const { items, done } = collect(
        fs.watchDir({ path: dir, recursive: true }, { ...auth, signal: abort.signal }),
      );
      await eventually(() => items.length > 0, 5000, "the start event");
      await writeFile(join(dir, "old", "a"), "x");
      await mkdir(join(dir, "new"));
      await eventually(
        () => hasSequence(fsEvents(items), [[EventType.CREATE, "new"]]),
        5000,
        "new dir",
      );
      await writeFile(join(dir, "new", "b"), "y");
      await eventually(
        () =>
          hasSequence(fsEvents(items), [[EventType.CREATE, "old/a"]]) &&
          hasSequence(fsEvents(items), [[EventType.CREATE, "new/b"]]),
        5000,
        "events from subdirectories",
      ).catch(() => assert.fail(`got ${describeEvents(fsEvents(items))}`));
      abort.abort();
      await done;
    });

    test("WatchDir without recursive ignores subdirectories; a file path is refused", async (t) => {
      const { fs, dir, auth } = await setup(t, binary);
      await mkdir(join(dir, "sub"));
      await writeFile(join(dir, "plain"), "");
      const abort = new AbortController();
      t.after(() => abort.abort());
      const { items, done } = collect(
        fs.watchDir({ path: dir }, { ...auth, signal: abort.signal }),
      );
      await eventually(() => items.length > 0, 5000, "the start event");
      await writeFile(join(dir, "sub", "inner"), "x");
      await writeFile(join(dir, "top"), "x");
      await eventually(
        () => hasSequence(fsEvents(items), [[EventType.CREATE, "top"]]),
        5000,
        "top-level event",
      );
      assert.equal(
        fsEvents(items).some((e) => e.name.startsWith("sub/")),
        false,
      );
      abort.abort();
      await done;
      const bad = collect(fs.watchDir({ path: join(dir, "plain") }, auth));
      const err = await bad.done;
      assert.ok(err instanceof ConnectError && err.code === Code.InvalidArgument, String(err));
      const missing = await collect(fs.watchDir({ path: join(dir, "nope") }, auth)).done;
      assert.ok(missing instanceof ConnectError && missing.code === Code.NotFound, String(missing));
    });

    test("CreateWatcher / GetWatcherEvents / RemoveWatcher poll events; unknown ids are NotFound", async (t) => {
      const { fs, dir, envd, auth } = await setup(t, binary);
      const { watcherId } = await fs.createWatcher(
        { path: dir, recursive: true, includeEntry: true },
        auth,
      );
      assert.ok(watcherId.length > 0);
      assert.equal(envd.watchers.size, 1);
      await writeFile(join(dir, "p.txt"), "x");
      const seen: FilesystemEvent[] = [];
      await eventually(
        async () => {
          seen.push(...(await fs.getWatcherEvents({ watcherId }, auth)).events);
          return hasSequence(seen, [[EventType.CREATE, "p.txt"]]);
        },
        5000,
        "polled CREATE",
      );
      assert.equal(seen.find((e) => e.type === EventType.CREATE)?.entry?.name, "p.txt");
      // Drained: with nothing new, the next poll is empty.
      await new Promise((r) => setTimeout(r, 50));
      await fs.getWatcherEvents({ watcherId }, auth);
      assert.deepEqual((await fs.getWatcherEvents({ watcherId }, auth)).events, []);
      await fs.removeWatcher({ watcherId }, auth);
      assert.equal(envd.watchers.size, 0);
      await rejectsWith(fs.getWatcherEvents({ watcherId }, auth), Code.NotFound, /does not exist/);
      await rejectsWith(fs.removeWatcher({ watcherId }, auth), Code.NotFound);
      await rejectsWith(fs.getWatcherEvents({ watcherId: "" }, auth), Code.InvalidArgument);
      await rejectsWith(fs.createWatcher({ path: join(dir, "p.txt") }, auth), Code.InvalidArgument);
      await rejectsWith(fs.createWatcher({ path: join(dir, "nope") }, auth), Code.NotFound);
    });

    test("once /init set a token, RPCs without X-Access-Token are refused", async (t) => {
      const { fs, dir, envd, auth } = await setup(t, binary);
      envd.context.state.accessToken = "s3cret";
      await rejectsWith(fs.stat({ path: dir }, auth), Code.Unauthenticated, /X-Access-Token/);
      for (const wrong of ["wrong", "s3cre", "s3cret!", "s3creT", "S3cret"]) {
        await rejectsWith(
          fs.stat({ path: dir }, { headers: { ...auth.headers, "x-access-token": wrong } }),
          Code.Unauthenticated,
        );
      }
      const ok = await fs.stat(
        { path: dir },
        { headers: { ...auth.headers, "x-access-token": "s3cret" } },
      );
      assert.equal(ok.entry?.path, dir);
    });
  });
}
