// Process.Start and Connect take envd's lean Connect path (connect-stream.ts);
// what it does not speak goes to connectNodeAdapter. Both must look the same
// on the wire: checked here byte-level and through Connect clients.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport } from "@connectrpc/connect-node";
import {
  Process,
  StartRequestSchema,
  StartResponseSchema,
  type StartResponse,
} from "@wrenn/proto/process/process_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startEnvd, type Envd } from "../src/server.ts";

interface Frame {
  flags: number;
  data: Buffer;
}

interface Raw {
  status: number;
  contentType: string | undefined;
  frames: Frame[];
}

function frame(flags: number, data: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + data.length);
  out[0] = flags;
  out.writeUInt32BE(data.length, 1);
  out.set(data, 5);
  return out;
}

function post(
  url: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const buf = Buffer.concat(chunks);
        const frames: Frame[] = [];
        for (let at = 0; at + 5 <= buf.length;) {
          const length = buf.readUInt32BE(at + 1);
          frames.push({ flags: buf[at]!, data: buf.subarray(at + 5, at + 5 + length) });
          at += 5 + length;
        }
        resolve({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], frames });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The end-stream message's JSON, which must be the last frame. */
function endOf(raw: Raw): { error?: { code: string; message?: string } } {
  const last = raw.frames.at(-1);
  assert.ok(
    last !== undefined && (last.flags & 2) !== 0,
    "the stream ends with an end-stream frame",
  );
  return JSON.parse(last.data.toString("utf8")) as { error?: { code: string; message?: string } };
}

function startFrame(cmd: string, args: string[] = []): Buffer {
  return frame(
    0,
    toBinary(
      StartRequestSchema,
      create(StartRequestSchema, { process: { cmd, args }, stdin: false }),
    ),
  );
}

function events(raw: Raw): StartResponse[] {
  return raw.frames
    .filter((f) => (f.flags & 2) === 0)
    .map((f) => fromBinary(StartResponseSchema, f.data));
}

async function run(client: Client<typeof Process>, cmd: string, args: string[]): Promise<string[]> {
  const seen: string[] = [];
  for await (const res of client.start({ process: { cmd, args }, stdin: false })) {
    const ev = res.event?.event;
    if (ev?.case === "data" && ev.value.output.case !== undefined) {
      seen.push(`${ev.value.output.case}:${new TextDecoder().decode(ev.value.output.value)}`);
    } else if (ev?.case === "end") {
      seen.push(`end:${ev.value.exitCode}:${ev.value.status}`);
    } else if (ev?.case !== undefined) {
      seen.push(ev.case);
    }
  }
  return seen;
}

let envd: Envd;

before(async () => {
  envd = await startEnvd({
    port: 0,
    host: "127.0.0.1",
    defaultUser: "root",
    log: createLogger("envd-test", "silent"),
  });
});

after(async () => {
  await envd?.close();
});

const binary = { "content-type": "application/connect+proto" };

describe("lean Connect streams", () => {
  test("binary and JSON (with a charset) carry the same events as the generic adapter", async () => {
    const script = ["-c", "echo out; echo err >&2; exit 3"];
    const lean = await run(
      createClient(
        Process,
        createConnectTransport({ baseUrl: envd.url, httpVersion: "1.1", useBinaryFormat: true }),
      ),
      "sh",
      script,
    );
    assert.deepEqual(lean.slice(0, 1), ["start"]);
    assert.deepEqual(lean.slice(1, -1).sort(), ["stderr:err\n", "stdout:out\n"]);
    assert.equal(lean.at(-1), "end:3:exit status 3");
    // A gzip-compressed request is not the lean path's: the adapter serves it.
    const adapter = await run(
      createClient(
        Process,
        createConnectTransport({
          baseUrl: envd.url,
          httpVersion: "1.1",
          useBinaryFormat: true,
          sendCompression: compressionGzip,
          compressMinBytes: 0,
        }),
      ),
      "sh",
      script,
    );
    assert.deepEqual(adapter.slice(0, 1), ["start"]);
    assert.deepEqual(adapter.slice(1, -1).sort(), lean.slice(1, -1).sort());
    assert.equal(adapter.at(-1), lean.at(-1));

    const json = await post(
      envd.url,
      "/process.Process/Start",
      { "content-type": "application/connect+json; charset=utf-8" },
      frame(0, Buffer.from(JSON.stringify({ process: { cmd: "true" }, stdin: false, extra: 1 }))),
    );
    assert.equal(json.status, 200);
    assert.equal(json.contentType, "application/connect+json");
    const messages = json.frames
      .filter((f) => (f.flags & 2) === 0)
      .map((f) => JSON.parse(f.data.toString("utf8")) as { event: Record<string, unknown> });
    assert.ok("start" in messages[0]!.event, "JSON events use the proto field names in camelCase");
    assert.deepEqual(messages.at(-1)!.event, {
      end: { exited: true, status: "exit status 0" },
    });
    assert.deepEqual(endOf(json), {});
  });

  test("Start and Connect need X-Access-Token once /init set one", async (t) => {
    envd.context.state.accessToken = "s3cret";
    t.after(() => (envd.context.state.accessToken = undefined));
    for (const useBinaryFormat of [true, false]) {
      const client = createClient(
        Process,
        createConnectTransport({ baseUrl: envd.url, httpVersion: "1.1", useBinaryFormat }),
      );
      await assert.rejects(run(client, "true", []), (err: unknown) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.code, Code.Unauthenticated);
        assert.match(err.message, /X-Access-Token/);
        return true;
      });
      const attach = client.connect({ process: { selector: { case: "pid", value: 1 } } });
      await assert.rejects(
        attach[Symbol.asyncIterator]().next(),
        (err: unknown) => err instanceof ConnectError && err.code === Code.Unauthenticated,
      );
      const ok = await collectWithToken(client);
      assert.equal(ok, "end:0:exit status 0");
    }
  });

  test("a deadline from Connect-Timeout-Ms ends the stream with deadline_exceeded", async () => {
    const started = performance.now();
    const raw = await post(
      envd.url,
      "/process.Process/Start",
      { ...binary, "connect-timeout-ms": "300" },
      startFrame("sleep", ["30"]),
    );
    assert.equal(raw.status, 200);
    const [first] = events(raw);
    assert.equal(first?.event?.event.case, "start");
    assert.equal(endOf(raw).error?.code, "deadline_exceeded");
    assert.ok(performance.now() - started < 10_000, "the stream did not wait for the process");
    // The process outlives its stream; end it here.
    const pid = first?.event?.event.case === "start" ? first.event.event.value.pid : 0;
    process.kill(-pid, "SIGKILL");
  });

  test("a call past its deadline before its body arrived starts nothing", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "wrenn-lean-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const marker = join(dir, "started");
    const raw = await new Promise<Raw>((resolve, reject) => {
      const req = request(
        `${envd.url}/process.Process/Start`,
        { method: "POST", headers: { ...binary, "connect-timeout-ms": "50" } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const buf = Buffer.concat(chunks);
            const length = buf.readUInt32BE(1);
            resolve({
              status: res.statusCode ?? 0,
              contentType: res.headers["content-type"],
              frames: [{ flags: buf[0]!, data: buf.subarray(5, 5 + length) }],
            });
          });
        },
      );
      req.on("error", reject);
      req.flushHeaders();
      setTimeout(() => req.end(startFrame("touch", [marker])), 300);
    });
    assert.equal(endOf(raw).error?.code, "deadline_exceeded");
    await sleep(200);
    await assert.rejects(stat(marker), { code: "ENOENT" }, "the process was never started");
  });

  test("protocol errors come back in the end-stream message, with Connect's codes", async () => {
    const cases: Array<[string, Record<string, string>, Buffer, string]> = [
      [
        "bad timeout",
        { ...binary, "connect-timeout-ms": "soon" },
        startFrame("true"),
        "invalid_argument",
      ],
      ["no message", binary, Buffer.alloc(0), "unimplemented"],
      [
        "two messages",
        binary,
        Buffer.concat([startFrame("true"), startFrame("true")]),
        "unimplemented",
      ],
      [
        "bad JSON",
        { "content-type": "application/connect+json" },
        frame(0, Buffer.from("{")),
        "invalid_argument",
      ],
      ["no cmd", binary, frame(0, new Uint8Array(0)), "invalid_argument"],
      ["unknown program", binary, startFrame("no-such-program-here"), "not_found"],
    ];
    for (const [what, headers, body, code] of cases) {
      const raw = await post(envd.url, "/process.Process/Start", headers, body);
      assert.equal(raw.status, 200, what);
      assert.equal(events(raw).length, 0, `${what}: no events before the error`);
      assert.equal(endOf(raw).error?.code, code, what);
    }
  });
});

async function collectWithToken(client: Client<typeof Process>): Promise<string | undefined> {
  let last: string | undefined;
  for await (const res of client.start(
    { process: { cmd: "true" }, stdin: false },
    { headers: { "x-access-token": "s3cret" } },
  )) {
    const ev = res.event?.event;
    if (ev?.case === "end") last = `end:${ev.value.exitCode}:${ev.value.status}`;
  }
  return last;
}
