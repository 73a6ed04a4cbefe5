import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
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
});
