// The official e2b SDK, unmodified, against our envd: in debug mode
// (E2B_DEBUG=true) the SDK skips the REST API and talks to localhost:49983.
// Commands run as a throwaway user with a fresh home, as in a sandbox: the
// SDK runs `bash -l`, and a login shell of this host's root would run
// whatever root's dotfiles say (pyenv here, which can hang for a minute).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommandExitError, Sandbox } from "e2b";
import { runCommand } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import type { Envd } from "../src/server.ts";
import { startEnvdForE2b } from "./e2b-harness.ts";

const MARK = `wrenn-e2b-commands-${randomUUID()}`;
const envs = { WRENN_TEST_MARK: MARK };
const isRoot = process.getuid?.() === 0;
const USER = `wrenn-e-${randomUUID().slice(0, 6)}`;

let envd: Envd | undefined;
let sandbox: Sandbox;
let workdir: string;

async function markedPids(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`, "latin1").catch(() => "");
    if (environ.includes(MARK)) pids.push(Number(entry));
  }
  return pids;
}

async function userExists(name: string): Promise<boolean> {
  const passwd = await readFile("/etc/passwd", "utf8");
  return passwd.split("\n").some((l) => l.startsWith(`${name}:`));
}

before(async () => {
  if (!isRoot) return;
  await runCommand("useradd", ["-m", "-s", "/bin/bash", USER]);
  process.env.E2B_DEBUG = "true";
  envd = await startEnvdForE2b({ defaultUser: USER, log: createLogger("envd-test", "silent") });
  sandbox = await Sandbox.connect("wrenn-debug");
  workdir = await mkdtemp(join(tmpdir(), "wrenn-e2b-"));
  await chmod(workdir, 0o755);
});

after(async () => {
  const leaked = await markedPids();
  for (const pid of leaked) process.kill(pid, "SIGKILL");
  await envd?.close();
  if (workdir !== undefined) await rm(workdir, { recursive: true, force: true });
  if (isRoot && (await userExists(USER))) await runCommand("userdel", ["-r", USER]);
  assert.equal(await userExists(USER), false, "throwaway user removed");
  assert.deepEqual(leaked, [], "processes started by the tests are still running");
});

function skipUnlessRoot(t: { skip(msg: string): void }): boolean {
  if (isRoot) return false;
  const msg = "SKIPPED: the e2b SDK tests create a throwaway Linux user, which needs root";
  console.warn(`\n!!! ${msg}\n`);
  t.skip(msg);
  return true;
}

test("commands.run returns stdout and exit code 0", async (t) => {
  if (skipUnlessRoot(t)) return;
  const r = await sandbox.commands.run("echo hello; echo to-err >&2", { envs });
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, "hello\n");
  assert.equal(r.stderr, "to-err\n");
});

test("a non-zero exit throws CommandExitError with the exit code and stderr", async (t) => {
  if (skipUnlessRoot(t)) return;
  await assert.rejects(sandbox.commands.run("echo broken >&2; exit 3", { envs }), (err) => {
    assert.ok(err instanceof CommandExitError, String(err));
    assert.equal(err.exitCode, 3);
    assert.equal(err.stderr, "broken\n");
    assert.equal(err.error, "exit status 3");
    return true;
  });
});

test("envs, cwd and user reach the command", async (t) => {
  if (skipUnlessRoot(t)) return;
  const r = await sandbox.commands.run('echo "$GREETING"; pwd', {
    envs: { ...envs, GREETING: "hi there" },
    cwd: workdir,
  });
  assert.equal(r.stdout, `hi there\n${workdir}\n`);
  const own = await sandbox.commands.run("id -un; echo $HOME; pwd", { envs });
  assert.equal(own.stdout, `${USER}\n/home/${USER}\n/home/${USER}\n`, "the default user, at home");
  // `nobody` has no home directory: the command still runs, from /.
  const nobody = await sandbox.commands.run("id -un; pwd", { envs, user: "nobody" });
  assert.equal(nobody.stdout, "nobody\n/\n");
});

test("background command: listed, then killed", async (t) => {
  if (skipUnlessRoot(t)) return;
  const handle = await sandbox.commands.run("sleep 30", { envs, background: true });
  const listed = (await sandbox.commands.list()).find((p) => p.pid === handle.pid);
  assert.ok(listed, "commands.list shows the background command");
  assert.equal(listed.cmd, "/bin/bash");
  assert.deepEqual(listed.args, ["-l", "-c", "sleep 30"]);
  assert.equal(await handle.kill(), true);
  await assert.rejects(handle.wait(), (err) => {
    assert.ok(err instanceof CommandExitError, String(err));
    assert.equal(err.exitCode, -1);
    assert.equal(err.error, "signal: killed");
    return true;
  });
  assert.ok(!(await sandbox.commands.list()).some((p) => p.pid === handle.pid));
  assert.equal(await sandbox.commands.kill(handle.pid), false, "killing it again finds nothing");
});

test("stdin: sendStdin and closeStdin", async (t) => {
  if (skipUnlessRoot(t)) return;
  const handle = await sandbox.commands.run("cat; echo done", {
    envs,
    background: true,
    stdin: true,
  });
  await sandbox.commands.sendStdin(handle.pid, "first line\n");
  await handle.sendStdin("second line\n");
  await handle.closeStdin();
  const r = await handle.wait();
  assert.equal(r.stdout, "first line\nsecond line\ndone\n");
});

test("commands.connect re-attaches to a running command and gets its result", async (t) => {
  if (skipUnlessRoot(t)) return;
  const handle = await sandbox.commands.run("read go; echo after $go; exit 4", {
    envs,
    background: true,
    stdin: true,
  });
  await handle.disconnect();
  const chunks: string[] = [];
  const again = await sandbox.commands.connect(handle.pid, {
    onStdout: (d) => void chunks.push(d),
  });
  await sandbox.commands.sendStdin(handle.pid, "yes\n");
  await assert.rejects(again.wait(), (err) => {
    assert.ok(err instanceof CommandExitError, String(err));
    assert.equal(err.exitCode, 4);
    assert.equal(err.stdout, "after yes\n");
    return true;
  });
  assert.deepEqual(chunks, ["after yes\n"]);
});

test("pty.create runs an interactive shell on a terminal", async (t) => {
  if (skipUnlessRoot(t)) return;
  let output = "";
  const decoder = new TextDecoder();
  const term = await sandbox.pty.create({
    cols: 80,
    rows: 24,
    envs,
    onData: (data) => void (output += decoder.decode(data, { stream: true })),
  });
  await sandbox.pty.resize(term.pid, { cols: 132, rows: 43 });
  await sandbox.pty.sendInput(term.pid, new TextEncoder().encode("stty size; exit 0\n"));
  const r = await term.wait();
  assert.equal(r.exitCode, 0);
  assert.match(output, /43 132/);
});
