/**
 * The metrics sampler's bookkeeping without VMs: a small HTTP server on
 * loopback stands in for a guest's envd /metrics (the real-VM path is
 * metrics.test.ts), reached through the agent's real EnvdClient.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger } from "@wrenn/shared/log.ts";
import { EnvdClient } from "../src/envd/client.ts";
import { MetricsSampler, type SampleTarget } from "../src/sandbox/metrics.ts";
import type { SandboxRecord } from "../src/sandbox/records.ts";

interface Guest {
  address: string;
  requests: number;
  /** What the next answers are: a sample, an error status, a bad shape, or held. */
  mode: "ok" | "error" | "bad" | "hold";
  held: ServerResponse[];
}

async function guest(t: TestContext): Promise<Guest> {
  const g: Guest = { address: "", requests: 0, mode: "ok", held: [] };
  const server = createServer((req, res) => {
    g.requests++;
    assert.equal(req.url, "/metrics");
    assert.equal(req.headers["x-access-token"], "tok");
    if (g.mode === "hold") return void g.held.push(res);
    if (g.mode === "error") return void res.writeHead(500).end("boom");
    const body =
      g.mode === "bad"
        ? { ts: 1, cpu_used_pct: 250 }
        : {
            ts: Math.floor(Date.now() / 1000),
            cpu_count: 2,
            cpu_used_pct: g.requests,
            mem_total: 1000,
            mem_used: 400,
            disk_used: 10,
            disk_total: 100,
          };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  g.address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(() => {
    for (const res of g.held) res.destroy();
    server.closeAllConnections();
    server.close();
  });
  return g;
}

/** A running sandbox, created `agoMs` ago (long enough by default to be sampled at once). */
function record(id: string, agoMs = 60_000): SandboxRecord {
  return { id, status: "running", createdAtMs: Date.now() - agoMs } as SandboxRecord;
}

/** Samples every running sandbox each round, watched or not (idleIntervalMs 0). */
function sampler(targets: () => SampleTarget[], keep = 3) {
  return new MetricsSampler({
    source: { sampleTargets: targets, list: () => targets().map((t) => t.record) },
    log: createLogger("test", "silent"),
    intervalMs: 1000,
    idleIntervalMs: 0,
    keep,
  });
}

/** A guest for `r` and a sampler of it alone, on the given intervals. */
async function samplerOfOne(
  t: TestContext,
  r: SandboxRecord,
  intervals: { intervalMs: number; idleIntervalMs?: number; watchMs?: number },
) {
  const g = await guest(t);
  const envd = new EnvdClient(g.address, "tok");
  t.after(() => envd.close());
  const s = new MetricsSampler({
    source: { sampleTargets: () => [{ record: r, envd }], list: () => [r] },
    log: createLogger("test", "silent"),
    ...intervals,
  });
  return { g, s };
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

test("keeps the last N samples per sandbox, oldest first, filtered by time", async (t) => {
  const g = await guest(t);
  const envd = new EnvdClient(g.address, "tok");
  t.after(() => envd.close());
  const r = record("a");
  const s = sampler(() => [{ record: r, envd }]);
  for (let i = 0; i < 5; i++) {
    await s.tick();
    await new Promise((res) => setTimeout(res, 5));
  }
  const all = s.samples(r);
  assert.deepEqual(
    all.map((m) => m.cpuUsedPct),
    [3, 4, 5],
  );
  assert.deepEqual(all[0], { ...all[0], cpuCount: 2, memTotalBytes: 1000, memUsedBytes: 400 });
  const since = all[1]?.timestampMs as number;
  assert.deepEqual(
    s.samples(r, since).map((m) => m.cpuUsedPct),
    [4, 5],
  );
});

test("a new record under the same id starts afresh; a gone one is dropped", async (t) => {
  const g = await guest(t);
  const envd = new EnvdClient(g.address, "tok");
  t.after(() => envd.close());
  let current = record("a");
  const first = current;
  const s = sampler(() => [{ record: current, envd }]);
  await s.tick();
  assert.equal(s.samples(first).length, 1);
  current = record("a"); // destroyed and created again
  assert.deepEqual(s.samples(current), [], "not the old sandbox's samples");
  await s.tick();
  assert.equal(s.samples(current).length, 1);
  assert.deepEqual(s.samples(first), []);
});

test("failed samples are skipped; a guest that has not answered is not asked again", async (t) => {
  const g = await guest(t);
  const envd = new EnvdClient(g.address, "tok");
  t.after(() => envd.close());
  const r = record("a");
  const s = sampler(() => [{ record: r, envd }]);
  g.mode = "error";
  await s.tick();
  g.mode = "bad";
  await s.tick();
  assert.deepEqual(s.samples(r), []);
  assert.equal(g.requests, 2);

  g.mode = "hold";
  const slow = s.tick();
  await new Promise((res) => setTimeout(res, 100));
  await s.tick(); // the first is still in flight: no second request
  assert.equal(g.requests, 3);
  g.mode = "ok";
  for (const res of g.held.splice(0)) {
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        ts: 1,
        cpu_count: 1,
        cpu_used_pct: 50,
        mem_total: 1,
        mem_used: 1,
        disk_used: 1,
        disk_total: 1,
      }),
    );
  }
  await slow;
  assert.deepEqual(
    s.samples(r).map((m) => m.cpuUsedPct),
    [50],
  );
});

test(
  "nobody asking: sampled once it has run an interval, then every idle interval; an ask samples a stale sandbox at once and keeps it sampled each round while watched",
  { timeout: 30_000 },
  async (t) => {
    const r = record("a", 0);
    const { g, s } = await samplerOfOne(t, r, {
      intervalMs: 500,
      idleIntervalMs: 2000,
      watchMs: 1000,
    });
    await s.tick();
    assert.equal(g.requests, 0, "a sandbox that has just started is left to its user");
    await sleep(550);
    await s.tick();
    assert.equal(g.requests, 1, "sampled once it has run an interval");
    await s.tick();
    await s.tick();
    assert.equal(g.requests, 1, "an unwatched sandbox is left alone between idle samples");
    await sleep(2100);
    await s.tick();
    assert.equal(g.requests, 2, "the idle interval passed");

    await sleep(600);
    assert.equal(s.samples(r).length, 2);
    for (let i = 0; i < 100 && g.requests < 3; i++) await sleep(10);
    assert.equal(g.requests, 3, "an ask finding the latest sample stale takes one now");
    assert.equal(s.samples(r).length, 3);
    assert.equal(g.requests, 3, "not again while the latest is fresh");
    await s.tick();
    await s.tick();
    assert.equal(g.requests, 5, "a watched sandbox is sampled every round");

    await sleep(1100);
    await s.tick();
    assert.equal(g.requests, 5, "no ask for watchMs: back to the idle interval");
  },
);

test("a sandbox that has just started is sampled at the next round once someone asks about it", async (t) => {
  const r = record("a", 0);
  const { g, s } = await samplerOfOne(t, r, { intervalMs: 60_000 });
  await s.tick();
  assert.equal(g.requests, 0);
  assert.deepEqual(s.samples(r), []);
  await s.tick();
  assert.equal(g.requests, 1, "watched");
  assert.equal(s.samples(r).length, 1);
});
