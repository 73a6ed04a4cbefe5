/**
 * VMMs start, and host commands run, through the spawner process
 * (spawner/spawner.ts). A VMM's pid is its own, exits are reported, passed
 * files arrive open at their position, failures say what to fix, and a
 * spawner that dies neither takes its VMMs with it nor loses their exits. A
 * command run there answers as runCommand does: output, input, exit codes,
 * timeouts, cancellation. No VM, no root needed.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CommandError, runCommand, type Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { spawnerRunner } from "../src/spawner/client.ts";
import { isAlive } from "../src/util/process.ts";
import { spawnInNetns } from "../src/vmm/process.ts";

const root = await mkdtemp(join(tmpdir(), "wrenn-spawner-"));
after(() => rm(root, { recursive: true, force: true }));

/** Pids of this process's children running spawner.ts. */
function spawners(): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        return (
          ppid === process.pid && readFileSync(`/proc/${p}/cmdline`, "utf8").includes("spawner.ts")
        );
      } catch {
        return false;
      }
    })
    .map(Number);
}

test("the command runs as its own pid, in its own process group; its exit is reported", async () => {
  const log = join(root, "a.log");
  const vmm = await spawnInNetns({
    netns: "",
    argv: ["sh", "-c", "echo started; exec sleep 30"],
    logPath: log,
  });
  assert.ok(await isAlive(vmm.pid));
  const stat = readFileSync(`/proc/${vmm.pid}/stat`, "utf8");
  const [, , pgid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  assert.equal(Number(pgid), vmm.pid, "a process group of its own");
  assert.notEqual(spawners().length, 0, "started by the spawner, not by this process");
  process.kill(vmm.pid, "SIGTERM");
  assert.deepEqual(await vmm.exited, { code: null, signal: "SIGTERM" });
  assert.equal(await readFile(log, "utf8"), "started\n");
});

test("passed files arrive open as fd 3, 4, … at their position", async () => {
  const a = join(root, "state");
  await writeFile(a, "HEADER|the state");
  const b = join(root, "other");
  await writeFile(b, "0123456789");
  const log = join(root, "b.log");
  const vmm = await spawnInNetns({
    netns: "",
    argv: ["sh", "-c", "cat <&3; echo; cat <&4"],
    logPath: log,
    passFiles: [
      { path: a, position: 7 },
      { path: b, position: 0 },
    ],
  });
  assert.deepEqual(await vmm.exited, { code: 0, signal: null });
  assert.equal(await readFile(log, "utf8"), "the state\n0123456789");
});

test("a command that is not installed, a log that cannot be opened, a file too short", async () => {
  const missing = await spawnInNetns({
    netns: "",
    argv: ["wrenn-no-such-vmm"],
    logPath: join(root, "c.log"),
  }).catch((e: unknown) => e);
  assert.ok(missing instanceof WrennError);
  assert.equal(missing.code, "failed_precondition");
  assert.match(missing.message, /'wrenn-no-such-vmm' is not installed/);

  const noLog = await spawnInNetns({
    netns: "",
    argv: ["true"],
    logPath: join(root, "no-dir", "d.log"),
  }).catch((e: unknown) => e);
  assert.ok(noLog instanceof WrennError);
  assert.equal(noLog.code, "internal");
  assert.match(noLog.message, /no-dir/);

  const short = join(root, "short");
  await writeFile(short, "abc");
  const tooShort = await spawnInNetns({
    netns: "",
    argv: ["true"],
    logPath: join(root, "e.log"),
    passFiles: [{ path: short, position: 10 }],
  }).catch((e: unknown) => e);
  assert.ok(tooShort instanceof WrennError);
  assert.match(tooShort.message, /ends before byte 10/);
});

test("a spawner that dies leaves its VMMs running and their exits reported; the next spawn forks a new one", async () => {
  const vmm = await spawnInNetns({
    netns: "",
    argv: ["sleep", "30"],
    logPath: join(root, "f.log"),
  });
  const [first] = spawners();
  assert.ok(first);
  process.kill(first, "SIGKILL");
  for (let i = 0; i < 100 && spawners().includes(first); i++) await sleep(20);
  assert.ok(await isAlive(vmm.pid), "the VMM outlives its spawner");
  process.kill(vmm.pid, "SIGKILL");
  const exit = await Promise.race([vmm.exited, sleep(5000).then(() => "timeout" as const)]);
  assert.notEqual(exit, "timeout", "its exit is still reported");
  const next = await spawnInNetns({ netns: "", argv: ["true"], logPath: join(root, "g.log") });
  assert.deepEqual(await next.exited, { code: 0, signal: null });
  assert.ok(!spawners().includes(first));
});

/** Where a command ran: the pid of its parent, printed by the command itself. */
const PARENT = ["sh", ["-c", "echo $PPID"]] as const;

for (const [name, run] of [
  ["runCommand", runCommand],
  ["spawnerRunner", spawnerRunner],
] as Array<[string, Runner]>) {
  test(`${name}: output, input, exit codes and missing commands`, async () => {
    assert.deepEqual(await run("sh", ["-c", "echo out; echo err >&2"]), {
      stdout: "out\n",
      stderr: "err\n",
    });
    assert.equal((await run("cat", [], { input: "piped\n" })).stdout, "piped\n");
    const bytes = Buffer.from([0, 1, 2, 255]);
    assert.equal(
      (await run("od", ["-An", "-tu1"], { input: bytes })).stdout.trim(),
      "0   1   2 255",
    );
    assert.equal((await run("sh", ["-c", "echo $X"], { env: { X: "y" } })).stdout, "y\n");
    assert.equal((await run("pwd", [], { cwd: root })).stdout.trim(), root);

    const failed = await run("sh", ["-c", "echo why >&2; exit 3"]).catch((e: unknown) => e);
    assert.ok(failed instanceof CommandError);
    assert.equal(failed.exitCode, 3);
    assert.equal(failed.stderr, "why\n");
    assert.match(failed.message, /sh -c echo why >&2; exit 3 failed \(exit 3\): why/);

    const missing = await run("wrenn-no-such-tool", []).catch((e: unknown) => e);
    assert.ok(missing instanceof WrennError);
    assert.equal(missing.code, "failed_precondition");
    assert.match(missing.message, /'wrenn-no-such-tool' is not installed/);
  });

  test(`${name}: a timeout kills the command; an abort cancels it`, async () => {
    const t0 = performance.now();
    const late = await run("sleep", ["30"], { timeoutMs: 200 }).catch((e: unknown) => e);
    assert.ok(late instanceof CommandError, String(late));
    assert.equal(late.exitCode, null);
    assert.ok(performance.now() - t0 < 5000);

    const marker = join(root, `cancelled-${name}`);
    const abort = new AbortController();
    const running = run("sh", ["-c", `sleep 1; touch ${marker}`], { signal: abort.signal });
    await sleep(100);
    abort.abort();
    const cancelled = await running.catch((e: unknown) => e);
    assert.ok(cancelled instanceof WrennError);
    assert.equal(cancelled.code, "cancelled");
    await sleep(1500);
    assert.equal(existsSync(marker), false, "the cancelled command was killed");

    const already = await run("true", [], { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    assert.ok(already instanceof WrennError && already.code === "cancelled");
  });
}

test("commands run in the spawner, not as children of the agent's process", async () => {
  const [cmd, args] = PARENT;
  const direct = Number((await runCommand(cmd, [...args])).stdout);
  const spawned = Number((await spawnerRunner(cmd, [...args])).stdout);
  assert.equal(direct, process.pid);
  assert.ok(spawners().includes(spawned), `parent ${spawned} is not the spawner`);
});

test("a command under way when the spawner dies fails with a reason; the next one works", async () => {
  await spawnerRunner("true", []);
  const [first] = spawners();
  assert.ok(first);
  const running = spawnerRunner("sleep", ["1"]);
  await sleep(100);
  process.kill(first, "SIGKILL");
  const err = await running.catch((e: unknown) => e);
  assert.ok(err instanceof CommandError, String(err));
  assert.match(err.message, /spawner process exited/);
  assert.equal((await spawnerRunner("echo", ["again"])).stdout, "again\n");
});

test("requests made while a killed spawner is not yet reaped fail or succeed; none crashes the agent", async () => {
  for (let i = 0; i < 10; i++) {
    await spawnerRunner("true", []);
    const [pid] = spawners();
    assert.ok(pid);
    process.kill(pid, "SIGKILL");
    const results = await Promise.allSettled([
      spawnerRunner("true", []),
      sleep(5).then(() => spawnerRunner("true", [])),
      spawnInNetns({ netns: "", argv: ["true"], logPath: join(root, `race-${i}.log`) }),
    ]);
    for (const r of results) {
      if (r.status === "rejected") assert.match(String(r.reason), /spawner/);
    }
  }
  assert.equal((await spawnerRunner("echo", ["after"])).stdout, "after\n");
});
