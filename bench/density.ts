/**
 * Idle density on real VMs (as root, after `./wrenn image build`): starts N
 * idle 256 MiB sandboxes through the host agent (its own data dir and
 * network prefix, the tests' boot snapshots), lets them settle, then over a
 * measuring window prints per idle sandbox:
 * - CPU: % of one core its VMM process used (median and max over the N);
 * - memory: VMM RSS beyond the guest RAM it maps (what the host pays on top
 *   of the guest's touched pages), also apart for the sandboxes claimed from
 *   the warm pool (their VMM holds the translations of the pool's warm-up)
 *   and those restored on the create's path; and the drop in the host's
 *   MemAvailable per sandbox (page cache and kernel memory included);
 * and the largest N that held: every sandbox still answers an exec after the
 * window. Targets (issue 15): ≤ 1 % of a core and ≤ 64 MiB beyond guest RAM.
 * Then creates with the idle fleet beside them: create → first exec from the
 * warm pool (one entry, refilled between creates) p50 and p99 with the N
 * idle sandboxes running, against the same taken before any was started
 * (target: ≤ 150 ms p50 with them, issue 15).
 * Everything it made is destroyed at the end, also after a failure.
 *
 *   node_modules/.bin/node bench/density.ts [N] [measure seconds] [settle seconds] [creates=8]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startHostAgent } from "../packages/host-agent/src/agent.ts";
import { dataDir } from "../packages/host-agent/src/image/store.ts";
import { isPooled } from "../packages/host-agent/src/sandbox/pool.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../packages/host-agent/test/test-dirs.ts";
import { vmmRss } from "./lib/vmm-rss.ts";

const n = Math.max(1, Number(process.argv[2] ?? 6));
const measureS = Math.max(5, Number(process.argv[3] ?? 30));
const settleS = Math.max(0, Number(process.argv[4] ?? 15));
const creates = Math.max(1, Number(process.argv[5] ?? 8));
const MEMORY_MB = 256;
const TICKS = 100; // USER_HZ: /proc's CPU times are in 1/100 s

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const p99 = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))] ?? NaN;
const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

async function cpuTicks(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]?.split(" ") ?? [];
  return Number(f[11]) + Number(f[12]);
}

async function memAvailableKiB(): Promise<number> {
  const m = /MemAvailable:\s+(\d+) kB/.exec(await readFile("/proc/meminfo", "utf8"));
  return Number(m?.[1] ?? NaN);
}

const root = await mkdtemp(join(tmpdir(), "wrenn-bench-density-"));
const runRoot = await mkdtemp("/run/wbdens-");
const agent = await startHostAgent({
  listen: "127.0.0.1:0",
  dataDir: join(root, "data"),
  imageDir: dataDir(),
  bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
  runRoot,
  networkPrefix: "wbd",
  warmPool: 1,
  log: createLogger("host-agent", "warn"),
});
const client = createClient(
  HostAgentService,
  createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1" }),
);
const ids: string[] = [];
const poolReady = () => agent.manager.warmSandboxes();

/** `creates` times create → first exec → destroy, each from a refilled pool entry; ms. */
async function timeCreates(label: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < creates; i++) {
    const deadline = Date.now() + 300_000;
    while (poolReady() === 0) {
      if (Date.now() > deadline) throw new Error("the warm pool did not refill in 300 s");
      await sleep(0.02);
    }
    await sleep(0.5); // the refill's own warm-up settles first
    const id = `densitycreate${label}${i}${Date.now().toString(36)}`;
    const t0 = performance.now();
    await client.createSandbox({ sandboxId: id, memoryMb: MEMORY_MB, vcpus: 1 });
    await client.exec({ sandboxId: id, cmd: "/bin/sh", args: ["-c", "echo hi"] });
    out.push(performance.now() - t0);
    await client.destroySandbox({ sandboxId: id });
  }
  return out;
}

try {
  // The shape's boot snapshot first, so the N creates below all restore it.
  const warm = `densitywarm${Date.now().toString(36)}`;
  await client.createSandbox({ sandboxId: warm, memoryMb: MEMORY_MB, vcpus: 1 });
  await client.destroySandbox({ sandboxId: warm });
  const createsAlone = await timeCreates("alone");
  // The pool's one ready entry is an idle VM too: counted in the baseline, not in N.
  while (poolReady() === 0) await sleep(0.02);
  await sleep(2);

  const availBefore = await memAvailableKiB();
  const pids = new Map<string, number>();
  let held = 0;
  for (let i = 0; i < n; i++) {
    const id = `density${i}${Date.now().toString(36)}`;
    try {
      await client.createSandbox({ sandboxId: id, memoryMb: MEMORY_MB, vcpus: 1 });
      ids.push(id);
      await client.exec({ sandboxId: id, cmd: "true" });
    } catch (err) {
      console.log(`create ${i + 1} of ${n} failed: ${(err as Error).message}`);
      break;
    }
    const pid = agent.manager.get(id).record.vm?.pid;
    if (pid === undefined) throw new Error(`${id} runs no VM`);
    pids.set(id, pid);
  }
  console.log(`${pids.size} idle ${MEMORY_MB} MiB sandboxes; settling ${settleS} s`);
  await sleep(settleS);

  const t0 = performance.now();
  const before = new Map<string, number>();
  for (const [id, pid] of pids) before.set(id, await cpuTicks(pid));
  await sleep(measureS);
  const seconds = (performance.now() - t0) / 1000;
  const cpu: number[] = [];
  const overhead: number[] = [];
  const guest: number[] = [];
  const anon: number[] = [];
  const files: number[] = [];
  const pss: number[] = [];
  /** PSS and anonymous beyond guest RAM, by how the sandbox was made. */
  const made = { claimed: [] as Array<[number, number]>, restored: [] as Array<[number, number]> };
  for (const [id, pid] of pids) {
    cpu.push((((await cpuTicks(pid)) - (before.get(id) ?? 0)) / TICKS / seconds) * 100);
    const m = await vmmRss(pid);
    overhead.push((m.total - m.guest) / 1024);
    guest.push(m.guest / 1024);
    anon.push(m.anon / 1024);
    files.push(m.files / 1024);
    pss.push(m.pssBeyondGuest / 1024);
    // A claimed entry keeps the name it was made under: its warm-up's translations are in its VMM.
    const claimed = isPooled(agent.manager.get(id).record.home ?? "");
    made[claimed ? "claimed" : "restored"].push([m.pssBeyondGuest / 1024, m.anon / 1024]);
  }
  const availAfter = await memAvailableKiB();
  // Still there: each answers an exec after the idle window.
  for (const id of pids.keys()) {
    try {
      await client.exec({ sandboxId: id, cmd: "true", timeoutSec: 60 });
      held++;
    } catch (err) {
      console.log(`${id} did not answer after the idle window: ${(err as Error).message}`);
    }
  }
  const total = cpu.reduce((a, b) => a + b, 0);
  console.log(
    `idle CPU per sandbox over ${seconds.toFixed(0)} s: median ${median(cpu).toFixed(2)} %, max ${Math.max(...cpu).toFixed(2)} % of a core; all ${pids.size}: ${total.toFixed(1)} %  (target ≤ 1 %)`,
  );
  console.log(
    `host memory per sandbox beyond guest RAM (VMM RSS − guest mapping): median ${median(overhead).toFixed(1)} MiB, max ${Math.max(...overhead).toFixed(1)} MiB  (target ≤ 64 MiB); guest RAM resident median ${median(guest).toFixed(1)} MiB`,
  );
  console.log(
    `  of it (medians): anonymous ${median(anon).toFixed(1)} MiB (heap, TCG translation cache, stacks), files ${median(files).toFixed(1)} MiB (QEMU and its libraries, shared by all VMMs); PSS beyond guest RAM ${median(pss).toFixed(1)} MiB`,
  );
  const kind = (xs: Array<[number, number]>) =>
    xs.length === 0
      ? "none"
      : `${xs.length}, PSS ${median(xs.map((x) => x[0])).toFixed(1)} MiB, anonymous ${median(xs.map((x) => x[1])).toFixed(1)} MiB`;
  console.log(
    `  by how it was made (medians beyond guest RAM): claimed from the warm pool ${kind(made.claimed)}; restored on the create's path ${kind(made.restored)}`,
  );
  console.log(
    `host MemAvailable drop per sandbox: ${((availBefore - availAfter) / 1024 / Math.max(1, pids.size)).toFixed(1)} MiB (page cache and kernel memory included)`,
  );
  console.log(`largest N that held: ${held} of ${n} asked`);
  const createsBeside = await timeCreates("beside");
  console.log(
    `create → first exec from the warm pool with ${held} idle sandboxes beside: p50 ${median(createsBeside).toFixed(0)} ms, p99 ${p99(createsBeside).toFixed(0)} ms; alone p50 ${median(createsAlone).toFixed(0)} ms, p99 ${p99(createsAlone).toFixed(0)} ms; p50 ratio ${(median(createsBeside) / median(createsAlone)).toFixed(2)} (${creates} each; target ≤ 150 ms p50)`,
  );
} finally {
  for (const id of ids) await client.destroySandbox({ sandboxId: id }).catch(() => undefined);
  await agent.shutdown();
  await rm(root, { recursive: true, force: true });
  await rm(runRoot, { recursive: true, force: true });
}
