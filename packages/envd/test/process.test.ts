// The Process service through our own Connect client, in both of Connect's
// encodings, against envd started in-process.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request, type IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Process,
  type ConnectResponse,
  type StartRequestSchema,
  type StreamInputRequestSchema,
  type StartResponse,
} from "@wrenn/proto/process/process_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startEnvd, type Envd } from "../src/server.ts";

// Every process a test starts carries this, so leaks can be found in /proc.
const MARK = `wrenn-process-test-${randomUUID()}`;

type StartInit = MessageInitShape<typeof StartRequestSchema>;
type StreamInputInit = MessageInitShape<typeof StreamInputRequestSchema>;

interface StartExtra {
  process?: { cwd?: string; envs?: Record<string, string> };
  pty?: { size?: { cols: number; rows: number } };
  tag?: string;
  stdin?: boolean;
}

interface Collected {
  pid: number;
  stdout: string;
  stderr: string;
  pty: string;
  keepalives: number;
  end?: { exitCode: number; exited: boolean; status: string; error?: string };
}

function req(cmd: string, args: string[] = [], extra: StartExtra = {}): StartInit {
  const { process: proc, ...rest } = extra;
  return {
    process: { cmd, args, ...proc, envs: { WRENN_TEST_MARK: MARK, ...proc?.envs } },
    ...rest,
  };
}

async function collect(
  stream: AsyncIterable<StartResponse | ConnectResponse>,
  onStart?: (pid: number) => void | Promise<void>,
): Promise<Collected> {
  const out: Collected = { pid: 0, stdout: "", stderr: "", pty: "", keepalives: 0 };
  const dec = new TextDecoder();
  for await (const res of stream) {
    const ev = res.event?.event;
    switch (ev?.case) {
      case "start":
        out.pid = ev.value.pid;
        await onStart?.(ev.value.pid);
        break;
      case "data":
        if (ev.value.output.case !== undefined) {
          out[ev.value.output.case] += dec.decode(ev.value.output.value);
        }
        break;
      case "end":
        out.end = {
          exitCode: ev.value.exitCode,
          exited: ev.value.exited,
          status: ev.value.status,
          ...(ev.value.error !== undefined && { error: ev.value.error }),
        };
        break;
      case "keepalive":
        out.keepalives++;
        break;
    }
  }
  return out;
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

function isCode(code: Code) {
  return (err: unknown) => {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

async function until<T>(fn: () => Promise<T | undefined>, what: string, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let envd: Envd;
let workdir: string;

before(async () => {
  // A reader that stops reading is cut off after this long (default 10 s).
  process.env.WRENN_ENVD_OUTPUT_STALL_MS = "1000";
  envd = await startEnvd({
    port: 0,
    host: "127.0.0.1",
    defaultUser: "root",
    log: createLogger("envd-test", "silent"),
  });
  workdir = await mkdtemp(join(tmpdir(), "wrenn-process-"));
});

after(async () => {
  const leaked = await markedPids();
  for (const pid of leaked) process.kill(pid, "SIGKILL");
  await envd?.close();
  await rm(workdir, { recursive: true, force: true });
  assert.deepEqual(leaked, [], "processes started by the tests are still running");
});

for (const useBinaryFormat of [true, false]) {
  describe(useBinaryFormat ? "binary protobuf" : "JSON", () => {
    let client: Client<typeof Process>;
    before(() => {
      client = createClient(
        Process,
        createConnectTransport({ baseUrl: envd.url, httpVersion: "1.1", useBinaryFormat }),
      );
    });
    const byPid = (pid: number) => ({ selector: { case: "pid" as const, value: pid } });
    const byTag = (tag: string) => ({ selector: { case: "tag" as const, value: tag } });

    test("Start streams start, stdout, stderr and end with the exit status", async () => {
      const r = await collect(
        client.start(req("sh", ["-c", "echo out; echo err >&2; exit 3"], { stdin: false })),
      );
      assert.ok(r.pid > 0);
      assert.equal(r.stdout, "out\n");
      assert.equal(r.stderr, "err\n");
      assert.deepEqual(r.end, {
        exitCode: 3,
        exited: true,
        status: "exit status 3",
        error: "exit status 3",
      });
    });

    test("envs, cwd, sandbox env vars below request envs, default cwd is home", async () => {
      envd.context.state.envVars = { FROM_INIT: "init", BOTH: "init" };
      try {
        const r = await collect(
          client.start(
            req("sh", ["-c", 'echo "$FROM_INIT $BOTH $MINE"; pwd; echo $HOME $USER $LOGNAME'], {
              process: { envs: { BOTH: "request", MINE: "mine" }, cwd: workdir },
            }),
          ),
        );
        assert.equal(r.stdout, `init request mine\n${workdir}\n/root root root\n`);
        const home = await collect(client.start(req("pwd")));
        assert.equal(home.stdout, "/root\n");
        envd.context.state.defaultWorkdir = workdir;
        const dflt = await collect(client.start(req("pwd")));
        assert.equal(dflt.stdout, `${workdir}\n`);
      } finally {
        envd.context.state.envVars = {};
        envd.context.state.defaultWorkdir = undefined;
      }
    });

    test("stdin: SendInput, StreamInput and CloseStdin reach the process", async () => {
      const r = await collect(client.start(req("cat")), async (pid) => {
        await client.sendInput({
          process: byPid(pid),
          input: { input: { case: "stdin", value: new TextEncoder().encode("one\n") } },
        });
        await client.streamInput(
          (async function* (): AsyncGenerator<StreamInputInit> {
            yield { event: { case: "start" as const, value: { process: byPid(pid) } } };
            yield {
              event: {
                case: "data" as const,
                value: {
                  input: {
                    input: { case: "stdin" as const, value: new TextEncoder().encode("two\n") },
                  },
                },
              },
            };
            yield { event: { case: "keepalive" as const, value: {} } };
          })(),
        );
        await client.closeStdin({ process: byPid(pid) });
      });
      assert.equal(r.stdout, "one\ntwo\n");
      assert.equal(r.end?.exitCode, 0);
    });

    test("stdin: false gives the process no input, and SendInput says why", async () => {
      // `cat` ends at once on /dev/null; with an open pipe it would wait.
      const r = await collect(client.start(req("cat", [], { stdin: false })));
      assert.equal(r.end?.exitCode, 0);
      const sleeper = client.start(req("sleep", ["30"], { stdin: false, tag: "no-stdin" }));
      const it = sleeper[Symbol.asyncIterator]();
      await it.next();
      await assert.rejects(
        client.sendInput({
          process: byTag("no-stdin"),
          input: { input: { case: "stdin", value: new Uint8Array([1]) } },
        }),
        isCode(Code.FailedPrecondition),
      );
      await client.sendSignal({ process: byTag("no-stdin"), signal: 9 });
      const rest = await collect({ [Symbol.asyncIterator]: () => it });
      assert.equal(rest.end?.status, "signal: killed");
    });

    test("Connect by pid and by tag: every stream gets the output; List shows the process", async () => {
      const tag = `tagged-${useBinaryFormat}`;
      const started = client.start(
        req("sh", ["-c", "read line; echo got $line"], {
          tag,
          process: { cwd: workdir },
        }),
      );
      const it = started[Symbol.asyncIterator]();
      const first = await it.next();
      assert.equal(first.value?.event?.event.case, "start");
      const pid = (first.value?.event?.event.value as { pid: number }).pid;

      const list = await client.list({});
      const info = list.processes.find((p) => p.pid === pid);
      assert.ok(info, "List shows the running process");
      assert.equal(info.tag, tag);
      assert.equal(info.config?.cmd, "sh");
      assert.deepEqual(info.config?.args, ["-c", "read line; echo got $line"]);
      assert.equal(info.config?.cwd, workdir);

      const attached: Promise<Collected>[] = [];
      let ready = 0;
      for (const sel of [byPid(pid), byTag(tag)]) {
        attached.push(collect(client.connect({ process: sel }), () => void ready++));
      }
      await until(async () => (ready === 2 ? true : undefined), "both Connect streams");
      await client.sendInput({
        process: byTag(tag),
        input: { input: { case: "stdin", value: new TextEncoder().encode("hello\n") } },
      });
      const [a, b] = await Promise.all(attached);
      const own = await collect({ [Symbol.asyncIterator]: () => it });
      for (const r of [a, b, own]) {
        assert.equal(r?.stdout, "got hello\n");
        assert.equal(r?.end?.exitCode, 0);
      }
      assert.equal(a?.pid, pid);
      assert.ok(!(await client.list({})).processes.some((p) => p.pid === pid), "ended: not listed");

      // Re-attaching after the end still tells how it ended.
      const late = await collect(client.connect({ process: byPid(pid) }));
      assert.equal(late.pid, pid);
      assert.deepEqual(late.end, { exitCode: 0, exited: true, status: "exit status 0" });
    });

    test("SendSignal reaches the whole process group", async () => {
      const marker = join(workdir, `group-${useBinaryFormat}`);
      const r = await collect(
        client.start(req("sh", ["-c", `sleep 1000 & echo $! > ${marker}; wait`], { stdin: false })),
        async (pid) => {
          await until(
            async () => (await readFile(marker, "utf8").catch(() => "")) || undefined,
            "child pid",
          );
          await client.sendSignal({ process: byPid(pid), signal: 15 });
        },
      );
      assert.deepEqual(r.end, {
        exitCode: -1,
        exited: false,
        status: "signal: terminated",
        error: "signal: terminated",
      });
      const child = Number((await readFile(marker, "utf8")).trim());
      await until(
        async () =>
          (await readFile(`/proc/${child}/stat`, "utf8").catch(() => "")) === "" ? true : undefined,
        "the background child to die",
      );
    });

    test("a stream the client gives a deadline ends; the process runs on and can be re-attached", async () => {
      const tag = `deadline-${useBinaryFormat}`;
      let pid = 0;
      await assert.rejects(
        collect(
          client.start(req("sh", ["-c", "read x; echo late $x"], { tag }), { timeoutMs: 1000 }),
          (p) => void (pid = p),
        ),
        isCode(Code.DeadlineExceeded),
      );
      assert.ok(pid > 0, "the process started before the deadline");
      const listed = (await client.list({})).processes.find((p) => p.tag === tag);
      assert.equal(listed?.pid, pid, "the process outlives its stream");
      const r = await collect(client.connect({ process: byTag(tag) }), async () => {
        await client.sendInput({
          process: byTag(tag),
          input: { input: { case: "stdin", value: new TextEncoder().encode("arrival\n") } },
        });
      });
      assert.equal(r.stdout, "late arrival\n");
      assert.equal(r.end?.exitCode, 0);
    });

    test("keepalive events come at the Keepalive-Ping-Interval (seconds)", async () => {
      const started = performance.now();
      const r = await collect(
        client.start(req("sleep", ["2.5"], { stdin: false }), {
          headers: { "Keepalive-Ping-Interval": "1" },
        }),
      );
      // One a second while the stream was open (a loaded machine may stretch the sleep).
      const seconds = Math.floor((performance.now() - started) / 1000);
      assert.ok(
        r.keepalives >= 2 && r.keepalives <= seconds,
        `got ${r.keepalives} keepalives in ${seconds} s`,
      );
      const quiet = await collect(client.start(req("sleep", ["1.2"], { stdin: false })));
      assert.equal(quiet.keepalives, 0);
    });

    test("PTY: a real terminal of the requested size, input and resize", async () => {
      const first = await collect(
        client.start(
          req("sh", ["-c", "tty; stty size"], { pty: { size: { cols: 100, rows: 30 } } }),
        ),
      );
      assert.match(first.pty, /^\/dev\/pts\/\d+\r\n30 100\r\n$/);
      assert.equal(first.stdout, "");
      assert.equal(first.end?.exitCode, 0);

      const r = await collect(
        client.start(
          req("sh", ["-c", 'read -r line; echo "got $line"; stty size'], {
            pty: { size: { cols: 100, rows: 30 } },
          }),
        ),
        async (pid) => {
          await client.update({ process: byPid(pid), pty: { size: { cols: 120, rows: 40 } } });
          await client.sendInput({
            process: byPid(pid),
            input: { input: { case: "pty", value: new TextEncoder().encode("typed\n") } },
          });
        },
      );
      // The terminal echoes the input before the program answers it.
      assert.match(r.pty, /typed\r\ngot typed\r\n40 120\r\n$/);
      assert.equal(r.end?.exitCode, 0);
    });

    test("PTY: TERM and size default to xterm-256color and 80×24, CloseStdin sends end-of-input", async () => {
      const r = await collect(
        client.start(req("sh", ["-c", "echo $TERM; stty size; cat"], { pty: {} })),
        async (pid) => {
          await client.closeStdin({ process: byPid(pid) });
        },
      );
      assert.match(r.pty, /xterm-256color\r\n24 80\r\n/);
      assert.equal(r.end?.exitCode, 0);
    });

    test("bad input is refused with the right code and a clear message", async () => {
      await assert.rejects(collect(client.start({})), isCode(Code.InvalidArgument));
      await assert.rejects(collect(client.start(req(""))), isCode(Code.InvalidArgument));
      await assert.rejects(collect(client.start(req("no-such-program-wrenn"))), (err) => {
        isCode(Code.NotFound)(err);
        assert.match((err as Error).message, /no-such-program-wrenn.*not found in PATH/);
        return true;
      });
      await assert.rejects(
        collect(client.start(req("pwd", [], { process: { cwd: "/no/such/dir" } }))),
        (err) => isCode(Code.NotFound)(err) && /\/no\/such\/dir/.test((err as Error).message),
      );
      const file = join(workdir, "a-file");
      await writeFile(file, "");
      await assert.rejects(
        collect(client.start(req("pwd", [], { process: { cwd: file } }))),
        isCode(Code.InvalidArgument),
      );
      await assert.rejects(
        collect(
          client.start(req("true"), {
            headers: {
              authorization: `Basic ${Buffer.from("no-such-user-wrenn:").toString("base64")}`,
            },
          }),
        ),
        (err) =>
          isCode(Code.Unauthenticated)(err) && /no-such-user-wrenn/.test((err as Error).message),
      );
      const missing = byPid(2 ** 31);
      await assert.rejects(collect(client.connect({ process: missing })), isCode(Code.NotFound));
      await assert.rejects(
        collect(client.connect({ process: byTag("no-such-tag") })),
        isCode(Code.NotFound),
      );
      await assert.rejects(collect(client.connect({})), isCode(Code.InvalidArgument));
      await assert.rejects(
        client.sendSignal({ process: missing, signal: 9 }),
        isCode(Code.NotFound),
      );
      await assert.rejects(client.closeStdin({ process: missing }), isCode(Code.NotFound));
      await assert.rejects(
        client.sendInput({
          process: missing,
          input: { input: { case: "stdin", value: new Uint8Array([1]) } },
        }),
        isCode(Code.NotFound),
      );
      await assert.rejects(
        client.update({ process: missing, pty: { size: { cols: 1, rows: 1 } } }),
        isCode(Code.NotFound),
      );

      const tag = `bad-${useBinaryFormat}`;
      const it = client.start(req("sleep", ["30"], { tag, stdin: false }))[Symbol.asyncIterator]();
      await it.next();
      await assert.rejects(
        collect(client.start(req("true", [], { tag }))),
        isCode(Code.AlreadyExists),
      );
      await assert.rejects(
        client.update({ process: byTag(tag), pty: { size: { cols: 10, rows: 10 } } }),
        isCode(Code.FailedPrecondition),
      );
      await assert.rejects(client.update({ process: byTag(tag) }), isCode(Code.InvalidArgument));
      await assert.rejects(
        client.sendSignal({ process: byTag(tag), signal: 0 }),
        isCode(Code.InvalidArgument),
      );
      await client.sendSignal({ process: byTag(tag), signal: 9 });
      const rest = await collect({ [Symbol.asyncIterator]: () => it });
      assert.equal(rest.end?.exitCode, -1);
      await assert.rejects(
        client.sendSignal({ process: byTag(tag), signal: 9 }),
        isCode(Code.NotFound),
      );
    });

    test("a client that goes away does not block the process on a full pipe", async () => {
      const done = join(workdir, `gone-${useBinaryFormat}`);
      const controller = new AbortController();
      const stream = client.start(
        req("sh", ["-c", `head -c 64000000 /dev/zero; echo ok > ${done}`], { stdin: false }),
        {
          signal: controller.signal,
        },
      );
      await assert.rejects(
        collect(stream, () => controller.abort()),
        (err) => err instanceof ConnectError && err.code === Code.Canceled,
      );
      await until(
        async () => (await readFile(done, "utf8").catch(() => undefined)) && true,
        "the process to finish",
        20_000,
      );
    });
  });
}

test("a client that stops reading is cut off and the process goes on", async () => {
  const done = join(workdir, "stalled");
  // Connect's streaming framing by hand, so this client can stop reading mid-stream.
  const body = Buffer.from(
    JSON.stringify(
      req("sh", ["-c", `head -c 64000000 /dev/zero; echo ok > ${done}`], { stdin: false }),
    ),
  );
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  const url = new URL("/process.Process/Start", envd.url);
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const r = request(
      url,
      { method: "POST", headers: { "content-type": "application/connect+json" } },
      resolve,
    );
    r.on("error", reject);
    r.end(frame);
  });
  assert.equal(res.statusCode, 200);
  res.pause();
  try {
    await until(
      async () => (await readFile(done, "utf8").catch(() => undefined)) && true,
      "the process to finish",
      20_000,
    );
  } finally {
    res.destroy();
  }
});

test("a background child holding the output pipes does not keep the command from ending", async () => {
  const client = createClient(
    Process,
    createConnectTransport({ baseUrl: envd.url, httpVersion: "1.1", useBinaryFormat: true }),
  );
  const started = performance.now();
  const r = await collect(client.start(req("sh", ["-c", "sleep 30 & echo $!"], { stdin: false })));
  const child = Number(r.stdout.trim());
  try {
    assert.equal(r.end?.exitCode, 0);
    assert.ok(performance.now() - started < 10_000, "ended long before the background sleep");
    assert.ok(child > 0);
    assert.ok(
      (await readFile(`/proc/${child}/cmdline`, "latin1").catch(() => "")).startsWith("sleep"),
      "the background child is still running",
    );
  } finally {
    if (child > 0) process.kill(child, "SIGKILL");
  }
});
