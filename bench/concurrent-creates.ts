/**
 * N creates at once from one template through REST (as root, after
 * `./wrenn image build`), against single creates on the same platform in the
 * same run. Prints the burst's wall time, p50 and p99, and
 * wall ÷ (N × single p50 ÷ cores): ≤ 1 means the burst scales with the
 * cores (issue 15's target). Every create must succeed.
 *
 *   node_modules/.bin/node bench/concurrent-creates.ts [N=20] [singles=5]
 */
import { cpus } from "node:os";
import { startBenchPlatform } from "./platform.ts";

const n = Number(process.argv[2] ?? 20);
const singles = Number(process.argv[3] ?? 5);
const shape = { template: "minimal", vcpus: 1, memory_mb: 256, timeout_sec: 3600 };

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * p) - 1)] ?? NaN;
const ms = (x: number) => `${Math.round(x)} ms`;

const p = await startBenchPlatform("concurrent", "wcc");
const headers = { "x-api-key": p.key };

async function create(): Promise<{ id: string; ms: number }> {
  const t0 = performance.now();
  const sb = await p.post("/v1/sandboxes", shape, headers);
  return { id: String(sb.sandbox_id), ms: performance.now() - t0 };
}

async function destroy(id: string): Promise<void> {
  const res = await fetch(`${p.cp.url}/v1/sandboxes/${id}`, { method: "DELETE", headers });
  if (!res.ok) throw new Error(`destroy ${id}: ${res.status} ${await res.text()}`);
}

try {
  // The first create of a shape builds its boot snapshot: not what is measured.
  await destroy((await create()).id);
  const single: number[] = [];
  for (let i = 0; i < singles; i++) {
    const c = await create();
    single.push(c.ms);
    await destroy(c.id);
  }
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: n }, () => create()));
  const wall = performance.now() - t0;
  const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = results.flatMap((r) => (r.status === "rejected" ? [String(r.reason)] : []));
  await Promise.all(ok.map((c) => destroy(c.id)));
  const cores = cpus().length;
  const p50 = pct(single, 0.5);
  const target = (n * p50) / cores;
  const times = ok.map((c) => c.ms);
  console.log(
    `${p.agent.manager.vmmName}, ${cores} cores, ${shape.template} ${shape.vcpus} vCPU ${shape.memory_mb} MiB, pool empty`,
  );
  console.log(`single create (${singles} runs): p50 ${ms(p50)} p99 ${ms(pct(single, 0.99))}`);
  console.log(
    `${n} creates at once: ${ok.length}/${n} succeeded, wall ${ms(wall)}, p50 ${ms(pct(times, 0.5))} p99 ${ms(pct(times, 0.99))}; ` +
      `wall ÷ (${n} × single p50 ÷ ${cores} cores = ${ms(target)}) = ${(wall / target).toFixed(2)}  (target ≤ 1)`,
  );
  if (failed.length > 0) {
    console.log(`failed: ${failed.slice(0, 3).join(" | ")}`);
    process.exitCode = 1;
  }
} finally {
  await p.close();
}
