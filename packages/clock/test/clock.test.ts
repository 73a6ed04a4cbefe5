import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { loadClockAddon } from "../src/index.ts";

const isRoot = process.getuid?.() === 0;

describe("@wrenn/clock", () => {
  test("the addon is built and loads", () => {
    const { addon, error } = loadClockAddon();
    assert.equal(error, undefined);
    assert.equal(typeof addon?.setRealtime, "function");
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

  test(
    "without CAP_SYS_TIME it fails with EPERM",
    { skip: !isRoot && "needs root to drop to nobody" },
    () => {
      const script = `
      const { loadClockAddon } = await import(${JSON.stringify(new URL("../src/index.ts", import.meta.url).href)});
      try { loadClockAddon().addon.setRealtime(Date.now()); console.log("set"); }
      catch (err) { console.log(err.code, err.errno, err.message); }`;
      const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        uid: 65534,
        gid: 65534,
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^EPERM -1 clock_settime\(CLOCK_REALTIME\): Operation not permitted/);
    },
  );
});
