import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { nothpPath } from "../src/index.ts";

const thpKnown = /^THP_enabled:/m.test(readFileSync("/proc/self/status", "utf8"));

function run(args: string[]) {
  const helper = nothpPath();
  assert.ok(helper, "wrenn-nothp is built by npm install");
  return spawnSync(helper, args, { encoding: "utf8", timeout: 10_000 });
}

describe("wrenn-nothp", () => {
  test(
    "runs FILE (found on PATH) with its arguments and huge pages off, in place",
    { skip: !thpKnown && "this kernel's /proc/PID/status has no THP_enabled line" },
    () => {
      assert.match(readFileSync("/proc/self/status", "utf8"), /^THP_enabled:\s+1$/m);
      const r = run(["sh", "-c", 'echo "$1"; grep THP_enabled /proc/$$/status', "sh", "a b"]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, "a b\nTHP_enabled:\t0\n");
      assert.equal(r.stderr, "");
    },
  );

  test("says why it cannot run FILE, with a shell's exit status", () => {
    const missing = run(["/nonexistent/qemu"]);
    assert.equal(missing.status, 127);
    assert.match(missing.stderr, /wrenn-nothp: \/nonexistent\/qemu: No such file or directory/);
    const notExecutable = run(["/etc/passwd"]);
    assert.equal(notExecutable.status, 126);
    assert.match(notExecutable.stderr, /Permission denied/);
    const none = run([]);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /usage: wrenn-nothp FILE/);
  });
});
