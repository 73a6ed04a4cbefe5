/**
 * Starting a process from a large agent: through the VMM spawner
 * (spawner/spawner.ts, how the agent starts every VMM) against Node's own spawn
 * from this process, in one run, while this process holds `ballast` MiB
 * resident (`wrenn up`'s process — control plane, PGlite and agent — holds
 * ≈ 525–585 MiB). Each start is timed until the process runs (`true`); the
 * direct spawn also blocks this event loop for as long, the spawner's does
 * not. No VM, no root.
 *
 *   node_modules/.bin/node bench/vmm-spawn.ts [ballast MiB=550] [runs=21]
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnInNetns } from "../packages/host-agent/src/vmm/process.ts";

const ballastMb = Number(process.argv[2] ?? 550);
const runs = Number(process.argv[3] ?? 21);
const ballast: Buffer[] = [];
for (let i = 0; i < ballastMb; i++) ballast.push(Buffer.alloc(1 << 20, 1));

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const root = await mkdtemp(join(tmpdir(), "wrenn-bench-spawn-"));
// A VMM's exit does not keep a process alive (VMMs outlive their agent): this does, until the end.
const alive = setInterval(() => undefined, 1000);
try {
  const log = join(root, "log");
  await (
    await spawnInNetns({ netns: "", argv: ["true"], logPath: log })
  ).exited; // forks the spawner
  const viaSpawner: number[] = [];
  const direct: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    const vmm = await spawnInNetns({ netns: "", argv: ["true"], logPath: log });
    viaSpawner.push(performance.now() - t);
    await vmm.exited;
    t = performance.now();
    const child = spawn("true", [], { stdio: "ignore", detached: true });
    await new Promise((r) => child.once("spawn", r));
    direct.push(performance.now() - t);
    await new Promise((r) => child.once("exit", r));
  }
  console.log(
    `process start with ${process.memoryUsage().rss >> 20} MiB resident, ${runs} runs: through the spawner p50 ${p50(viaSpawner).toFixed(1)} ms, ` +
      `Node's spawn from this process p50 ${p50(direct).toFixed(1)} ms (this event loop blocked as long); ratio ${(p50(viaSpawner) / p50(direct)).toFixed(2)}`,
  );
} finally {
  clearInterval(alive);
  await rm(root, { recursive: true, force: true });
  ballast.length = 0;
}
