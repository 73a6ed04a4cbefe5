import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { loadClockAddon } from "../src/index.ts";

const isRoot = process.getuid?.() === 0;

/** A test that `addon.<call>`, run as nobody in a child process, throws what `expected` matches. */
function failsAsNobody(name: string, call: string, expected: RegExp): void {
  test(name, { skip: !isRoot && "needs root to drop to nobody" }, () => {
    const script = `
      const { loadClockAddon } = await import(${JSON.stringify(new URL("../src/index.ts", import.meta.url).href)});
      try { loadClockAddon().addon.${call}; console.log("no error"); }
      catch (err) { console.log(err.code, err.errno, err.message); }`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      uid: 65534,
      gid: 65534,
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, expected);
  });
}

describe("@wrenn/clock", () => {
  test("the addon is built and loads", () => {
    const { addon, error } = loadClockAddon();
    assert.equal(error, undefined);
    assert.equal(typeof addon?.setRealtime, "function");
    assert.equal(typeof addon?.reseedRandom, "function");
    assert.equal(typeof addon?.setHostname, "function");
    assert.equal(typeof addon?.recordHostname, "function");
  });

  test("refuses what is not a Unix time in milliseconds", () => {
    const { addon } = loadClockAddon();
    for (const bad of [Number.NaN, -1, Infinity, 1e16, "1" as unknown as number]) {
      assert.throws(() => addon?.setRealtime(bad), { code: "ERR_OUT_OF_RANGE" }, String(bad));
    }
  });

  // The host's real clock: set to what it already reads, so it moves by
  // microseconds (the time between reading and setting), never more.
  test("as root, sets CLOCK_REALTIME", { skip: !isRoot && "needs root" }, () => {
    const { addon } = loadClockAddon();
    const before = Date.now();
    addon?.setRealtime(Date.now());
    const after = Date.now();
    assert.ok(after >= before - 5 && after - before < 1000, `clock read ${after - before} ms off`);
  });

  failsAsNobody(
    "without CAP_SYS_TIME it fails with EPERM",
    "setRealtime(Date.now())",
    /^EPERM -1 clock_settime\(CLOCK_REALTIME\): Operation not permitted/,
  );

  test("reseedRandom refuses what is not 1 to 4096 bytes in a Uint8Array", () => {
    const { addon } = loadClockAddon();
    for (const bad of [
      undefined,
      "abcd",
      [1, 2, 3],
      new Uint16Array(8),
      new DataView(new ArrayBuffer(8)),
    ]) {
      assert.throws(
        () => addon?.reseedRandom(bad as unknown as Uint8Array),
        { code: "ERR_INVALID_ARG_TYPE" },
        String(bad),
      );
    }
    for (const bad of [new Uint8Array(0), new Uint8Array(4097)]) {
      assert.throws(
        () => addon?.reseedRandom(bad),
        { code: "ERR_OUT_OF_RANGE" },
        String(bad.length),
      );
    }
  });

  // The host's kernel: mixing 64 random bytes into its pool and reseeding
  // early is what it does by itself every minute.
  test(
    "as root, mixes bytes into the kernel pool and reseeds its CRNG",
    { skip: !isRoot && "needs root (CAP_SYS_ADMIN)" },
    () => {
      const { addon } = loadClockAddon();
      addon?.reseedRandom(randomBytes(64));
      addon?.reseedRandom(new Uint8Array(randomBytes(4096)));
      // A view into a larger buffer sends only its own bytes.
      addon?.reseedRandom(randomBytes(128).subarray(32, 96));
    },
  );

  failsAsNobody(
    "without CAP_SYS_ADMIN reseedRandom fails with EPERM",
    "reseedRandom(new Uint8Array(32).fill(7))",
    /^EPERM -1 ioctl\(\/dev\/urandom, RNDADDENTROPY\): Operation not permitted/,
  );

  // sethostname(2) renames the UTS namespace of the caller: these run in a
  // child in a namespace of its own (unshare), so the host keeps its name
  // even if the addon took a name it should refuse.
  test(
    "as root, setHostname renames the kernel, and refuses what is not a host name",
    { skip: !isRoot && "needs root (a UTS namespace of its own)" },
    () => {
      const before = hostname();
      const script = `
        const { hostname } = await import("node:os");
        const { loadClockAddon } = await import(${JSON.stringify(new URL("../src/index.ts", import.meta.url).href)});
        const { addon } = loadClockAddon();
        const refused = [];
        for (const bad of ["", "a b", "a\\nb", "x".repeat(65), 7, undefined]) {
          try { addon.setHostname(bad); refused.push("taken:" + JSON.stringify(bad)); }
          catch (err) { refused.push(err.code); }
        }
        addon.setHostname("wrenn-uts-" + "x".repeat(54));
        console.log(JSON.stringify({ refused, name: hostname() }));`;
      const r = spawnSync(
        "unshare",
        ["--uts", process.execPath, "--input-type=module", "-e", script],
        { encoding: "utf8" },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), {
        refused: Array(6).fill("ERR_OUT_OF_RANGE"),
        name: `wrenn-uts-${"x".repeat(54)}`,
      });
      assert.equal(hostname(), before);
    },
  );

  failsAsNobody(
    "without CAP_SYS_ADMIN setHostname fails with EPERM",
    `setHostname(${JSON.stringify(hostname())})`,
    /^EPERM -1 sethostname: Operation not permitted/,
  );

  test("recordHostname writes hostname and the hosts file's 127.0.1.1 line", async (t) => {
    const { addon } = loadClockAddon();
    const etc = await mkdtemp(join(tmpdir(), "wrenn-etc-"));
    t.after(() => rm(etc, { recursive: true, force: true }));
    await writeFile(
      join(etc, "hosts"),
      "127.0.0.1\tlocalhost\n127.0.1.1 old\n::1\tip6-localhost\n",
    );
    addon?.recordHostname(etc, "sb-1.example");
    assert.equal(await readFile(join(etc, "hostname"), "utf8"), "sb-1.example\n");
    assert.equal(
      await readFile(join(etc, "hosts"), "utf8"),
      "127.0.0.1\tlocalhost\n127.0.1.1\tsb-1.example\n::1\tip6-localhost\n",
    );
    for (const [etcDir, name] of [
      [etc, "a b"],
      [etc, "a\n127.0.0.1 evil"],
      [etc, "x".repeat(254)],
      ["", "a"],
      [etc, ""],
    ] as Array<[string, string]>) {
      assert.throws(() => addon?.recordHostname(etcDir, name), { code: "ERR_OUT_OF_RANGE" }, name);
    }
    assert.throws(() => addon?.recordHostname(join(etc, "none"), "a"), {
      code: "ENOENT",
      message: /writing \/etc\/hostname: No such file or directory/,
    });
    await writeFile(join(etc, "hosts"), Buffer.alloc(1024 * 1024 + 1, "#"));
    assert.throws(() => addon?.recordHostname(etc, "a"), { code: "EFBIG" });
  });
});
