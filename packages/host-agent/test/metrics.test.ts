/**
 * GetSandboxMetrics on a real VM: the agent samples the guest's envd on an
 * interval; CPU, memory and disk figures follow what runs in the guest.
 * Needs root and the image (`./wrenn image build`).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { SandboxMetric } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { until } from "@wrenn/shared/testing/until.ts";
import { AgentHarness, connectCode, vmSkipReason } from "./agent-harness.ts";

const INTERVAL_MS = 300;
const MEMORY_MB = 256;
const MiB = 1024 * 1024;

const skip = vmSkipReason("host-agent metrics tests");
const h = new AgentHarness("wm", { metricsIntervalMs: INTERVAL_MS });

describe(
  "sandbox metrics sampled from the guest",
  { skip, concurrency: false, timeout: 300_000 },
  () => {
    before(() => h.setUp().then(() => h.start()));
    after(() => h.tearDown());

    const samples = async (id: string, sinceMs = 0n): Promise<SandboxMetric[]> =>
      (await h.client.getSandboxMetrics({ sandboxId: id, sinceMs })).metrics;
    /** Waits for a sample taken after `sinceMs` that satisfies `ok`, and returns it. */
    const sampleWhere = async (
      what: string,
      id: string,
      sinceMs: number,
      ok: (m: SandboxMetric) => boolean,
      timeoutMs = 30_000,
    ): Promise<SandboxMetric> =>
      until(what, timeoutMs, async () => (await samples(id, BigInt(sinceMs))).find(ok));
    /** Waits until at least `n` samples were taken since `sinceMs`. */
    const atLeast = (n: number, id: string, sinceMs = 0) =>
      until(`${n} samples`, 30_000, async () => {
        const got = await samples(id, BigInt(sinceMs));
        return got.length >= n ? got : undefined;
      });

    test("CPU rises under a burner, disk grows by a written file, memory is the guest's RAM; none while paused", async () => {
      const id = h.newId();
      await h.create(id, { memoryMb: MEMORY_MB, token: "metrics-token-0123456789" });
      try {
        const first = (await atLeast(2, id)).at(-1) as SandboxMetric;
        assert.equal(first.cpuCount, 1);
        const memTotal = Number(first.memTotalBytes);
        // MemTotal is the RAM less what the kernel keeps for itself.
        assert.ok(
          memTotal > 0.7 * MEMORY_MB * MiB && memTotal <= MEMORY_MB * MiB,
          `mem_total ${memTotal / MiB} MiB for a ${MEMORY_MB} MiB guest`,
        );
        assert.ok(first.memUsedBytes > 0n && first.memUsedBytes < first.memTotalBytes);
        assert.ok(first.diskTotalBytes > first.diskUsedBytes && first.diskUsedBytes > 0n);

        // Idle: the lowest CPU figure over a few samples.
        const idleFrom = Date.now();
        const idle = Math.min(...(await atLeast(4, id, idleFrom)).map((m) => m.cpuUsedPct));

        const burnFrom = Date.now();
        const burner = h.sh(id, "timeout 15 sh -c 'while :; do :; done'; true", 60);
        const busy = await sampleWhere("a busy sample", id, burnFrom, (m) => m.cpuUsedPct >= 80);
        console.log(`cpu_used_pct idle ${idle}, under a burner ${busy.cpuUsedPct}`);
        assert.ok(busy.cpuUsedPct >= idle + 30, `idle ${idle} → busy ${busy.cpuUsedPct}`);
        await burner;

        const size = 64 * MiB;
        const beforeWrite = (await samples(id)).at(-1) as SandboxMetric;
        const wrote = await h.sh(
          id,
          `dd if=/dev/zero of=/home/user/blob bs=1M count=64 conv=fsync 2>&1; sync`,
          120,
        );
        assert.equal(wrote.exitCode, 0, wrote.stdout);
        const writtenAt = Date.now();
        const grown = await sampleWhere("a sample after the write", id, writtenAt, () => true);
        const delta = Number(grown.diskUsedBytes - beforeWrite.diskUsedBytes);
        console.log(`disk_used grew ${(delta / MiB).toFixed(1)} MiB for a 64 MiB file`);
        assert.ok(
          Math.abs(delta - size) < 8 * MiB,
          `disk_used grew ${delta / MiB} MiB, wrote 64 MiB`,
        );

        const since = await samples(id, BigInt(writtenAt));
        assert.ok(since.every((m) => m.timestampMs >= BigInt(writtenAt)));
        const all = await samples(id);
        assert.ok(
          all.every(
            (m, i) => i === 0 || m.timestampMs >= (all[i - 1] as SandboxMetric).timestampMs,
          ),
          "oldest first",
        );

        await h.client.pauseSandbox({ sandboxId: id });
        const pausedCount = (await samples(id)).length;
        await new Promise((r) => setTimeout(r, INTERVAL_MS * 5));
        assert.equal((await samples(id)).length, pausedCount, "no samples while paused");
        const resumedAt = Date.now();
        await h.client.resumeSandbox({ sandboxId: id });
        const after = await sampleWhere("a sample after resume", id, resumedAt, () => true);
        // The file is still there after the round trip through the pause folder.
        assert.ok(after.diskUsedBytes >= grown.diskUsedBytes - BigInt(4 * MiB));
      } finally {
        await h.client.destroySandbox({ sandboxId: id }).catch(() => undefined);
      }
      const gone = await samples(id).catch((e: unknown) => e);
      assert.equal(connectCode(gone), Code.NotFound);
      await h.noLeaks();
    });

    test("unknown sandbox and bad ids are refused", async () => {
      const unknown = await samples("nosuchsandbox").catch((e: unknown) => e);
      assert.equal(connectCode(unknown), Code.NotFound);
      const bad = await samples("Bad-Id").catch((e: unknown) => e);
      assert.equal(connectCode(bad), Code.InvalidArgument);
    });
  },
);
