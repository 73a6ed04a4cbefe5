import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { eq } from "drizzle-orm";
import { hosts } from "../src/db/schema.ts";
import { DATABASES, startHarness, type Harness } from "./harness.ts";

type ErrorJson = { error: { code: string; message: string } };

async function create(h: Harness, body: Record<string, unknown> = {}) {
  const res = await h.api("/v1/sandboxes", {
    method: "POST",
    json: { vcpus: 1, memory_mb: 512, disk_size_mb: 1024, ...body },
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> & ErrorJson };
}

/** A reconcile pass strictly after the rows it should count as measured changed. */
async function measure(h: Harness): Promise<void> {
  await sleep(5);
  await h.cp.reconciler.runOnce();
}

for (const kind of DATABASES) {
  test(
    `admission by measured use: 20 idle 1-vCPU sandboxes at once on a 2-core host, far past 4 vCPUs a core (${kind})`,
    { timeout: 180_000 },
    async () => {
      const h = await startHarness(kind, { agents: 0 });
      try {
        const { startFakeAgent } = await import("./fake-agent.ts");
        const agent = await startFakeAgent();
        h.agents.push(agent);
        agent.capacity = { totalVcpus: 2, totalMemoryMb: 24_576, freeDiskMb: 100_000 };
        agent.usage = { cpuBusyCores: 0.1, memoryUsedMb: 2_000 };
        const hostId = await h.registerAgent(agent);
        const [row] = await h.cp.db.select().from(hosts).where(eq(hosts.id, hostId));
        assert.equal(row?.memoryUsedMb, 2_000, "the heartbeat stores what the host measured");
        assert.ok(row?.measuredAt instanceof Date);
        assert.equal(row?.cpuBusyCores, 0.1);
        // The admin sees what admission counts, and the host's warm sandboxes.
        agent.usage = { cpuBusyCores: 0.1, memoryUsedMb: 2_000, vmmMemoryMb: 300 };
        agent.warm = 2;
        await measure(h);
        const [shown] = (await (await h.api("/v1/admin/hosts")).json()) as Array<{
          usage: Record<string, unknown> | null;
          warm_sandboxes: number;
        }>;
        assert.deepEqual(
          { ...shown?.usage, measured_at: typeof shown?.usage?.measured_at },
          { cpu_busy_cores: 0.1, memory_used_mb: 2_000, vmm_memory_mb: 300, measured_at: "string" },
        );
        assert.equal(shown?.warm_sandboxes, 2);

        const first = await Promise.all(Array.from({ length: 20 }, () => create(h)));
        assert.deepEqual(
          first.map((r) => r.status),
          Array<number>(20).fill(201),
          JSON.stringify(first.find((r) => r.status !== 201)?.json),
        );
        // Measured: twenty idle guests use ~150 MiB each and 0.7 of a core together.
        agent.usage = { cpuBusyCores: 0.7, memoryUsedMb: 2_000 + 20 * 150 };
        await measure(h);
        const more = await Promise.all(Array.from({ length: 20 }, () => create(h)));
        assert.equal(more.filter((r) => r.status === 201).length, 20);
        assert.equal(agent.sandboxes.size, 40);

        // Memory really short: the host is at 23.5 GiB in use. Refused, saying so.
        agent.usage = { cpuBusyCores: 0.7, memoryUsedMb: 23_500 };
        await measure(h);
        const refused = await create(h);
        assert.equal(refused.status, 503);
        assert.equal(refused.json.error.code, "resource_exhausted");
        assert.match(
          refused.json.error.message,
          /memory: 52 MiB free \(23500 MiB in use \+ 0 MiB for sandboxes starting, of 24576 MiB less a 1024 MiB reserve\)/,
        );
        assert.equal(agent.sandboxes.size, 40, "nothing was started on the agent");
      } finally {
        await h.close();
      }
    },
  );

  test(
    `a sandbox's declared memory counts until the host has measured it; what sandboxes declare is capped at memory × overcommit (${kind})`,
    { timeout: 180_000 },
    async () => {
      const h = await startHarness(kind, {
        agents: 0,
        overcommit: { cpu: 16, memory: 1.5, reserveMemoryMb: 1024 },
      });
      try {
        const { startFakeAgent } = await import("./fake-agent.ts");
        const agent = await startFakeAgent();
        h.agents.push(agent);
        agent.capacity = { totalVcpus: 2, totalMemoryMb: 8192, freeDiskMb: 100_000 };
        agent.usage = { cpuBusyCores: 0, memoryUsedMb: 2048 };
        await h.registerAgent(agent);
        // 8192 - 1024 reserve - 2048 in use = 5120 MiB for sandboxes not measured yet.
        for (let i = 0; i < 5; i++)
          assert.equal((await create(h, { memory_mb: 1024 })).status, 201);
        const sixth = await create(h, { memory_mb: 1024 });
        assert.equal(sixth.status, 503, "five unmeasured 1 GiB sandboxes fill the real room");
        assert.match(
          sixth.json.error.message,
          /memory: 0 MiB free \(2048 MiB in use \+ 5120 MiB for sandboxes starting/,
        );
        // The host measures them: they touched 100 MiB each. Room for four more.
        agent.usage = { cpuBusyCores: 0.2, memoryUsedMb: 2048 + 500 };
        await measure(h);
        const second = [];
        for (let i = 0; i < 5; i++) second.push((await create(h, { memory_mb: 1024 })).status);
        assert.deepEqual(second, [201, 201, 201, 201, 503]);
        // Nine declared GiB measured idle; 1.5 × 8 GiB of declared memory holds three more.
        agent.usage = { cpuBusyCores: 0.2, memoryUsedMb: 2048 + 900 };
        await measure(h);
        const third = [];
        for (let i = 0; i < 4; i++) third.push(await create(h, { memory_mb: 1024 }));
        assert.deepEqual(
          third.map((r) => r.status),
          [201, 201, 201, 503],
        );
        assert.match(
          third[3]!.json.error.message,
          /declared memory: 12288 MiB of 12288 MiB \(1\.5 × 8192 MiB\) taken/,
        );
      } finally {
        await h.close();
      }
    },
  );

  test(
    `CPU: measured busy cores plus starting vCPUs against cores × overcommit (${kind})`,
    { timeout: 180_000 },
    async () => {
      const h = await startHarness(kind, { agents: 0, overcommit: { cpu: 1 } });
      try {
        const { startFakeAgent } = await import("./fake-agent.ts");
        const agent = await startFakeAgent();
        h.agents.push(agent);
        agent.capacity = { totalVcpus: 2, totalMemoryMb: 16384, freeDiskMb: 100_000 };
        agent.usage = { cpuBusyCores: 1.5, memoryUsedMb: 1000 };
        await h.registerAgent(agent);
        const busy = await create(h);
        assert.equal(busy.status, 503);
        assert.match(busy.json.error.message, /CPU: 1\.50 cores busy \+ 0 vCPUs starting, of 2/);
        agent.usage = { cpuBusyCores: 0.2, memoryUsedMb: 1000 };
        await measure(h);
        assert.equal((await create(h)).status, 201);
        // That one is not measured yet: it counts as a busy vCPU.
        const next = await create(h);
        assert.equal(next.status, 503);
        assert.match(next.json.error.message, /0\.20 cores busy \+ 1 vCPUs starting/);
        // Measured idle, room again.
        agent.usage = { cpuBusyCores: 0.25, memoryUsedMb: 1100 };
        await measure(h);
        assert.equal((await create(h)).status, 201);
      } finally {
        await h.close();
      }
    },
  );
}
