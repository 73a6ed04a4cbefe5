/**
 * 1 GiB through the REST files routes in both directions, with the control
 * plane in its own process (`wrenn control-plane`, as deployed) so its memory
 * can be read from /proc: uploads and downloads must stream end to end. The
 * host agent is the fake one, over real Connect on loopback, in this process;
 * it hashes what it receives and makes up what it sends, holding neither.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { patternChunks, streamUpload } from "@wrenn/shared/testing/streams.ts";
import { startFakeAgent } from "./fake-agent.ts";

const GiB = 1 << 30;
/**
 * A file held whole would add 1024 MiB. What may legitimately show is what is
 * in flight (a few MiB) and spent chunks awaiting collection: V8 lets ~64 MiB
 * of external (Buffer) memory pile up before it forces a GC, and on a busy
 * machine a 1 GiB upload has been seen to peak 55 MiB above its start.
 */
const MAX_GROWTH = 128 << 20;
const repo = resolve(import.meta.dirname, "../../..");

interface Child {
  pid: number;
  url: string;
  hostId: string;
  stopped: () => Promise<number | null>;
}

/** `wrenn control-plane` as a child process, registering `agent`; waits until it listens. */
async function spawnControlPlane(t: TestContext, agent: string, secret: string): Promise<Child> {
  const data = await mkdtemp(join(tmpdir(), "wrenn-cp-large-"));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    WRENN_LOG_LEVEL: "warn",
    WRENN_HOST_SECRET: secret,
  };
  delete env.DATABASE_URL;
  const child = spawn(
    join(repo, "node_modules/.bin/node"),
    [
      join(repo, "packages/cli/src/main.ts"),
      "control-plane",
      "--port",
      "0",
      "--data-dir",
      data,
      "--reconcile-interval",
      "3600",
      "--host-agent",
      agent,
    ],
    { stdio: ["ignore", "pipe", "inherit"], env },
  );
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  t.after(async () => {
    child.kill("SIGKILL");
    await exited;
    await rm(data, { recursive: true, force: true });
  });
  let hostId = "";
  for await (const line of createInterface({ input: child.stdout })) {
    hostId ||= /registered as ([0-9a-f-]{36})/.exec(line)?.[1] ?? "";
    const url = /control plane listening on (http:\/\/\S+) \(API docs at \S+\/docs/.exec(line)?.[1];
    if (url) {
      child.stdout.resume();
      return { pid: child.pid ?? 0, url, hostId, stopped: () => exited };
    }
  }
  throw new Error("wrenn control-plane exited before listening");
}

async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/** Resets the peak RSS (VmHWM) to the current RSS, so the next reading is this phase's peak. */
async function resetPeak(pid: number): Promise<{ rss: number; hwm: number }> {
  await writeFile(`/proc/${pid}/clear_refs`, "5");
  return memory(pid);
}

/**
 * Streams a multipart upload of `total` pattern bytes with backpressure, with
 * its length as the SDKs send one; returns its sha256 and that length.
 */
async function upload(
  url: string,
  key: string,
  total: number,
): Promise<{ sha: string; status: number; body: string; length: number }> {
  const boundary = "wrenn-large-boundary";
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/big\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const length = head.length + total + tail.length;
  const sent = await streamUpload(
    url,
    {
      "x-api-key": key,
      "content-type": `multipart/form-data; boundary=${boundary}`,
      "content-length": String(length),
    },
    total,
    head,
    tail,
  );
  return { ...sent, length };
}

function download(url: string, key: string, path: string): Promise<{ sha: string; bytes: number }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(
      url,
      { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" } },
      (res) => {
        if (res.statusCode !== 200) reject(new Error(`download answered ${res.statusCode}`));
        const hash = createHash("sha256");
        let bytes = 0;
        res.on("data", (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
        });
        res.on("end", () => resolvePromise({ sha: hash.digest("hex"), bytes }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ path }));
  });
}

function sha256Of(chunks: Iterable<Buffer>): string {
  const hash = createHash("sha256");
  for (const c of chunks) hash.update(c);
  return hash.digest("hex");
}

test("wrenn control-plane moves 1 GiB each way through REST files and grows by less than 128 MiB", async (t) => {
  const secret = "large-files-host-secret-0123";
  const agent = await startFakeAgent({ secret });
  t.after(() => agent.close());
  const cp = await spawnControlPlane(t, agent.address, secret);
  assert.match(cp.hostId, /^[0-9a-f-]{36}$/, "--host-agent registers the agent");
  assert.ok(agent.authorizations.includes(`Bearer ${secret}`), "with WRENN_HOST_SECRET");

  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(cp.url + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    assert.ok(res.ok, `${path}: ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const session = await post("/v1/auth/signup", {
    email: "large@example.com",
    password: "a long password",
  });
  const { key } = (await post(
    "/v1/api-keys",
    { name: "large" },
    { authorization: `Bearer ${String(session.token)}` },
  )) as { key: string };
  assert.equal((await fetch(`${cp.url}/docs`)).status, 200);
  const sandbox = await post("/v1/sandboxes", {}, { "x-api-key": key });
  const id = String(sandbox.sandbox_id);
  const files = `${cp.url}/v1/sandboxes/${id}/files`;

  const rate = (since: number) =>
    `${Math.round(1024 / ((performance.now() - since) / 1000))} MiB/s`;
  const before = await resetPeak(cp.pid);
  const t0 = performance.now();
  const up = await upload(`${files}/write`, key, GiB);
  const upRate = rate(t0);
  assert.equal(up.status, 200, up.body);
  assert.deepEqual(JSON.parse(up.body), { path: "/big", size: GiB });
  // The body reaches envd as it came, with its length (envd reads such bodies fastest).
  assert.deepEqual(agent.written.get(`${id}:/big`), {
    size: GiB,
    sha256: up.sha,
    contentLength: up.length,
  });
  const afterUp = await memory(cp.pid);
  const upGrowth = afterUp.hwm - before.rss;
  console.log(
    `1 GiB upload at ${upRate}: control plane RSS ${before.rss >> 20} MiB, peak ${afterUp.hwm >> 20} MiB; largest chunk to the agent ${agent.maxChunk} bytes`,
  );
  assert.ok(upGrowth < MAX_GROWTH, `grew by ${upGrowth >> 20} MiB on a 1 GiB upload (limit 128)`);

  agent.generated.set(`${id}:/gen`, GiB);
  const beforeDown = await resetPeak(cp.pid);
  const t1 = performance.now();
  const down = await download(`${files}/read`, key, "/gen");
  const downRate = rate(t1);
  assert.equal(down.bytes, GiB);
  assert.equal(down.sha, sha256Of(patternChunks(GiB)));
  const afterDown = await memory(cp.pid);
  const downGrowth = afterDown.hwm - beforeDown.rss;
  console.log(
    `1 GiB download at ${downRate}: control plane RSS ${beforeDown.rss >> 20} MiB, peak ${afterDown.hwm >> 20} MiB`,
  );
  assert.ok(
    downGrowth < MAX_GROWTH,
    `grew by ${downGrowth >> 20} MiB on a 1 GiB download (limit 128)`,
  );

  // SIGTERM stops it cleanly.
  process.kill(cp.pid, "SIGTERM");
  assert.equal(await cp.stopped(), 0);
});
