import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { describe, test } from "node:test";
import { setuserArgs, setuserPath } from "../src/index.ts";

const isRoot = process.getuid?.() === 0;

function run(args: string[]) {
  const helper = setuserPath();
  assert.ok(helper, "wrenn-setuser is built by npm install");
  return spawnSync(helper, args, { encoding: "utf8", timeout: 10_000 });
}

describe("wrenn-setuser", () => {
  test("is built, executable and static (no dynamic loader on every command)", () => {
    const helper = setuserPath();
    assert.ok(helper);
    assert.ok(statSync(helper).mode & 0o111);
    const ldd = spawnSync("ldd", [helper], { encoding: "utf8" });
    assert.match(ldd.stdout + ldd.stderr, /not a dynamic executable|statically linked/);
  });

  test(
    "becomes uid, gid and exactly the supplementary groups given, then execs in place",
    { skip: !isRoot && "needs root to switch users" },
    () => {
      const r = run(
        setuserArgs(65534, 65534, [65534, 27, 100], "/bin/sh", [
          "-c",
          'id -u; id -g; id -G; echo "$0"; cat /proc/$$/status | grep -E "^(CapEff|NoNewPrivs)"',
        ]),
      );
      assert.equal(r.status, 0, r.stderr);
      const [uid, gid, groups, argv0, capEff] = r.stdout.trim().split("\n");
      assert.equal(uid, "65534");
      assert.equal(gid, "65534");
      assert.deepEqual(groups?.split(" ").map(Number).sort(), [100, 27, 65534].sort());
      assert.equal(argv0, "/bin/sh");
      assert.match(capEff ?? "", /^CapEff:\s+0+$/, "no capability is left after the switch");
    },
  );

  test("no groups ('-') leaves none of root's", { skip: !isRoot && "needs root" }, () => {
    const r = run(setuserArgs(65534, 65534, [], "/usr/bin/id", ["-G"]));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "65534");
  });

  test("bad arguments: exit 2 and a line that says what is wrong", () => {
    const cases: [string[], RegExp][] = [
      [[], /usage/],
      [["1", "1", "-", "/bin/true"], /usage/],
      [["x", "1", "-", "--", "/bin/true"], /uid: not a number/],
      [["1", "-1", "-", "--", "/bin/true"], /gid: not a number/],
      [["1", "1", "4294967295", "--", "/bin/true"], /group: not a valid id/],
      [["1", "1", "1,,2", "--", "/bin/true"], /group: not a number|groups/],
      [["1", "1", "", "--", "/bin/true"], /groups: empty list/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      assert.equal(r.status, 2, `${JSON.stringify(args)}: ${r.stderr}`);
      assert.match(r.stderr, message, JSON.stringify(args));
    }
  });

  test(
    "a missing program exits 127, a failed switch 126, with the reason",
    { skip: !isRoot && "needs root" },
    () => {
      const missing = run(setuserArgs(65534, 65534, [], "/nonexistent/prog", []));
      assert.equal(missing.status, 127);
      assert.match(missing.stderr, /\/nonexistent\/prog: No such file or directory/);
      // As nobody, switching to another uid is refused.
      const helper = setuserPath()!;
      const r = spawnSync(helper, setuserArgs(1, 1, [], "/bin/true", []), {
        uid: 65534,
        gid: 65534,
        encoding: "utf8",
      });
      assert.equal(r.status, 126);
      assert.match(r.stderr, /setgroups: Operation not permitted/);
    },
  );
});
