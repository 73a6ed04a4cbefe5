import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { SandboxMetricSchema } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { startHarness, type Harness } from "../../control-plane/test/harness.ts";
import type { WrennApiError } from "../src/index.ts";
import {
  AuthenticationError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  Sandbox,
  UnavailableError,
  Wrenn,
} from "../src/index.ts";

// The control plane with the fake agent: REST, the exec WebSocket and file streams are real.
let h: Harness;
let wrenn: Wrenn;

before(async () => {
  h = await startHarness("pglite");
  wrenn = Wrenn.connect({ apiUrl: h.cp.url, apiKey: h.key });
});
after(async () => {
  await h?.close();
});

test("create, get, list, exec (buffered and streamed), destroy", { timeout: 30_000 }, async () => {
  const sb = await Sandbox.create(wrenn, { template: "minimal", timeout_sec: 60 });
  assert.equal(sb.status, "running");
  assert.equal((await Sandbox.get(wrenn, sb.id)).info.template, "minimal");
  assert.ok((await Sandbox.list(wrenn)).some((s) => s.id === sb.id));

  const r = await sb.exec("echo", ["hi", "there"]);
  assert.deepEqual([r.stdout, r.exitCode], ["echo hi there\n", 0]);
  assert.equal((await sb.exec("false")).exitCode, 1);

  const out: string[] = [];
  const end = await sb.execStream("printf", ["a", "b"], {
    onStdout: (d) => out.push(Buffer.from(d).toString()),
  });
  assert.deepEqual([out, end.exitCode], [["a", "b"], 0]);
  const types: string[] = [];
  for await (const ev of sb.stream("printf", ["x"])) types.push(ev.type);
  assert.deepEqual(types, ["start", "stdout", "end"]);

  await sb.destroy();
  assert.equal((await Sandbox.get(wrenn, sb.id)).status, "stopped");
  await assert.rejects(Sandbox.get(wrenn, "nosuchsandbox"), NotFoundError);
});

test("files stream both ways: 256 MiB in bounded memory", { timeout: 120_000 }, async () => {
  const sb = await Sandbox.create(wrenn);
  assert.deepEqual(await sb.files.write("/tmp/small.txt", "hello"), {
    path: "/tmp/small.txt",
    size: 5,
  });
  assert.equal(await sb.files.readText("/tmp/small.txt"), "hello");
  // Data in memory is sent with its length; a stream (below) as it comes.
  assert.equal(typeof h.agents[0]!.written.get(`${sb.id}:/tmp/small.txt`)?.contentLength, "number");

  const size = 256 << 20;
  const block = new Uint8Array(1 << 20).map((_, i) => i % 251);
  const hash = createHash("sha256");
  async function* data() {
    for (let sent = 0; sent < size; sent += block.length) {
      hash.update(block);
      yield block;
    }
  }
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    assert.equal((await sb.files.write("/big", data())).size, size);
  } finally {
    clearInterval(sampler);
  }
  assert.deepEqual(h.agents[0]!.written.get(`${sb.id}:/big`), {
    size,
    sha256: hash.digest("hex"),
    contentLength: undefined,
  });
  // A stream of known size goes with its length; one that yields another size fails.
  const stream = async function* (n: number) {
    yield new Uint8Array(n).fill(0x62);
  };
  await sb.files.write("/sized", stream(1000), { size: 1000 });
  const sized = h.agents[0]!.written.get(`${sb.id}:/sized`);
  assert.equal(sized?.size, 1000);
  assert.equal(sized?.contentLength, 1000, "the raw body's length went with it");
  await assert.rejects(sb.files.write("/short", stream(10), { size: 1000 }));
  assert.equal(h.agents[0]!.written.has(`${sb.id}:/short`), false);
  await assert.rejects(sb.files.write("/bad", "x", { size: -1 }), /whole number of bytes/);
  // Both ends of the upload share this process; a buffered body alone would add 256 MiB.
  assert.ok(peak - rss0 < 128 << 20, `rss grew ${(peak - rss0) >> 20} MiB`);

  h.agents[0]!.generated.set(`${sb.id}:/gen`, 32 << 20);
  let got = 0;
  for await (const chunk of (await sb.files.read("/gen")) as unknown as AsyncIterable<Uint8Array>)
    got += chunk.length;
  assert.equal(got, 32 << 20);
  await assert.rejects(sb.files.read("/missing"), NotFoundError);
  await sb.destroy();
});

test("pause, resume, snapshot, templates", { timeout: 30_000 }, async () => {
  const sb = await Sandbox.create(wrenn);
  assert.equal((await sb.pause()).status, "paused");
  await assert.rejects(sb.exec("echo"), ConflictError);
  await assert.rejects(
    (async () => {
      for await (const _ of sb.stream("echo")) void _;
    })(),
    (err: unknown) => err instanceof ConflictError && err.status === 409,
  );
  assert.equal((await sb.resume({ timeoutSec: 120 })).status, "running");
  const tpl = await sb.snapshot("sdk-snap");
  assert.equal(tpl.name, "sdk-snap");
  assert.equal(sb.status, "paused");
  assert.ok((await wrenn.listTemplates({ type: "snapshot" })).some((t) => t.name === "sdk-snap"));
  await wrenn.deleteTemplate("sdk-snap");
  await assert.rejects(wrenn.deleteTemplate("sdk-snap"), NotFoundError);
  await sb.destroy();
});

test("metrics: the host's samples of a running sandbox", { timeout: 30_000 }, async () => {
  const sb = await Sandbox.create(wrenn);
  h.agents[0]!.metrics.set(sb.id, [
    create(SandboxMetricSchema, {
      timestampMs: 1_700_000_000_000n,
      cpuCount: 2,
      cpuUsedPct: 37.5,
      memUsedBytes: 100n << 20n,
      memTotalBytes: 512n << 20n,
      diskUsedBytes: 1n << 30n,
      diskTotalBytes: 20n << 30n,
    }),
  ]);
  assert.deepEqual(await sb.metrics(), [
    {
      timestamp_ms: 1_700_000_000_000,
      cpu_count: 2,
      cpu_used_pct: 37.5,
      mem_used_bytes: 100 << 20,
      mem_total_bytes: 512 << 20,
      disk_used_bytes: 1 << 30,
      disk_total_bytes: 20 * 2 ** 30,
    },
  ]);
  assert.deepEqual(await sb.metrics({ sinceMs: 1_800_000_000_000 }), []);
  await sb.destroy();
});

test("errors are typed and carry the API's code", { timeout: 30_000 }, async () => {
  const bad = Wrenn.connect({ apiUrl: h.cp.url, apiKey: "wrk_nope" });
  const err = await Sandbox.list(bad).catch((e: unknown) => e);
  assert.ok(err instanceof AuthenticationError, String(err));
  assert.equal((err as WrennApiError).code, "unauthenticated");
  assert.equal((err as WrennApiError).status, 401);
  await assert.rejects(Sandbox.create(wrenn, { vcpus: 0 }), InvalidArgumentError);

  // A refused WebSocket handshake keeps the API's code too.
  const sb = await Sandbox.create(wrenn);
  const badSb = await Sandbox.get(wrenn, sb.id);
  await sb.destroy();
  await assert.rejects(
    badSb.execStream("echo"),
    (e: unknown) => e instanceof ConflictError && /it is stopped/.test(e.message),
  );

  // A team at its quota: the 429's own code, not a generic one.
  const me = (await (await h.api("/v1/me")).json()) as { team_id: string };
  const limits = `/v1/admin/teams/${me.team_id}/limits`;
  assert.equal((await h.api(limits, { method: "PUT", json: { sandboxes: 0 } })).status, 200);
  try {
    const full = await Sandbox.create(wrenn).catch((e: unknown) => e);
    assert.ok(full instanceof ResourceExhaustedError, String(full));
    assert.equal((full as WrennApiError).code, "quota_exceeded");
    assert.equal((full as WrennApiError).status, 429);
  } finally {
    await h.api(limits, { method: "PUT", json: { sandboxes: null } });
  }

  const down = Wrenn.connect({ apiUrl: "http://127.0.0.1:9", apiKey: "k" });
  const e2 = await Sandbox.list(down).catch((e: unknown) => e);
  assert.ok(e2 instanceof UnavailableError);
  assert.match((e2 as Error).message, /cannot reach the Wrenn API at http:\/\/127\.0\.0\.1:9/);
  assert.throws(() => Wrenn.connect({ apiUrl: "nope", apiKey: "k" }), /not a URL/);
});
