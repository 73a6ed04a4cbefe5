/**
 * The user commands (`wrenn login`, `wrenn sandbox …`, `wrenn template …`,
 * `wrenn snapshot`) run as the real binary against a real control plane with
 * the fake host agent: what they print, their JSON, exit codes and errors.
 * test/user-vm.test.ts does the same through real VMs.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { SandboxMetricSchema } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { startHarness, type Harness } from "../../control-plane/test/harness.ts";
import { commandPaths, repo, wrenn, type Run } from "./wrenn-binary.ts";

let h: Harness;
let dir: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  h = await startHarness("pglite");
  dir = await mkdtemp(join(tmpdir(), "wrenn-cli-user-"));
  env = { XDG_CONFIG_HOME: join(dir, "config"), HOME: dir };
});
after(async () => {
  await h?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

function oneLineError(r: Run, pattern: RegExp): void {
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr.trimEnd().split("\n").length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr.trimEnd(), pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
}

test("every command and subcommand answers --help", { timeout: 120_000 }, async () => {
  const paths = await commandPaths();
  for (const expected of [
    "up",
    "image build",
    "sandbox exec",
    "sandbox shell",
    "template rm",
    "snapshot",
    "login",
  ])
    assert.ok(
      paths.some((p) => p.join(" ") === expected),
      `${expected} in ${JSON.stringify(paths)}`,
    );
  await Promise.all(
    paths.map(async (p) => {
      const r = ok(await wrenn([...p, "--help"]));
      assert.match(r.stdout, new RegExp(`^Usage: wrenn ${p.join(" ")}`, "m"), p.join(" "));
    }),
  );
  ok(await wrenn(["sb", "ls", "--help"]));
});

test(
  "bad flags and values fail in one line that says what to do",
  { timeout: 60_000 },
  async () => {
    oneLineError(
      await wrenn(["sandbox", "create", "--vcpus", "x"], { env }),
      /wrenn sandbox create: .*whole number from 1 to 32.*--help/,
    );
    oneLineError(
      await wrenn(["sandbox", "create", "--bogus"], { env }),
      /unknown option '--bogus'.*wrenn sandbox create --help/,
    );
    oneLineError(await wrenn(["up", "--nope"], { env }), /^wrenn up: unknown option '--nope'/);
    oneLineError(
      await wrenn(["sandbox", "info", "Not_An_Id"], { env }),
      /lowercase letters and digits/,
    );
    oneLineError(await wrenn(["frobnicate"], { env }), /^wrenn: unknown command 'frobnicate'/);
    oneLineError(await wrenn(["sandbox", "ls"], { env }), /not logged in: run 'wrenn login'/);
  },
);

test(
  "login: a wrong key is refused in one line; the right one is stored 0600",
  { timeout: 60_000 },
  async () => {
    oneLineError(
      await wrenn(["login", "--api-url", h.cp.url], { env, input: "wrk_wrong\n" }),
      /^wrenn login: .*\(unauthenticated\)$/,
    );
    oneLineError(
      await wrenn(["login", "--api-url", "http://127.0.0.1:9", "--api-key", "k"], { env }),
      /cannot reach the Wrenn API at http:\/\/127\.0\.0\.1:9.*\(unavailable\)/,
    );
    // The key on stdin keeps it out of `ps` and the shell history.
    ok(await wrenn(["login", "--api-url", `${h.cp.url}/v1`], { env, input: `${h.key}\n` }));
    const path = join(dir, "config", "wrenn", "credentials.json");
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, "config", "wrenn"))).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(await readFile(path, "utf8")), {
      api_url: h.cp.url,
      api_key: h.key,
    });
    // The environment overrides the stored key.
    oneLineError(
      await wrenn(["sandbox", "ls"], { env: { ...env, WRENN_API_KEY: "wrk_bad" } }),
      /\(unauthenticated\)$/,
    );
  },
);

test(
  "sandbox create, ls, info, exec, cp, pause, resume, snapshot, template, rm",
  { timeout: 120_000 },
  async () => {
    ok(await wrenn(["login", "--api-url", h.cp.url, "--api-key", h.key], { env }));
    const created = JSON.parse(
      ok(
        await wrenn(
          ["sb", "create", "--json", "--timeout", "600", "-e", "A=1", "-m", "owner=cli"],
          { env },
        ),
      ).stdout,
    ) as {
      sandbox_id: string;
      status: string;
      timeout_sec: number;
      metadata: Record<string, string>;
    };
    assert.equal(created.status, "running");
    assert.equal(created.timeout_sec, 600);
    assert.deepEqual(created.metadata, { owner: "cli" });
    const id = created.sandbox_id;
    const plain = ok(await wrenn(["sb", "create"], { env }));
    assert.match(plain.stdout, /^[a-z0-9]+\n$/);
    assert.match(plain.stderr, /creating a sandbox from 'minimal' \(\d+\.\d s\)/);

    const listed = JSON.parse(ok(await wrenn(["sb", "ls", "--json"], { env })).stdout) as Array<{
      sandbox_id: string;
    }>;
    assert.ok(listed.some((s) => s.sandbox_id === id));
    const table = ok(await wrenn(["sb", "ls"], { env })).stdout;
    assert.match(table, /^ID +TEMPLATE +STATUS +VCPUS +MEMORY +CREATED\n/);
    assert.ok(!table.includes("\u001b["), "no colours off a TTY");
    const described = ok(await wrenn(["sb", "info", id], { env })).stdout;
    assert.match(described, /^status +running$/m);
    assert.match(described, /^metadata +owner=cli$/m);

    // The fake agent echoes its command line; `false` exits 1 (buffered) and streams end with 0.
    const streamed = ok(await wrenn(["sb", "exec", id, "printf", "a", "-b"], { env }));
    assert.equal(streamed.stdout, "a-b");
    const separated = ok(
      await wrenn(["sb", "exec", "--timeout", "5", id, "--", "printf", "-x"], { env }),
    );
    assert.equal(separated.stdout, "-x");
    const failed = await wrenn(["sb", "exec", "--json", id, "false"], { env });
    assert.equal(failed.code, 1);
    assert.equal((JSON.parse(failed.stdout) as { exit_code: number }).exit_code, 1);

    const local = join(dir, "up.bin");
    const content = randomBytes(3 << 20);
    await writeFile(local, content);
    assert.deepEqual(
      JSON.parse(
        ok(await wrenn(["sb", "cp", "--json", local, `${id}:/tmp/up.bin`], { env })).stdout,
      ),
      { path: "/tmp/up.bin", size: content.length },
    );
    const back = join(dir, "back.bin");
    ok(await wrenn(["sb", "cp", `${id}:/tmp/up.bin`, back], { env }));
    assert.ok((await readFile(back)).equals(content), "the copy came back identical");
    // Directories on either side take the file under its own name.
    ok(await wrenn(["sb", "cp", local, `${id}:/tmp/dir/`], { env }));
    const intoDir = JSON.parse(
      ok(await wrenn(["sb", "cp", "--json", `${id}:/tmp/dir/up.bin`, dir], { env })).stdout,
    ) as { path: string; size: number };
    assert.deepEqual(intoDir, { path: join(dir, "up.bin"), size: content.length });
    oneLineError(await wrenn(["sb", "cp", local, back], { env }), /one side must be in a sandbox/);

    assert.equal(
      (
        JSON.parse(ok(await wrenn(["sb", "pause", "--json", id], { env })).stdout) as {
          status: string;
        }
      ).status,
      "paused",
    );
    oneLineError(
      await wrenn(["sb", "exec", id, "true"], { env }),
      /it is paused.*\(failed_precondition\)$/,
    );
    assert.match(
      ok(await wrenn(["sb", "resume", id], { env })).stderr,
      /resuming .* \(\d+\.\d s\)/,
    );

    const tpl = JSON.parse(
      ok(await wrenn(["snapshot", "--json", id, "cli-snap"], { env })).stdout,
    ) as { name: string };
    assert.equal(tpl.name, "cli-snap");
    const templates = JSON.parse(
      ok(await wrenn(["template", "ls", "--json", "--type", "snapshot"], { env })).stdout,
    ) as Array<{ name: string }>;
    assert.deepEqual(
      templates.map((t) => t.name),
      ["cli-snap"],
    );
    const tplTable = ok(await wrenn(["template", "ls"], { env })).stdout;
    assert.match(tplTable, /^cli-snap +snapshot +\d+ +\d+ MiB/m);
    assert.match(tplTable, /^minimal +base +any +any /m, "a base template has no shape of its own");
    oneLineError(
      await wrenn(["template", "ls", "--type", "other"], { env }),
      /Allowed choices are base, snapshot/,
    );
    ok(await wrenn(["template", "rm", "cli-snap"], { env }));
    oneLineError(await wrenn(["template", "rm", "cli-snap"], { env }), /\(not_found\)$/);

    ok(await wrenn(["sb", "rm", id, plain.stdout.trim()], { env }));
    const after = JSON.parse(ok(await wrenn(["sb", "ls", "--json"], { env })).stdout) as unknown[];
    assert.equal(after.length, 0);
    oneLineError(await wrenn(["sb", "info", "nosuchsandbox"], { env }), /\(not_found\)$/);

    ok(await wrenn(["logout"], { env }));
    oneLineError(await wrenn(["sb", "ls"], { env }), /not logged in/);
  },
);

test("colours on a terminal only, and not with NO_COLOR", { timeout: 120_000 }, async () => {
  const pty = (await import("node-pty")).default;
  const base: NodeJS.ProcessEnv = {
    ...process.env,
    ...env,
    WRENN_API_URL: h.cp.url,
    WRENN_API_KEY: h.key,
  };
  // Node decides colour from the environment as well as the TTY: a CI runner's
  // TERM=dumb, CI=… or NODE_DISABLE_COLORS turns it off, so the test names its terminal.
  for (const k of ["FORCE_COLOR", "NO_COLOR", "NODE_DISABLE_COLORS", "CI", "TMUX"]) delete base[k];
  base.TERM = "xterm-256color";
  const ls = (extra: NodeJS.ProcessEnv) =>
    new Promise<string>((resolve) => {
      const term = pty.spawn(join(repo, "wrenn"), ["template", "ls"], {
        name: "xterm-256color",
        cols: 120,
        rows: 30,
        env: { ...base, ...extra } as Record<string, string>,
      });
      let out = "";
      term.onData((d) => (out += d));
      term.onExit(() => resolve(out));
    });
  const coloured = await ls({});
  assert.match(coloured, /NAME/);
  assert.ok(
    coloured.includes("\u001b[1m"),
    `bold header on a terminal: ${JSON.stringify(coloured)}`,
  );
  const plain = await ls({ NO_COLOR: "1" });
  assert.match(plain, /NAME/);
  assert.ok(!plain.includes("\u001b[1m"), `NO_COLOR: ${JSON.stringify(plain)}`);
});

test("sandbox metrics: a table, or the samples as JSON", { timeout: 60_000 }, async () => {
  const auth = { ...env, WRENN_API_URL: h.cp.url, WRENN_API_KEY: h.key };
  const id = ok(await wrenn(["sb", "create"], { env: auth })).stdout.trim();
  ok(await wrenn(["sb", "metrics", id], { env: auth }));
  h.agents[0]!.metrics.set(id, [
    create(SandboxMetricSchema, {
      timestampMs: BigInt(Date.UTC(2026, 0, 1, 12, 0, 5)),
      cpuCount: 2,
      cpuUsedPct: 37.5,
      memUsedBytes: 100n << 20n,
      memTotalBytes: 512n << 20n,
      diskUsedBytes: 1n << 30n,
      diskTotalBytes: 20n << 30n,
    }),
  ]);
  assert.equal(
    ok(await wrenn(["sb", "metrics", id], { env: auth })).stdout,
    "TIME      CPU         MEMORY             DISK\n12:00:05  37.5% of 2  100 MiB / 512 MiB  1.0 GiB / 20 GiB\n",
  );
  const samples = JSON.parse(
    ok(await wrenn(["sb", "metrics", "--json", id], { env: auth })).stdout,
  ) as Array<{ cpu_used_pct: number }>;
  assert.equal(samples[0]?.cpu_used_pct, 37.5);
  ok(await wrenn(["sb", "rm", id], { env: auth }));
});

test("sandbox logs: the console, as JSON, and followed", { timeout: 180_000 }, async () => {
  const auth = { ...env, WRENN_API_URL: h.cp.url, WRENN_API_KEY: h.key };
  const id = ok(await wrenn(["sb", "create"], { env: auth })).stdout.trim();
  const consoles = h.agents[0]!.consoles;
  consoles.set(id, "[    0.1] booting\nenvd listening\n");
  assert.equal(
    ok(await wrenn(["sb", "logs", id], { env: auth })).stdout,
    "[    0.1] booting\nenvd listening\n",
  );
  const read = JSON.parse(ok(await wrenn(["sb", "logs", "--json", id], { env: auth })).stdout) as {
    text: string;
    offset: number;
    next_offset: number;
  };
  assert.deepEqual(read, {
    text: "[    0.1] booting\nenvd listening\n",
    offset: 0,
    next_offset: 33,
  });

  // --follow prints what is written later, until it is stopped.
  const child = spawn(
    process.execPath,
    [join(repo, "packages/cli/src/main.ts"), "sb", "logs", "-f", id],
    {
      env: auth,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  try {
    const until = async (re: RegExp) => {
      for (let i = 0; i < 100 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(out, re);
    };
    await until(/envd listening\n$/);
    consoles.set(id, `${consoles.get(id)}a later line\n`);
    await until(/envd listening\na later line\n$/);
  } finally {
    child.kill("SIGINT");
  }
  ok(await wrenn(["sb", "pause", id], { env: auth }));
  oneLineError(
    await wrenn(["sb", "logs", id], { env: auth }),
    /it is paused.*\(failed_precondition\)$/,
  );
  ok(await wrenn(["sb", "rm", id], { env: auth }));
});

test(
  "on a terminal: a spinner for create, a progress bar for cp",
  { timeout: 120_000 },
  async () => {
    const pty = (await import("node-pty")).default;
    const auth: NodeJS.ProcessEnv = {
      ...process.env,
      ...env,
      WRENN_API_URL: h.cp.url,
      WRENN_API_KEY: h.key,
    };
    const run = (args: string[]) =>
      new Promise<{ out: string; code: number }>((resolve) => {
        const term = pty.spawn(join(repo, "wrenn"), args, {
          cols: 150,
          rows: 30,
          env: auth as Record<string, string>,
        });
        let out = "";
        term.onData((d) => (out += d));
        term.onExit(({ exitCode }) => resolve({ out, code: exitCode }));
      });
    const created = await run(["sb", "create"]);
    assert.equal(created.code, 0, created.out);
    assert.match(created.out, /⠋ creating a sandbox from 'minimal' \d+\.\d s/);
    assert.match(created.out, /✓ creating a sandbox from 'minimal' \(\d+\.\d s\)/);
    const id = /^([a-z0-9]+)\r?$/m.exec(created.out)?.[1];
    assert.ok(id, created.out);
    const local = join(dir, "bar.bin");
    await writeFile(local, randomBytes(2 << 20));
    const up = await run(["sb", "cp", local, `${id}:/tmp/bar.bin`]);
    assert.equal(up.code, 0, up.out);
    assert.match(
      up.out,
      /→ [a-z0-9]+:\/tmp\/bar\.bin \[█{24}\] 100% 2\.0 MiB\/2\.0 MiB \S+ \S+\/s ETA 0:00/,
    );
    ok(await wrenn(["sb", "rm", id], { env: auth }));
  },
);

test(
  "a reader that goes away (| head) ends the command quietly with 141",
  { timeout: 60_000 },
  async () => {
    const auth = { ...env, WRENN_API_URL: h.cp.url, WRENN_API_KEY: h.key };
    const id = ok(await wrenn(["sb", "create"], { env: auth })).stdout.trim();
    // Small enough that the whole answer is sent before the reader goes: a read
    // left mid-way would keep the fake agent from closing at the end.
    h.agents[0]!.generated.set(`${id}:/big`, 1 << 20);
    // Not spawnSync: the control plane answering it runs in this process.
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
      execFile(
        "bash",
        [
          "-c",
          `"${join(repo, "wrenn")}" sb cp ${id}:/big - | head -c 10 >/dev/null; echo "\${PIPESTATUS[0]}"`,
        ],
        { env: { ...process.env, ...auth }, timeout: 50_000 },
        (_err, stdout, stderr) => resolve({ stdout, stderr }),
      );
    });
    assert.equal(r.stdout.trim(), "141", r.stderr);
    assert.equal(r.stderr, "", "nothing to report");
    ok(await wrenn(["sb", "rm", id], { env: auth }));
  },
);
