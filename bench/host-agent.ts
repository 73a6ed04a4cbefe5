/**
 * The host agent on real VMs (as root, after `./wrenn image build`):
 * - create-to-first-exec latency: cold (the base template booted) and as
 *   creates run (its boot snapshot restored), in one run;
 * - exec round trip of `true` through the agent against envd directly (the
 *   same guest, the same command, interleaved in one run);
 * - host memory overhead per sandbox: VMM RSS minus the guest RAM it maps.
 *
 *   node_modules/.bin/node bench/host-agent.ts [creates] [execs]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startHostAgent } from "../packages/host-agent/src/agent.ts";
import { EnvdClient } from "../packages/host-agent/src/envd/client.ts";
import { dataDir } from "../packages/host-agent/src/image/store.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../packages/host-agent/test/test-dirs.ts";
import { vmmRss } from "./lib/vmm-rss.ts";

const creates = Number(process.argv[2] ?? 5);
const execs = Number(process.argv[3] ?? 200);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const ms = (x: number) => `${x.toFixed(2)} ms`;

const root = await mkdtemp(join(tmpdir(), "wrenn-bench-"));
const runRoot = await mkdtemp("/run/wbench-");

async function startAgent(bootSnapshots: boolean) {
  const agent = await startHostAgent({
    listen: "127.0.0.1:0",
    dataDir: join(root, "data"),
    imageDir: dataDir(),
    bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
    runRoot,
    networkPrefix: "wbn",
    bootSnapshots,
    log: createLogger("host-agent", "warn"),
  });
  const client = createClient(
    HostAgentService,
    createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1" }),
  );
  return { agent, client };
}

type Client = Awaited<ReturnType<typeof startAgent>>["client"];

async function createToFirstExec(client: Client, runs: number, memoryMb: number) {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const id = `bench${i}${Date.now().toString(36)}`;
    const t0 = performance.now();
    await client.createSandbox({ sandboxId: id, memoryMb });
    await client.exec({ sandboxId: id, cmd: "true" });
    times.push(performance.now() - t0);
    await client.destroySandbox({ sandboxId: id });
  }
  return times;
}

const summary = (xs: number[]) =>
  `p50 ${ms(pct(xs, 50))}, min ${ms(Math.min(...xs))}, max ${ms(Math.max(...xs))}`;

async function coldBoots(): Promise<number[]> {
  const { agent, client } = await startAgent(false);
  try {
    const cold = await createToFirstExec(client, creates, 256);
    console.log(
      `cold create → first exec (${agent.manager.vmm.name}, base template booted, ${creates} runs): ${summary(cold)}`,
    );
    return cold;
  } finally {
    await agent.shutdown();
  }
}
const coldP50 = pct(await coldBoots(), 50);

const { agent, client } = await startAgent(true);
try {
  // A shape of its own, so the first create builds its boot snapshot in this run.
  const memoryMb = 256 + 16 * (1 + (Date.now() % 8));
  const [first] = await createToFirstExec(client, 1, memoryMb);
  console.log(
    `first create of a shape (${memoryMb} MiB: boot + boot snapshot + restore) → first exec: ${ms(first ?? NaN)}`,
  );
  const warm = await createToFirstExec(client, creates, memoryMb);
  console.log(
    `create → first exec (${agent.manager.vmm.name}, boot snapshot restored, ${creates} runs): ${summary(warm)}; ratio to cold p50 ${(pct(warm, 50) / coldP50).toFixed(2)}  (target ≤ 4000 ms p50)`,
  );
  const id = `benchexec${Date.now().toString(36)}`;
  const sb = (await client.createSandbox({ sandboxId: id, memoryMb: 256 })).sandbox;
  const envd = new EnvdClient(sb?.envdAddress ?? "");
  const viaAgent: number[] = [];
  const direct: number[] = [];
  for (let i = 0; i < execs + 20; i++) {
    const a = performance.now();
    await client.exec({ sandboxId: id, cmd: "true" });
    const b = performance.now();
    for await (const ev of envd.execStream({ cmd: "true", args: [] })) void ev;
    const c = performance.now();
    if (i >= 20) {
      viaAgent.push(b - a);
      direct.push(c - b);
    }
  }
  console.log(
    `exec round trip of 'true' (${execs} runs): agent p50 ${ms(pct(viaAgent, 50))} p99 ${ms(pct(viaAgent, 99))}; envd direct p50 ${ms(pct(direct, 50))} p99 ${ms(pct(direct, 99))}; ratio p50 ${(pct(viaAgent, 50) / pct(direct, 50)).toFixed(2)}x  (target ≤ 1.2x)`,
  );

  const rec = JSON.parse(
    await readFile(join(root, "data", "sandboxes", id, "record.json"), "utf8"),
  ) as { vm: { pid: number } };
  const mem = await vmmRss(rec.vm.pid);
  console.log(
    `host memory per sandbox (256 MiB guest): VMM RSS ${(mem.total / 1024).toFixed(1)} MiB, of which guest RAM ${(mem.guest / 1024).toFixed(1)} MiB → overhead ${((mem.total - mem.guest) / 1024).toFixed(1)} MiB  (target ≤ 30 MiB)`,
  );
  await client.destroySandbox({ sandboxId: id });
} finally {
  await agent.shutdown();
  await rm(root, { recursive: true, force: true });
  await rm(runRoot, { recursive: true, force: true });
}
