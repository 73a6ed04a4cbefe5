import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { gunzipSync, gzipSync } from "node:zlib";
import { getAttribute } from "@napi-rs/xattr";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { loadClockAddon } from "@wrenn/clock";
import { Filesystem } from "@wrenn/proto/filesystem/filesystem_pb.js";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { fileSignature } from "../src/http/auth.ts";
import { clockSetter, syncClock } from "../src/http/clock.ts";
import { wantsGzip } from "../src/http/files.ts";
import { isHostname, setHostname } from "../src/http/hostname.ts";
import { parseInit } from "../src/http/init.ts";
import { KEEP_ALIVE_MS, startEnvd, type Envd } from "../src/server.ts";
import { ENVD_VERSION } from "../src/state.ts";
import { lookupUser, type LinuxUser } from "../src/users.ts";
import { isRoot, tempDir, tempUser } from "./filesystem-fixtures.ts";

const log = createLogger("envd-test", "warn");

interface Fixture {
  envd: Envd;
  dir: string;
  user: LinuxUser;
  url: (path: string, query?: Record<string, string>) => string;
}

async function setup(t: TestContext): Promise<Fixture> {
  const dir = await tempDir(t, "wrenn-http-");
  const user = isRoot ? await tempUser(t, dir) : await lookupUser(userInfo().username);
  const envd = await startEnvd({ port: 0, host: "127.0.0.1", defaultUser: user.name, log });
  t.after(() => envd.close());
  const url = (path: string, query: Record<string, string> = {}): string => {
    const u = new URL(path, envd.url);
    for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
    return u.toString();
  };
  return { envd, dir, user, url };
}

async function expectError(res: Response, status: number, message?: RegExp): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${text}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = JSON.parse(text) as { code: number; message: string };
  assert.equal(body.code, status);
  assert.equal(typeof body.message, "string");
  if (message) assert.match(body.message, message);
}

function postInit(
  f: Fixture,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(f.url("/init"), {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("envd HTTP routes", () => {
  test("GET /health is 204 with the envd version in a header; /version has it as JSON", async (t) => {
    const f = await setup(t);
    const res = await fetch(f.url("/health"));
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("x-envd-version"), ENVD_VERSION);
    // A warm pool entry's connection outlives its wait for a claim (an hour).
    assert.equal(res.headers.get("keep-alive"), `timeout=${KEEP_ALIVE_MS / 1000}`);
    assert.ok(KEEP_ALIVE_MS >= 3_600_000);
    assert.equal(await res.text(), "");
    const version = await fetch(f.url("/version"));
    assert.deepEqual(await version.json(), { version: ENVD_VERSION });
    await expectError(await fetch(f.url("/nope")), 404, /no route/);
  });

  test("POST /init sets env vars, default user and workdir, and the access token", async (t) => {
    const f = await setup(t);
    const { state } = f.envd.context;
    let res = await postInit(f, {
      envVars: { A: "1", B: "2" },
      defaultUser: "root",
      defaultWorkdir: "/tmp",
      timestamp: new Date().toISOString(),
    });
    assert.equal(res.status, 204);
    assert.deepEqual(state.envVars, { A: "1", B: "2" });
    assert.equal(state.defaultUser, "root");
    assert.equal(state.defaultWorkdir, "/tmp");
    assert.equal(state.accessToken, undefined);
    // Later calls (after a resume) merge env vars.
    res = await postInit(f, { envVars: { B: "3", C: "4" }, accessToken: "tok" });
    assert.equal(res.status, 204);
    assert.deepEqual(state.envVars, { A: "1", B: "3", C: "4" });
    assert.equal(state.accessToken, "tok");
    // From now on /init itself needs the token.
    await expectError(await postInit(f, {}), 401, /X-Access-Token/);
    res = await postInit(f, { defaultUser: f.user.name }, { "x-access-token": "tok" });
    assert.equal(res.status, 204);
    assert.equal(state.defaultUser, f.user.name);
    // /health stays open for the host's liveness probe.
    assert.equal((await fetch(f.url("/health"))).status, 204);
  });

  test("POST /init checks a default user it was not told before, envd's own too", async (t) => {
    // envd's own default is not checked at its start: the first /init naming it is.
    const envd = await startEnvd({
      port: 0,
      host: "127.0.0.1",
      defaultUser: "no-such-user-wrenn",
      log,
    });
    t.after(() => envd.close());
    const f = { url: (path: string) => new URL(path, envd.url).toString() } as Fixture;
    await expectError(await postInit(f, { defaultUser: "no-such-user-wrenn" }), 400, /defaultUser/);
    const name = userInfo().username;
    assert.equal((await postInit(f, { defaultUser: name })).status, 204);
    // Named again (every claim does): taken as checked.
    assert.equal((await postInit(f, { defaultUser: name })).status, 204);
    assert.equal(envd.context.state.defaultUser, name);
  });

  test("POST /init refuses bad bodies with 400", async (t) => {
    const f = await setup(t);
    await expectError(await postInit(f, "{not json"), 400, /not JSON/);
    await expectError(await postInit(f, [1]), 400, /object/);
    await expectError(await postInit(f, { envVars: { A: 1 } }), 400, /envVars.A/);
    await expectError(await postInit(f, { accessToken: 5 }), 400, /accessToken/);
    await expectError(await postInit(f, { timestamp: "yesterday-ish" }), 400, /timestamp/);
    await expectError(await postInit(f, { defaultUser: "no-such-user-wrenn" }), 400, /defaultUser/);
    await expectError(await postInit(f, { entropy: 5 }), 400, /entropy must be a string/);
    await expectError(await postInit(f, { hostname: 7 }), 400, /hostname must be a string/);
    for (const name of ["", "-lead", "trail-", "under_score", "a..b", "a".repeat(64), "x y"]) {
      await expectError(
        await postInit(f, { hostname: name }),
        400,
        /is not a valid host name: up to 64 characters/,
      );
    }
    for (const mangled of ["not base64!", "QUI", "QUJD\nREVG", "QU=D", "-_-_"]) {
      await expectError(
        await postInit(f, { entropy: mangled }),
        400,
        /entropy is not valid base64/,
      );
    }
    for (const size of [0, 16, 31, 513]) {
      await expectError(
        await postInit(f, { entropy: randomBytes(size).toString("base64") }),
        400,
        new RegExp(`entropy decodes to ${size} bytes: expected 32 to 512`),
      );
    }
    assert.equal(f.envd.context.state.accessToken, undefined);
  });

  test("parseInit decodes entropy of 32 to 512 bytes and leaves it out when absent", () => {
    for (const size of [32, 64, 512]) {
      const bytes = randomBytes(size);
      assert.deepEqual(
        Buffer.from(parseInit(JSON.stringify({ entropy: bytes.toString("base64") })).entropy ?? []),
        bytes,
      );
    }
    assert.equal(parseInit(JSON.stringify({ entropy: null })).entropy, undefined);
    assert.equal("entropy" in parseInit("{}"), false);
  });

  test("parseInit takes a hostname of RFC 1123 labels", () => {
    for (const name of [
      "minimal",
      "i3k2j9x0",
      "a-b.example",
      "A1",
      "x".repeat(63),
      `${"a".repeat(31)}.${"b".repeat(32)}`,
    ]) {
      assert.equal(parseInit(JSON.stringify({ hostname: name })).hostname, name);
      assert.ok(isHostname(name));
    }
    // The kernel takes 64 bytes at most.
    assert.equal(isHostname(`${"a".repeat(32)}.${"b".repeat(32)}`), false, "65 characters");
    assert.equal(isHostname(`${"a".repeat(63)}.`.repeat(4) + "abc"), false, "over 253 characters");
    assert.equal("hostname" in parseInit("{}"), false);
  });

  // The addon's real /etc writes on a scratch dir; the kernel's rename is a
  // stand-in (the host's own name must not change; the addon's sethostname
  // is tested in a UTS namespace of its own, packages/clock/test).
  test("setHostname names the kernel, /etc/hostname and the 127.0.1.1 line, as root, once", async (t) => {
    const etc = await mkdtemp(join(tmpdir(), "wrenn-hostname-"));
    t.after(() => rm(etc, { recursive: true, force: true }));
    const named: string[] = [];
    const kernel = (n: string) => void named.push(n);
    const hosts = "127.0.0.1\tlocalhost\n127.0.1.1\tminimal\n::1\tlocalhost ip6-localhost\n";
    await writeFile(join(etc, "hosts"), hosts);
    assert.equal(
      setHostname("sb1", log, { kernel, etc, current: "minimal", isRoot: true }),
      "minimal",
    );
    assert.deepEqual(named, ["sb1"]);
    assert.equal(await readFile(join(etc, "hostname"), "utf8"), "sb1\n");
    assert.equal(
      await readFile(join(etc, "hosts"), "utf8"),
      "127.0.0.1\tlocalhost\n127.0.1.1\tsb1\n::1\tlocalhost ip6-localhost\n",
    );
    // The kernel has it already, or the caller is not root: nothing is written.
    await rm(join(etc, "hostname"));
    assert.equal(setHostname("sb1", log, { kernel, etc, current: "sb1", isRoot: true }), undefined);
    assert.equal(
      setHostname("sb2", log, { kernel, etc, current: "sb1", isRoot: false }),
      undefined,
    );
    assert.deepEqual(named, ["sb1"]);
    await assert.rejects(readFile(join(etc, "hostname")), { code: "ENOENT" });
    // A hosts file without the line gets one, with or without a last newline; a missing one is made.
    for (const [before, after] of [
      ["127.0.0.1 localhost\n", "127.0.0.1 localhost\n127.0.1.1\tb\n"],
      ["127.0.0.1 localhost", "127.0.0.1 localhost\n127.0.1.1\tb"],
      ["127.0.1.10 x\n127.0.1.1 a\n127.0.1.1 c\n", "127.0.1.10 x\n127.0.1.1\tb\n127.0.1.1 c\n"],
    ] as const) {
      await writeFile(join(etc, "hosts"), before);
      setHostname("b", log, { kernel, etc, current: "a", isRoot: true });
      assert.equal(await readFile(join(etc, "hosts"), "utf8"), after, JSON.stringify(before));
    }
    await rm(join(etc, "hosts"));
    assert.equal(setHostname("sb3", log, { kernel, etc, current: "sb1", isRoot: true }), "sb1");
    assert.equal(
      await readFile(join(etc, "hosts"), "utf8"),
      "127.0.0.1\tlocalhost\n127.0.1.1\tsb3\n",
    );
    // /etc that cannot take it is logged; the kernel's name is what counts.
    const none = join(etc, "none");
    assert.equal(
      setHostname("sb4", log, { kernel, etc: none, current: "sb3", isRoot: true }),
      "sb3",
    );
    assert.equal(named.at(-1), "sb4");
    const refused = () => {
      throw Object.assign(new Error("sethostname: Operation not permitted"), { code: "EPERM" });
    };
    assert.throws(
      () => setHostname("sb5", log, { kernel: refused, etc, current: "sb4", isRoot: true }),
      /setting the hostname to 'sb5': sethostname: Operation not permitted/,
    );
    // Without the addon the guest keeps its name, and envd goes on.
    const loaded = { addon: null, error: "not built" };
    assert.equal(
      setHostname("sb6", log, { kernel, etc, current: "sb4", isRoot: true, loaded }),
      undefined,
    );
    assert.equal(named.at(-1), "sb4");
  });

  test("syncClock sets the clock as root only when it is off by more than a little", async () => {
    const set: number[] = [];
    const setClock = (ms: number) => void set.push(ms);
    const now = Date.UTC(2026, 0, 1);
    assert.equal(await syncClock(new Date(now + 10), log, { setClock, now, isRoot: true }), false);
    assert.equal(
      await syncClock(new Date(now + 10_000), log, { setClock, now, isRoot: false }),
      false,
    );
    assert.equal(
      await syncClock(new Date(now + 10_500), log, { setClock, now, isRoot: true }),
      true,
    );
    assert.deepEqual(set, [now + 10_500]);
  });

  test("the clock is set through the addon, and through date -s only without it", async () => {
    const calls: string[][] = [];
    const runner: Runner = async (cmd, args) => {
      calls.push([cmd, ...args]);
      return { stdout: "", stderr: "" };
    };
    const ms = Date.UTC(2026, 0, 1, 0, 0, 10, 500);
    await clockSetter(log, runner, { addon: null, error: "not built" })(ms);
    assert.deepEqual(calls, [["date", "-u", "-s", `@${(ms / 1000).toFixed(3)}`]]);
    const viaAddon: number[] = [];
    await clockSetter(log, runner, {
      addon: {
        setRealtime: (t) => void viaAddon.push(t),
        reseedRandom: () => undefined,
        setHostname: () => undefined,
        recordHostname: () => undefined,
      },
    })(ms);
    assert.deepEqual(viaAddon, [ms]);
    assert.equal(calls.length, 1, "no process when the addon is there");
    // The addon envd ships is built and loads.
    assert.equal(loadClockAddon().error, undefined);
  });

  test("GET /files streams a file, gzipped on request; relative paths use the user's home", async (t) => {
    const f = await setup(t);
    const data = Buffer.alloc(300_000, "wrenn ");
    await writeFile(join(f.dir, "big.txt"), data);
    let res = await fetch(f.url("/files", { path: join(f.dir, "big.txt") }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), String(data.length));
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
    // fetch decodes gzip itself; rawGet below shows the bytes on the wire.
    res = await fetch(f.url("/files", { path: join(f.dir, "big.txt") }), {
      headers: { "accept-encoding": "gzip" },
    });
    assert.equal(res.headers.get("content-encoding"), "gzip");
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
    const raw = await rawGet(f.url("/files", { path: join(f.dir, "big.txt") }), {
      "accept-encoding": "gzip",
    });
    assert.ok(raw.length < data.length / 10, "the body is compressed on the wire");
    assert.deepEqual(gunzipSync(raw), data);

    await writeFile(join(f.user.home, "mine.txt"), "home");
    res = await fetch(f.url("/files", { path: "mine.txt", username: f.user.name }));
    assert.equal(await res.text(), "home");
    res = await fetch(f.url("/files", { path: "mine.txt" }));
    assert.equal(await res.text(), "home", "the default user applies without username");
  });

  test("GET /files streams what a FIFO gives, chunked, and empty files; a client that hangs up leaves no fd open", async (t) => {
    const f = await setup(t);
    const fifo = join(f.dir, "pipe");
    await runCommand("mkfifo", [fifo]);
    const writer = writeFile(fifo, "through a fifo\n");
    const res = await fetch(f.url("/files", { path: fifo }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), null);
    assert.equal(await res.text(), "through a fifo\n");
    await writer;
    await writeFile(join(f.dir, "empty"), "");
    const empty = await fetch(f.url("/files", { path: join(f.dir, "empty") }));
    assert.equal(empty.headers.get("content-length"), "0");
    assert.equal(await empty.text(), "");

    const big = join(f.dir, "big.bin");
    await writeFile(big, Buffer.alloc(64 << 20, 7));
    const fds = async () => (await readdir("/proc/self/fd")).length;
    const before = await fds();
    await new Promise<void>((resolve, reject) => {
      const req = request(f.url("/files", { path: big }), (r) => {
        r.once("data", () => {
          req.destroy();
          resolve();
        });
      });
      req.on("error", (err) => (req.destroyed ? undefined : reject(err)));
      req.end();
    });
    for (let i = 0; (await fds()) > before; i++) {
      assert.ok(
        i < 200,
        `envd still holds ${(await fds()) - before} more fds after the client left`,
      );
      await sleep(25);
    }
  });

  test("gzip is used only when the client asks for gzip alone", () => {
    assert.equal(wantsGzip("gzip"), true);
    assert.equal(wantsGzip("gzip;q=1, identity;q=0.5"), true);
    assert.equal(wantsGzip("gzip, deflate"), false, "fetch's default offer");
    assert.equal(wantsGzip("gzip;q=0"), false);
    assert.equal(wantsGzip(undefined), false);
  });

  test("GET /files errors: 400 without path or on a directory, 404 missing, 401 unknown user", async (t) => {
    const f = await setup(t);
    await expectError(await fetch(f.url("/files")), 400, /path/);
    await expectError(await fetch(f.url("/files", { path: f.dir })), 400, /directory/);
    await expectError(
      await fetch(f.url("/files", { path: join(f.dir, "nope") })),
      404,
      /does not exist/,
    );
    await expectError(
      await fetch(f.url("/files", { path: f.dir, username: "no-such-user-wrenn" })),
      401,
      /no-such-user-wrenn/,
    );
  });

  test("POST /files multipart writes each part, creating parents owned by the user", async (t) => {
    const f = await setup(t);
    const form = new FormData();
    form.append("file", new Blob(["first"]), join(f.dir, "up", "deep", "one.txt"));
    form.append("file", new Blob(["second"]), "rel/two.txt");
    form.append("note", "ignored field");
    const res = await fetch(f.url("/files", { username: f.user.name }), {
      method: "POST",
      body: form,
    });
    assert.equal(res.status, 200, await res.clone().text());
    const written = (await res.json()) as { name: string; type: string; path: string }[];
    assert.deepEqual(written, [
      { name: "one.txt", type: "file", path: join(f.dir, "up", "deep", "one.txt") },
      { name: "two.txt", type: "file", path: join(f.user.home, "rel", "two.txt") },
    ]);
    assert.equal(await readFile(join(f.dir, "up", "deep", "one.txt"), "utf8"), "first");
    assert.equal(await readFile(join(f.user.home, "rel", "two.txt"), "utf8"), "second");
    for (const p of [
      join(f.dir, "up"),
      join(f.dir, "up", "deep"),
      join(f.dir, "up", "deep", "one.txt"),
    ]) {
      assert.equal((await stat(p)).uid, f.user.uid, `${p} belongs to ${f.user.name}`);
    }

    // With ?path= the part's filename does not matter.
    const single = new FormData();
    single.append("file", new Blob(["third"]), "whatever.bin");
    const r2 = await fetch(f.url("/files", { path: join(f.dir, "three.txt") }), {
      method: "POST",
      body: single,
    });
    assert.equal(r2.status, 200);
    assert.equal(await readFile(join(f.dir, "three.txt"), "utf8"), "third");
  });

  test("POST /files octet-stream (plain and gzip) keeps an existing file's owner", async (t) => {
    const f = await setup(t);
    const target = join(f.dir, "raw.bin");
    await writeFile(target, "old");
    const before = await stat(target);
    let res = await fetch(f.url("/files", { path: target }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: "new contents",
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), [{ name: "raw.bin", type: "file", path: target }]);
    assert.equal(await readFile(target, "utf8"), "new contents");
    assert.equal((await stat(target)).uid, before.uid);
    assert.equal((await stat(target)).ino, before.ino, "written in place");

    res = await fetch(f.url("/files", { path: join(f.dir, "z.txt") }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "content-encoding": "gzip" },
      body: gzipSync("zipped!"),
    });
    assert.equal(res.status, 200);
    assert.equal(await readFile(join(f.dir, "z.txt"), "utf8"), "zipped!");
  });

  test("POST /files errors: 400 without path, on a directory, or without a file part; 401 unknown user", async (t) => {
    const f = await setup(t);
    const octet = { "content-type": "application/octet-stream" };
    await expectError(
      await fetch(f.url("/files"), { method: "POST", headers: octet, body: "x" }),
      400,
      /path/,
    );
    await expectError(
      await fetch(f.url("/files", { path: f.dir }), { method: "POST", headers: octet, body: "x" }),
      400,
      /directory/,
    );
    const form = new FormData();
    form.append("other", "x");
    await expectError(
      await fetch(f.url("/files"), { method: "POST", body: form }),
      400,
      /no 'file' part/,
    );
    const nameless = new FormData();
    nameless.append("file", new Blob(["x"]), "");
    await expectError(await fetch(f.url("/files"), { method: "POST", body: nameless }), 400);
    await expectError(
      await fetch(f.url("/files", { path: join(f.dir, "q"), username: "no-such-user-wrenn" }), {
        method: "POST",
        headers: octet,
        body: "x",
      }),
      401,
    );
  });

  test("X-Metadata-* headers become user.e2b.* xattrs, returned by the upload and by Stat", async (t) => {
    const f = await setup(t);
    const target = join(f.dir, "meta.txt");
    let res = await fetch(f.url("/files", { path: target }), {
      method: "POST",
      headers: {
        "content-type": "application/octet-stream",
        "X-Metadata-Team": "search",
        "X-Metadata-run-id": "42",
      },
      body: "m",
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), [
      {
        name: "meta.txt",
        type: "file",
        path: target,
        metadata: { Team: "search", "run-id": "42" },
      },
    ]);
    assert.equal((await getAttribute(target, "user.e2b.run-id"))?.toString(), "42");
    const fs = createClient(
      Filesystem,
      createConnectTransport({ baseUrl: f.envd.url, httpVersion: "1.1" }),
    );
    assert.deepEqual((await fs.stat({ path: target })).entry?.metadata, {
      Team: "search",
      "run-id": "42",
    });
    // New metadata replaces the old set.
    res = await fetch(f.url("/files", { path: target }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "X-Metadata-Team": "infra" },
      body: "m2",
    });
    assert.equal(res.status, 200);
    assert.deepEqual((await fs.stat({ path: target })).entry?.metadata, { Team: "infra" });
  });

  test("a full disk answers 507", async (t) => {
    if (!isRoot) {
      console.warn("SKIPPED: the 507 test mounts a tiny tmpfs, which needs root");
      t.skip("needs root to mount a tmpfs");
      return;
    }
    // Registered before setup's own cleanup, so the unmount runs before the directory goes.
    const full = await mkdtemp(join(tmpdir(), "wrenn-full-"));
    let mounted = false;
    t.after(async () => {
      if (mounted) await runCommand("umount", [full]);
      await rm(full, { recursive: true, force: true });
      const mounts = await readFile("/proc/mounts", "utf8");
      assert.equal(mounts.includes(` ${full} `), false, "tmpfs leaked");
    });
    await runCommand("mount", ["-t", "tmpfs", "-o", "size=256k", "wrenn-test-full", full]);
    mounted = true;
    const f = await setup(t);
    const res = await fetch(f.url("/files", { path: join(full, "big") }), {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: Buffer.alloc(2 << 20, 1),
    });
    await expectError(res, 507, /no space/);
  });

  test("with a token: /files needs X-Access-Token or a valid signed URL", async (t) => {
    const f = await setup(t);
    f.envd.context.state.accessToken = "tok-123";
    const path = join(f.dir, "s.txt");
    await writeFile(path, "signed");
    const user = f.user.name;
    await expectError(
      await fetch(f.url("/files", { path, username: user })),
      401,
      /X-Access-Token/,
    );
    let res = await fetch(f.url("/files", { path, username: user }), {
      headers: { "x-access-token": "tok-123" },
    });
    assert.equal(await res.text(), "signed");

    const read = fileSignature(path, "read", user, "tok-123");
    res = await fetch(f.url("/files", { path, username: user, signature: read }));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "signed");
    const future = Math.floor(Date.now() / 1000) + 60;
    res = await fetch(
      f.url("/files", {
        path,
        username: user,
        signature: fileSignature(path, "read", user, "tok-123", future),
        signature_expiration: String(future),
      }),
    );
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const past = Math.floor(Date.now() / 1000) - 5;
    await expectError(
      await fetch(
        f.url("/files", {
          path,
          username: user,
          signature: fileSignature(path, "read", user, "tok-123", past),
          signature_expiration: String(past),
        }),
      ),
      401,
      /expired/,
    );
    // A read signature does not allow writing, nor another path or user.
    const octet = { "content-type": "application/octet-stream" };
    await expectError(
      await fetch(f.url("/files", { path, username: user, signature: read }), {
        method: "POST",
        headers: octet,
        body: "x",
      }),
      401,
      /signature/,
    );
    await expectError(
      await fetch(f.url("/files", { path: path + "2", username: user, signature: read })),
      401,
      /signature/,
    );
    await expectError(
      await fetch(f.url("/files", { path, username: "root", signature: read })),
      401,
    );
    const write = fileSignature(path, "write", user, "tok-123");
    res = await fetch(f.url("/files", { path, username: user, signature: write }), {
      method: "POST",
      headers: octet,
      body: "via signed URL",
    });
    assert.equal(res.status, 200);
    assert.equal(await readFile(path, "utf8"), "via signed URL");
  });
});

/** GET without fetch's transparent decompression, to see the bytes on the wire. */
async function rawGet(url: string, headers: Record<string, string>): Promise<Buffer> {
  const { request } = await import("node:http");
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks)));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}
