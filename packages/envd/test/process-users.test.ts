// Processes run as the Linux user the request names: throwaway users are
// created for the test (useradd) and removed afterwards.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Process } from "@wrenn/proto/process/process_pb.js";
import { runCommand } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { startEnvd, type Envd } from "../src/server.ts";
import { DEFAULT_PATH } from "../src/process/environment.ts";

const isRoot = process.getuid?.() === 0;
const suffix = randomBytes(3).toString("hex");
const USER = `wrenn-t-${suffix}`;
const PLAIN = `wrenn-p-${suffix}`;
const GROUP = `wrenn-g-${suffix}`;
const MARK = `wrenn-users-test-${suffix}`;

let envd: Envd | undefined;
let client: Client<typeof Process>;
let ids: { uid: number; gid: number; extra: number; plainUid: number; plainGid: number };

function asUser(name: string) {
  return { authorization: `Basic ${Buffer.from(`${name}:`).toString("base64")}` };
}

async function run(
  cmd: string,
  args: string[],
  options: { user?: string; pty?: boolean } = {},
): Promise<{ out: string; exitCode: number }> {
  let out = "";
  let exitCode = Number.NaN;
  const stream = client.start(
    {
      process: { cmd, args, envs: { WRENN_TEST_MARK: MARK } },
      stdin: false,
      ...(options.pty && { pty: { size: { cols: 200, rows: 20 } } }),
    },
    { headers: options.user === undefined ? {} : asUser(options.user) },
  );
  for await (const res of stream) {
    const ev = res.event?.event;
    if (ev?.case === "data") out += Buffer.from(ev.value.output.value ?? []).toString();
    if (ev?.case === "end") exitCode = ev.value.exitCode;
  }
  return { out, exitCode };
}

async function userExists(name: string): Promise<boolean> {
  const passwd = await readFile("/etc/passwd", "utf8");
  return passwd.split("\n").some((l) => l.startsWith(`${name}:`));
}

async function markedPids(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`, "latin1").catch(() => "");
    if (environ.includes(MARK)) pids.push(Number(entry));
  }
  return pids;
}

async function removeAccounts(): Promise<void> {
  for (const name of [USER, PLAIN]) {
    if (await userExists(name)) await runCommand("userdel", ["-r", name]).catch(() => undefined);
  }
  const groups = await readFile("/etc/group", "utf8");
  if (groups.split("\n").some((l) => l.startsWith(`${GROUP}:`))) {
    await runCommand("groupdel", [GROUP]);
  }
}

before(async () => {
  if (!isRoot) return;
  await runCommand("groupadd", [GROUP]);
  await runCommand("useradd", ["-m", "-s", "/bin/bash", "-G", GROUP, USER]);
  await runCommand("useradd", ["-m", "-s", "/bin/sh", PLAIN]);
  const id = async (flag: string, name: string) =>
    Number((await runCommand("id", [flag, name])).stdout.trim());
  const extra = Number((await runCommand("getent", ["group", GROUP])).stdout.split(":")[2]);
  ids = {
    uid: await id("-u", USER),
    gid: await id("-g", USER),
    extra,
    plainUid: await id("-u", PLAIN),
    plainGid: await id("-g", PLAIN),
  };
  envd = await startEnvd({
    port: 0,
    host: "127.0.0.1",
    defaultUser: "root",
    log: createLogger("envd-test", "silent"),
  });
  client = createClient(
    Process,
    createConnectTransport({ baseUrl: envd.url, httpVersion: "1.1", useBinaryFormat: false }),
  );
});

after(async () => {
  const leaked = isRoot ? await markedPids() : [];
  for (const pid of leaked) process.kill(pid, "SIGKILL");
  await envd?.close();
  if (isRoot) {
    await removeAccounts();
    assert.equal(await userExists(USER), false, "throwaway user removed");
    assert.equal(await userExists(PLAIN), false, "throwaway user removed");
  }
  assert.deepEqual(leaked, [], "processes started by the tests are still running");
});

function skipUnlessRoot(t: { skip(msg: string): void }): boolean {
  if (isRoot) return false;
  const msg = "SKIPPED: creating Linux users and switching to them needs root";
  console.warn(`\n!!! ${msg}\n`);
  t.skip(msg);
  return true;
}

test("a process runs with the user's uid, gid, supplementary groups and login environment", async (t) => {
  if (skipUnlessRoot(t)) return;
  const id = await run("sh", ["-c", "id -u; id -g; id -G"], { user: USER });
  const [uid, gid, groups] = id.out.trim().split("\n");
  assert.equal(Number(uid), ids.uid);
  assert.equal(Number(gid), ids.gid);
  assert.deepEqual(groups?.split(" ").map(Number).sort(), [ids.gid, ids.extra].sort());

  const env = await run("env", [], { user: USER });
  const vars = Object.fromEntries(
    env.out
      .trim()
      .split("\n")
      .map((l) => l.split(/=(.*)/s).slice(0, 2)),
  );
  assert.equal(vars.HOME, `/home/${USER}`);
  assert.equal(vars.USER, USER);
  assert.equal(vars.LOGNAME, USER);
  assert.equal(vars.SHELL, "/bin/bash");
  assert.equal(vars.PATH, DEFAULT_PATH);

  const cwd = await run("bash", ["-l", "-c", "pwd; touch ~/mine && stat -c %U ~/mine"], {
    user: USER,
  });
  assert.equal(cwd.out, `/home/${USER}\n${USER}\n`);
  assert.equal(cwd.exitCode, 0);
  const denied = await run("cat", ["/etc/shadow"], { user: USER });
  assert.notEqual(denied.exitCode, 0, "the user cannot read root's files");
});

test("a user without supplementary groups keeps none of envd's", async (t) => {
  if (skipUnlessRoot(t)) return;
  const id = await run("id", ["-G"], { user: PLAIN });
  assert.equal(id.out.trim(), String(ids.plainGid));
  const who = await run("id", ["-u"], { user: PLAIN });
  assert.equal(who.out.trim(), String(ids.plainUid));
});

test("on a PTY too the process has the user's identity and groups", async (t) => {
  if (skipUnlessRoot(t)) return;
  const r = await run("sh", ["-c", "id -u; id -G; tty"], { user: USER, pty: true });
  const [uid, groups, tty] = r.out.trim().split("\r\n");
  assert.equal(Number(uid), ids.uid);
  assert.deepEqual(groups?.split(" ").map(Number).sort(), [ids.gid, ids.extra].sort());
  assert.match(tty ?? "", /^\/dev\/pts\/\d+$/);
});

test("without Authorization the sandbox's default user runs the process", async (t) => {
  if (skipUnlessRoot(t) || envd === undefined) return;
  envd.context.state.defaultUser = USER;
  try {
    assert.equal((await run("id", ["-un"])).out, `${USER}\n`);
  } finally {
    envd.context.state.defaultUser = "root";
  }
  assert.equal((await run("id", ["-un"])).out, "root\n");
});

async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

test("envd that is not root runs processes only as its own user, and says so", async (t) => {
  if (skipUnlessRoot(t)) return;
  const port = await freePort();
  const node = process.execPath;
  const main = fileURLToPath(new URL("../src/main.ts", import.meta.url));
  const envdAsUser = spawn(
    "setpriv",
    [
      `--reuid=${ids.plainUid}`,
      `--regid=${ids.plainGid}`,
      "--clear-groups",
      "--",
      node,
      main,
      "--port",
      String(port),
      "--host",
      "127.0.0.1",
      "--default-user",
      PLAIN,
    ],
    { env: { ...process.env, WRENN_LOG_LEVEL: "silent", WRENN_TEST_MARK: MARK }, stdio: "ignore" },
  );
  try {
    const own = createClient(
      Process,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
    );
    let out = "";
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const res of own.start({
          process: { cmd: "id", args: ["-un"] },
          stdin: false,
        })) {
          const ev = res.event?.event;
          if (ev?.case === "data") out += Buffer.from(ev.value.output.value ?? []).toString();
        }
        break;
      } catch (err) {
        if (!(err instanceof ConnectError) || err.code !== Code.Unavailable || attempt > 300)
          throw err;
        await sleep(100);
      }
    }
    assert.equal(out, `${PLAIN}\n`);
    await assert.rejects(
      (async () => {
        for await (const _ of own.start({ process: { cmd: "id" } }, { headers: asUser("root") })) {
          // drained
        }
      })(),
      (err) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.code, Code.PermissionDenied);
        assert.match(err.message, /not root.*only start processes as itself/);
        return true;
      },
    );
  } finally {
    envdAsUser.kill("SIGKILL");
    await once(envdAsUser, "exit").catch(() => undefined);
  }
});
