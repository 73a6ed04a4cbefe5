/**
 * Create → first exec with the warm pool (as root, after `./wrenn image build`),
 * against the same agent's creates with the pool empty, in one run: from a
 * base template (its boot snapshot) and from a snapshot template.
 *
 * "empty" creates come right after the pool was drained (today's path: a
 * restore on the request path); "warm" ones find an entry the pool made
 * after the previous create. p50 and p99 of each, and warm ÷ empty; then
 * the sandbox's first file write (a small file through the agent, as
 * /v1's files/write sends it), which the warm-up has run once before.
 *
 *   node_modules/.bin/node bench/warm-pool.ts [runs]
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { startHostAgent } from "../packages/host-agent/src/agent.ts";
import { dataDir } from "../packages/host-agent/src/image/store.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../packages/host-agent/test/test-dirs.ts";
import { prepareDataDir, removeDataFs } from "../packages/host-agent/src/storage/data-fs.ts";

const runs = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 10);

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
const ms = (x: number) => `${Math.round(x)} ms`;

const log = pino({ name: "host-agent", level: process.env.LOG_LEVEL ?? "warn" });
const root = await mkdtemp(join(tmpdir(), "wrenn-bench-pool-"));
const data = join(root, "data");
const fs = await prepareDataDir(data, { log });
const agent = await startHostAgent({
  listen: "127.0.0.1:0",
  dataDir: data,
  imageDir: dataDir(),
  bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
  networkPrefix: "wbp",
  warmPool: 1,
  log,
});
const { manager } = agent;
const client = createClient(
  HostAgentService,
  createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1" }),
);
const ready = () => manager.warmSandboxes();

async function waitReady(): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (ready() === 0) {
    if (Date.now() > deadline) throw new Error("the pool did not refill in 120 s");
    await new Promise((r) => setTimeout(r, 20));
  }
  // Let the refill's own work (its warm-up exec) settle before timing the next create.
  await new Promise((r) => setTimeout(r, 500));
}

let seq = 0;
interface Timing {
  total: number;
  create: number;
  exec: number;
  write: number;
}
/** One create → first exec; the sandbox is destroyed after. */
async function createToExec(template: string): Promise<Timing> {
  const id = `benchpool${++seq}`;
  // With a token, as the control plane creates every sandbox: envd checks it on each request.
  const envdAccessToken = randomBytes(16).toString("hex");
  const t0 = performance.now();
  await client.createSandbox({
    sandboxId: id,
    template,
    vcpus: 1,
    memoryMb: 256,
    timeoutSec: 0,
    envdAccessToken,
  });
  const t1 = performance.now();
  await client.exec({ sandboxId: id, cmd: "/bin/sh", args: ["-c", "echo hi"] });
  const t2 = performance.now();
  await client.writeFile({ sandboxId: id, path: "/tmp/first.txt", content: Buffer.from("hi\n") });
  const t3 = performance.now();
  await client.destroySandbox({ sandboxId: id });
  return { total: t2 - t0, create: t1 - t0, exec: t2 - t1, write: t3 - t2 };
}

/** The p50 of each step, e.g. "(create 30 ms + exec 51 ms; then a first file write 58 ms)". */
function split(xs: Timing[]): string {
  const p50 = (step: keyof Timing) =>
    ms(
      pct(
        xs.map((x) => x[step]),
        0.5,
      ),
    );
  return `(create ${p50("create")} + exec ${p50("exec")}; then a first file write ${p50("write")})`;
}

async function measure(template: string): Promise<void> {
  await createToExec(template); // builds what a first create builds (boot snapshot), fills the pool
  const empty: Timing[] = [];
  const warm: Timing[] = [];
  for (let i = 0; i < runs; i++) {
    await waitReady();
    warm.push(await createToExec(template));
    await waitReady();
    await manager.destroyAll(); // drains the pool: the next create restores on the request path
    empty.push(await createToExec(template));
  }
  const w = warm.map((x) => x.total);
  const e = empty.map((x) => x.total);
  console.log(
    `${template}: create → first exec, pool warm p50 ${ms(pct(w, 0.5))} p99 ${ms(pct(w, 0.99))} ${split(warm)}, ` +
      `pool empty p50 ${ms(pct(e, 0.5))} p99 ${ms(pct(e, 0.99))} ${split(empty)} (${runs} runs each), ` +
      `warm/empty ${(pct(w, 0.5) / pct(e, 0.5)).toFixed(3)}  (target warm p50 ≤ 150 ms)`,
  );
  await manager.destroyAll();
}

try {
  console.log(`${manager.vmm.name}, data dir: ${fs}`);
  await measure("minimal");
  await client.createSandbox({ sandboxId: "benchpoolsrc", memoryMb: 256 });
  await client.createSnapshot({ sandboxId: "benchpoolsrc", name: "bench-pool-tpl" });
  await client.destroySandbox({ sandboxId: "benchpoolsrc" });
  await manager.destroyAll();
  await measure("bench-pool-tpl");
  await client.deleteSnapshot({ name: "bench-pool-tpl" });
} finally {
  await agent.shutdown();
  await removeDataFs(data, fs);
  await rm(root, { recursive: true, force: true });
}
