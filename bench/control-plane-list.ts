/**
 * Sandbox list latency with 10 000 sandbox rows in one team, through the
 * whole REST stack (HTTP, API-key auth, query, JSON). The baseline, taken in
 * the same run and interleaved, is `GET /health` (HTTP + one `select 1`), so
 * the ratio is what listing adds over the cheapest database round trip.
 * Target: p50 of the default page ≤ 50 ms. Runs on the embedded PGlite, and
 * on PostgreSQL too when DATABASE_URL is set.
 *
 *   node_modules/.bin/node bench/control-plane-list.ts [runs]
 */
import { randomBytes } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import { withScratchDatabase } from "./lib/scratch-database.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { startControlPlane, type ControlPlaneOptions } from "@wrenn/control-plane/server.ts";
import { sandboxes } from "@wrenn/control-plane/db/schema.ts";

const runs = Math.max(50, Number(process.argv[2] ?? 200));
const ROWS = 10_000;
const log = createLogger("bench", process.env.WRENN_BENCH_LOG ?? "silent");

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function bench(name: string, options: ControlPlaneOptions) {
  const cp = await startControlPlane({ port: 0, log, reconcileIntervalMs: 3600_000, ...options });
  try {
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(cp.url + path, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      }).then((r) => r.json() as Promise<Record<string, unknown>>);
    const session = await post("/v1/auth/signup", {
      email: `bench-${randomBytes(4).toString("hex")}@example.com`,
      password: "benchmark password",
    });
    const team = (session.team as { id: string }).id;
    const key = String(
      (
        await post(
          "/v1/api-keys",
          { name: "bench" },
          { authorization: `Bearer ${String(session.token)}` },
        )
      ).key,
    );
    const statuses = ["running", "paused", "stopped", "running", "error"] as const;
    for (let i = 0; i < ROWS; i += 1000) {
      await cp.db.insert(sandboxes).values(
        Array.from({ length: 1000 }, (_, j) => ({
          id: `b${(i + j).toString(36).padStart(8, "0")}`,
          teamId: team,
          template: "minimal",
          status: statuses[(i + j) % statuses.length]!,
          vcpus: 1,
          memoryMb: 512,
          diskSizeMb: 20480,
          timeoutSec: 300,
          createdAt: new Date(Date.now() - (i + j) * 1000),
        })),
      );
    }
    const headers = { "x-api-key": key };
    const get = (path: string) => fetch(cp.url + path, { headers }).then((r) => r.arrayBuffer());
    const page: number[] = [];
    const big: number[] = [];
    const health: number[] = [];
    for (let i = 0; i < 20; i++) await Promise.all([get("/v1/sandboxes"), get("/health")]);
    for (let i = 0; i < runs; i++) {
      health.push(await time(() => get("/health")));
      page.push(await time(() => get("/v1/sandboxes")));
      if (i % 5 === 0) big.push(await time(() => get("/v1/sandboxes?limit=1000")));
    }
    const all = await time(async () => {
      let token: string | null = null;
      let n = 0;
      do {
        const r: Response = await fetch(
          `${cp.url}/v1/sandboxes?limit=1000${token ? `&next_token=${token}` : ""}`,
          { headers },
        );
        n += ((await r.json()) as unknown[]).length;
        token = r.headers.get("x-next-token");
      } while (token);
      if (n !== (ROWS * 3) / 5)
        throw new Error(`listed ${n} live sandboxes, expected ${(ROWS * 3) / 5}`);
    });
    const p50 = pct(page, 50);
    console.log(
      `${name}: ${ROWS} rows; GET /v1/sandboxes (100/page) p50 ${p50.toFixed(1)} ms p99 ${pct(page, 99).toFixed(1)} ms; ` +
        `limit=1000 p50 ${pct(big, 50).toFixed(1)} ms; all ${(ROWS * 3) / 5} live rows paged ${all.toFixed(0)} ms; ` +
        `baseline GET /health p50 ${pct(health, 50).toFixed(1)} ms; ratio ${(p50 / pct(health, 50)).toFixed(2)}x; ` +
        `target p50 ≤ 50 ms: ${p50 <= 50 ? "met" : "MISSED"}`,
    );
  } finally {
    await cp.close();
  }
}

await bench("pglite", { pglite: await PGlite.create() });
const url = process.env.DATABASE_URL;
if (url) await withScratchDatabase(url, (db) => bench("postgres", { databaseUrl: db }));
