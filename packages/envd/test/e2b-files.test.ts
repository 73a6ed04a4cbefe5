// The official e2b SDK, unmodified, against envd: E2B_DEBUG makes it talk
// straight to http://localhost:49983, which e2b-harness.ts provides.
process.env.E2B_DEBUG = "true";

import { after, before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { FileType, Sandbox, type FilesystemEvent } from "e2b";
import { createLogger } from "@wrenn/shared/log.ts";
import type { Envd } from "../src/server.ts";
import { ENVD_VERSION } from "../src/state.ts";
import { lookupUser, type LinuxUser } from "../src/users.ts";
import { startEnvdForE2b } from "./e2b-harness.ts";
import { eventually, fileScope, isRoot, tempDir, tempUser } from "./filesystem-fixtures.ts";

const log = createLogger("envd-test", "warn");

interface Fixture {
  envd: Envd;
  dir: string;
  user: LinuxUser;
  sandbox: Sandbox;
}

// One envd on :49983 for the whole file: other files need the port too, so
// it is taken once and given back at the end rather than per test.
const scope = fileScope();
let shared: { envd: Envd; root: string; user: LinuxUser } | undefined;
let seq = 0;

before(async () => {
  const root = await tempDir(scope, "wrenn-e2b-");
  const user = isRoot ? await tempUser(scope, root) : await lookupUser(userInfo().username);
  const envd = await startEnvdForE2b({ defaultUser: user.name, log });
  scope.after(() => envd.close());
  shared = { envd, root, user };
});

after(() => scope.run());

/** A fresh directory and a clean envd state, and an SDK sandbox that reports our envd version. */
async function setup(_t: TestContext, envdAccessToken?: string): Promise<Fixture> {
  assert.ok(shared, "envd did not start");
  const { envd, root, user } = shared;
  Object.assign(envd.context.state, { accessToken: undefined, defaultUser: user.name });
  const dir = join(root, `t${seq++}`);
  await mkdir(dir);
  // Sandbox.create() in debug mode claims envd 99.99.99; the constructor lets
  // the SDK gate its features on the version we really report.
  const sandbox = new Sandbox({
    sandboxId: "wrenntest",
    envdVersion: ENVD_VERSION,
    envdAccessToken,
  });
  return { envd, dir, user, sandbox };
}

describe("e2b SDK files against envd", () => {
  test("Sandbox.create() in debug mode reaches envd", async (t) => {
    const f = await setup(t);
    const sbx = await Sandbox.create();
    await sbx.files.write(join(f.dir, "hello.txt"), "hi from the sdk");
    assert.equal(await sbx.files.read(join(f.dir, "hello.txt")), "hi from the sdk");
  });

  test("write, read (text, bytes, blob, stream, gzip), getInfo and ownership", async (t) => {
    const { sandbox, dir, user } = await setup(t);
    const path = join(dir, "nested", "note.txt");
    const info = await sandbox.files.write(path, "hello e2b");
    assert.equal(info.path, path);
    assert.equal(info.name, "note.txt");
    assert.equal(info.type, FileType.FILE);
    assert.equal(await sandbox.files.read(path), "hello e2b");
    assert.deepEqual(
      Buffer.from(await sandbox.files.read(path, { format: "bytes" })),
      Buffer.from("hello e2b"),
    );
    assert.equal(await (await sandbox.files.read(path, { format: "blob" })).text(), "hello e2b");
    const stream = await sandbox.files.read(path, { format: "stream" });
    assert.equal(await new Response(stream).text(), "hello e2b");
    assert.equal(await sandbox.files.read(path, { gzip: true }), "hello e2b");
    assert.equal((await stat(path)).uid, user.uid, "the default user owns what the SDK writes");

    const entry = await sandbox.files.getInfo(path);
    assert.equal(entry.type, FileType.FILE);
    assert.equal(entry.size, 9);
    assert.equal(entry.owner, user.name);
    assert.match(entry.permissions, /^-rw/);
    assert.ok(
      entry.modifiedTime instanceof Date &&
        Math.abs(entry.modifiedTime.getTime() - Date.now()) < 60_000,
    );

    // Relative paths land in the user's home.
    await sandbox.files.write("in-home.txt", "home");
    assert.equal(await readFile(join(user.home, "in-home.txt"), "utf8"), "home");
  });

  test("octet-stream and gzip uploads, streams, empty files and several files at once", async (t) => {
    const { sandbox, dir } = await setup(t);
    const data = new Uint8Array(3 << 20).map((_, i) => i % 251);
    await sandbox.files.write(join(dir, "gz.bin"), data.buffer, { gzip: true });
    assert.deepEqual(new Uint8Array(await readFile(join(dir, "gz.bin"))), data);
    await sandbox.files.write(join(dir, "raw.bin"), data.buffer, { useOctetStream: true });
    assert.equal((await stat(join(dir, "raw.bin"))).size, data.length);
    const body = new Blob([data]).stream();
    await sandbox.files.write(join(dir, "streamed.bin"), body);
    assert.equal((await stat(join(dir, "streamed.bin"))).size, data.length);
    await sandbox.files.write(join(dir, "empty.txt"), "");
    assert.equal(await sandbox.files.read(join(dir, "empty.txt")), "");
    const many = await sandbox.files.write([
      { path: join(dir, "m", "a.txt"), data: "A" },
      { path: join(dir, "m", "b.txt"), data: "B" },
    ]);
    assert.deepEqual(
      many.map((w) => w.path),
      [join(dir, "m", "a.txt"), join(dir, "m", "b.txt")],
    );
    assert.equal(await readFile(join(dir, "m", "b.txt"), "utf8"), "B");
  });

  test("list, exists, makeDir, rename and remove", async (t) => {
    const { sandbox, dir } = await setup(t);
    assert.equal(await sandbox.files.makeDir(join(dir, "d", "e")), true);
    assert.equal(await sandbox.files.makeDir(join(dir, "d", "e")), false);
    await sandbox.files.write(join(dir, "d", "f.txt"), "f");
    const names = (await sandbox.files.list(join(dir, "d"))).map((e) => `${e.name}:${e.type}`);
    assert.deepEqual(names, ["e:dir", "f.txt:file"]);
    const deep = await sandbox.files.list(join(dir, "d"), { depth: 2 });
    assert.equal(deep.length, 2);
    assert.equal(await sandbox.files.exists(join(dir, "d", "f.txt")), true);
    assert.equal(await sandbox.files.exists(join(dir, "d", "nope")), false);
    const moved = await sandbox.files.rename(join(dir, "d", "f.txt"), join(dir, "d", "e", "g.txt"));
    assert.equal(moved.path, join(dir, "d", "e", "g.txt"));
    assert.equal(await sandbox.files.exists(join(dir, "d", "f.txt")), false);
    await sandbox.files.remove(join(dir, "d"));
    assert.equal(await sandbox.files.exists(join(dir, "d")), false);
    await assert.rejects(sandbox.files.read(join(dir, "d", "e", "g.txt")), {
      name: "FileNotFoundError",
    });
    await assert.rejects(sandbox.files.list(join(dir, "nope")), { name: "FileNotFoundError" });
  });

  test("file metadata round-trips through write, getInfo and list", async (t) => {
    const { sandbox, dir } = await setup(t);
    const path = join(dir, "tagged.txt");
    const written = await sandbox.files.write(path, "x", {
      metadata: { team: "search", run: "7" },
    });
    assert.deepEqual(written.metadata, { team: "search", run: "7" });
    assert.deepEqual((await sandbox.files.getInfo(path)).metadata, { team: "search", run: "7" });
    const listed = await sandbox.files.list(dir);
    assert.deepEqual(listed.find((e) => e.name === "tagged.txt")?.metadata, {
      team: "search",
      run: "7",
    });
    assert.equal(listed.find((e) => e.name !== "tagged.txt")?.metadata, undefined);
  });

  test("watchDir reports create, write and remove events", async (t) => {
    const { sandbox, dir } = await setup(t);
    const events: FilesystemEvent[] = [];
    const handle = await sandbox.files.watchDir(dir, (e) => void events.push(e), {
      recursive: true,
    });
    t.after(() => handle.stop());
    await writeFile(join(dir, "watched.txt"), "1");
    await sandbox.files.remove(join(dir, "watched.txt"));
    await eventually(
      () =>
        ["create", "write", "remove"].every((type) =>
          events.some((e) => e.type === type && e.name === "watched.txt"),
        ),
      5000,
      "watch events",
    ).catch(() => assert.fail(`got ${events.map((e) => `${e.type}:${e.name}`).join(" ")}`));
    await handle.stop();
  });

  test("secured sandbox: the token is enforced and signed download/upload URLs work", async (t) => {
    const token = "e2b-token-for-test";
    const f = await setup(t, token);
    const init = await fetch("http://localhost:49983/init", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ accessToken: token }),
    });
    assert.equal(init.status, 204);
    const path = join(f.dir, "secret.txt");
    await f.sandbox.files.write(path, "top secret");
    assert.equal(await f.sandbox.files.read(path), "top secret");

    const unsigned = new Sandbox({ sandboxId: "wrenntest", envdVersion: ENVD_VERSION });
    await assert.rejects(unsigned.files.read(path), { name: "AuthenticationError" });

    const download = await f.sandbox.downloadUrl(path);
    assert.match(download, /signature=v1_/);
    assert.equal(await (await fetch(download)).text(), "top secret");
    const expiring = await f.sandbox.downloadUrl(path, { useSignatureExpiration: 60 });
    assert.match(expiring, /signature_expiration=/);
    assert.equal(await (await fetch(expiring)).text(), "top secret");

    const upload = await f.sandbox.uploadUrl(join(f.dir, "up.txt"));
    const form = new FormData();
    form.append("file", new Blob(["uploaded via signed url"]), "up.txt");
    const res = await fetch(upload, { method: "POST", body: form });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(await readFile(join(f.dir, "up.txt"), "utf8"), "uploaded via signed url");
    // A download signature does not let anyone upload.
    const forged = await fetch(download, { method: "POST", body: form });
    assert.equal(forged.status, 401);
  });
});
