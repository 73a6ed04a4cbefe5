import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, statfs } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { createLogger } from "@wrenn/shared/log.ts";
import { cpuPercent, parseMeminfo, parseProcStat, type Metrics } from "../src/http/metrics.ts";
import { startEnvd } from "../src/server.ts";

const log = createLogger("envd-test", "warn");

const STAT = `cpu  100 5 50 800 20 3 2 10 7 0
cpu0 50 2 25 400 10 1 1 5 3 0
intr 12345
`;

describe("envd GET /metrics", () => {
  test("/proc/stat: busy is user+nice+system+irq+softirq+steal, idle adds iowait, guest left out", () => {
    assert.deepEqual(parseProcStat(STAT), { busy: 170, total: 990 });
    assert.throws(() => parseProcStat("cpu0 1 2 3 4\n"), /aggregate cpu line/);
  });

  test("CPU percent is the busy share between two readings, clamped and rounded", () => {
    assert.equal(cpuPercent({ busy: 100, total: 1000 }, { busy: 150, total: 1200 }), 25);
    assert.equal(cpuPercent({ busy: 0, total: 0 }, { busy: 1, total: 3 }), 33.33);
    assert.equal(cpuPercent({ busy: 5, total: 10 }, { busy: 5, total: 10 }), 0);
  });

  test("/proc/meminfo: used is MemTotal − MemAvailable, in bytes; old kernels estimate", () => {
    const now = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    600 kB\n";
    assert.deepEqual(parseMeminfo(now), { total: 1000 * 1024, used: 400 * 1024 });
    const old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
    assert.deepEqual(parseMeminfo(old), { total: 1000 * 1024, used: 600 * 1024 });
    assert.throws(() => parseMeminfo("MemFree: 1 kB\n"), /MemTotal/);
  });

  test("answers E2B's shape from this machine, needs the token once set, CPU rises under load", async (t) => {
    const envd = await startEnvd({ port: 0, host: "127.0.0.1", log });
    t.after(() => envd.close());
    const get = (headers: Record<string, string> = {}) => fetch(`${envd.url}/metrics`, { headers });

    const res = await get();
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const m = (await res.json()) as Metrics;
    assert.deepEqual(Object.keys(m).sort(), [
      "cpu_count",
      "cpu_used_pct",
      "disk_total",
      "disk_used",
      "mem_total",
      "mem_used",
      "ts",
    ]);
    assert.ok(Math.abs(m.ts - Date.now() / 1000) < 5, `ts ${m.ts} is Unix seconds`);
    assert.equal(m.cpu_count, availableParallelism());
    const mem = parseMeminfo(await readFile("/proc/meminfo", "utf8"));
    assert.equal(m.mem_total, mem.total);
    assert.ok(m.mem_used > 0 && m.mem_used < m.mem_total, `mem_used ${m.mem_used}`);
    const fs = await statfs("/");
    assert.equal(m.disk_total, fs.blocks * fs.bsize);
    assert.ok(m.disk_used > 0 && m.disk_used <= m.disk_total);

    // One core kept busy for the whole interval: at least that share of the machine is busy.
    const until = performance.now() + 1000;
    while (performance.now() < until) Math.sqrt(Math.random());
    const busy = (await (await get()).json()) as Metrics;
    const floor = (100 / busy.cpu_count) * 0.8;
    assert.ok(busy.cpu_used_pct >= floor, `cpu_used_pct ${busy.cpu_used_pct} < ${floor}`);
    assert.ok(busy.cpu_used_pct <= 100);

    envd.context.state.accessToken = "tok-metrics";
    const refused = await get();
    assert.equal(refused.status, 401);
    assert.match(((await refused.json()) as { message: string }).message, /X-Access-Token/);
    assert.equal((await get({ "x-access-token": "tok-metrics" })).status, 200);
    assert.equal((await fetch(`${envd.url}/health`)).status, 204);
  });
});
