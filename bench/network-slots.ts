/**
 * What a create or resume waits for its network slot: acquire() with the
 * slot pool warm (a slot built ahead is handed out) against a baseline
 * measured in the same run with no pool (the slot is built on the request's
 * path: one `ip -batch`, one shell in the namespace). Each round waits for
 * the pool to refill first, as a create arriving after the last one would
 * find it; release (teardown) is outside the measurement. Needs root;
 * prints p50/p99 of both and the ratio (lower is better).
 *
 *   node_modules/.bin/node bench/network-slots.ts [rounds]
 */
import { createLogger } from "@wrenn/shared/log.ts";
import { createNetworkManager } from "@wrenn/host-agent/network/netns-network.ts";

const PREFIX = "wqb";
const rounds = Number(process.argv[2] ?? 30);

if (process.getuid?.() !== 0) {
  console.warn("network-slots bench: SKIPPED, needs root");
  process.exit(0);
}

const log = createLogger("bench", "warn");
// One prefix (one host table), two disjoint index ranges.
const warm = createNetworkManager({
  prefix: PREFIX,
  firstIndex: 3101,
  lastIndex: 3199,
  egressInterface: "lo",
  poolSize: 2,
  log,
});
const empty = createNetworkManager({
  prefix: PREFIX,
  firstIndex: 3201,
  lastIndex: 3299,
  egressInterface: "lo",
  poolSize: 0,
  log,
});

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function poolFull(): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (warm.pooled.length < 2) {
    if (Date.now() > deadline) throw new Error("the pool did not refill within 30 s");
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function timedAcquire(net: typeof warm): Promise<number> {
  const start = performance.now();
  const slot = await net.acquire();
  const ms = performance.now() - start;
  await net.release(slot);
  return ms;
}

const warmMs: number[] = [];
const emptyMs: number[] = [];
try {
  // Sweeps what an interrupted run left and starts the pool.
  await warm.cleanupStale([]);
  await timedAcquire(empty); // host table loaded once, outside the measurement
  for (let i = 0; i < rounds; i++) {
    await poolFull();
    warmMs.push(await timedAcquire(warm));
    emptyMs.push(await timedAcquire(empty));
  }
  const f = (x: number) => (x < 1 ? x.toFixed(3) : x.toFixed(1));
  const [w50, w99, e50, e99] = [
    quantile(warmMs, 0.5),
    quantile(warmMs, 0.99),
    quantile(emptyMs, 0.5),
    quantile(emptyMs, 0.99),
  ];
  console.log(
    `network slot acquire, ${rounds} rounds: pool warm p50 ${f(w50)} ms p99 ${f(w99)} ms; ` +
      `no pool (built on request) p50 ${f(e50)} ms p99 ${f(e99)} ms; ` +
      `ratio p50 ${(w50 / e50).toFixed(4)} (${(e50 / w50).toFixed(0)}x faster)`,
  );
} finally {
  await warm.drain();
  await warm.removeHostRules();
}
