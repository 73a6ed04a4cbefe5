import { test } from "node:test";
import assert from "node:assert/strict";
import { cpus, totalmem } from "node:os";
import { HostUsageMeter, parseMeminfo, parseProcStat } from "../src/rpc/host-info.ts";

test("/proc/stat and /proc/meminfo parse: busy is all but idle and iowait", () => {
  const t = parseProcStat("cpu  100 10 50 800 40 0 5 0 0 0\ncpu0 1 2 3 4\n", 7);
  assert.deepEqual(t, { atMs: 7, total: 1005, busy: 165 });
  assert.deepEqual(parseMeminfo("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:   600 kB\n"), {
    totalKb: 1000,
    availableKb: 600,
  });
  assert.throws(() => parseMeminfo("MemTotal: 1 kB\n"), /MemAvailable/);
});

test(
  "the meter measures this host: CPU busy over the interval, memory in use, VMM memory by PSS",
  { timeout: 30_000 },
  async () => {
    // This process stands in for a VMM: its resident memory is counted.
    const meter = new HostUsageMeter({ vmmPids: () => [process.pid], minIntervalMs: 200 });
    const end = Date.now() + 1200;
    while (Date.now() < end) Math.sqrt(Math.random());
    const u = await meter.measure();
    const ncpu = cpus().length;
    assert.ok(u.cpuBusyCores >= 0.5 && u.cpuBusyCores <= ncpu, `busy ${u.cpuBusyCores} of ${ncpu}`);
    assert.ok(u.cpuIntervalMs >= 1000, `interval ${u.cpuIntervalMs} ms`);
    const totalMb = Math.floor(totalmem() / 2 ** 20);
    assert.ok(u.memoryUsedMb > 0 && u.memoryUsedMb <= totalMb, `used ${u.memoryUsedMb} MiB`);
    assert.ok(u.memoryAvailableMb > 0 && u.memoryAvailableMb < totalMb);
    assert.ok(u.vmmCount >= 1 && u.vmmMemoryMb >= 10, `vmm ${u.vmmCount}: ${u.vmmMemoryMb} MiB`);
    // Asked again at once: the last interval's figure, not a noisy one of a few ms.
    const again = await meter.measure();
    assert.equal(again.cpuBusyCores, u.cpuBusyCores);
    // A pid that is gone is skipped, not an error.
    const gone = new HostUsageMeter({ vmmPids: () => [2 ** 22 + 17] });
    await gone.measure();
  },
);
