/**
 * Pause, resume and templates on real VMs (as root, after `./wrenn image build`):
 * - pause and resume time for 256 MiB and 1 GiB guests (to envd answering);
 * - create-from-template to first exec against a cold boot, in one run.
 *
 *   node_modules/.bin/node bench/lifecycle.ts [cycles]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startHostAgent } from "../packages/host-agent/src/agent.ts";
import { dataDir } from "../packages/host-agent/src/image/store.ts";

const cycles = Number(process.argv[2] ?? 5);

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const ms = (x: number) => `${Math.round(x)} ms`;

const root = await mkdtemp(join(tmpdir(), "wrenn-bench-lc-"));
const agent = await startHostAgent({
  listen: "127.0.0.1:0",
  dataDir: join(root, "data"),
  imageDir: dataDir(),
  networkPrefix: "wbl",
  log: createLogger("host-agent", "warn"),
});
const client = createClient(
  HostAgentService,
  createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1" }),
);
const exec = (id: string, script: string) =>
  client.exec({ sandboxId: id, cmd: "/bin/sh", args: ["-c", script] });

try {
  for (const memoryMb of [256, 1024]) {
    const id = `benchpr${memoryMb}`;
    await client.createSandbox({ sandboxId: id, memoryMb });
    // Give the guest some memory to keep: 64 MiB of page cache.
    await exec(id, "head -c 64M /dev/urandom > /tmp/fill");
    const pause: number[] = [];
    const resume: number[] = [];
    for (let i = 0; i < cycles; i++) {
      const t0 = performance.now();
      await client.pauseSandbox({ sandboxId: id });
      const t1 = performance.now();
      await client.resumeSandbox({ sandboxId: id });
      const t2 = performance.now();
      await exec(id, "true");
      pause.push(t1 - t0);
      resume.push(t2 - t1);
    }
    console.log(
      `${agent.manager.vmmName} ${memoryMb} MiB guest, ${cycles} cycles: pause p50 ${ms(p50(pause))}, resume p50 ${ms(p50(resume))}  (targets for 1 GiB: pause ≤ 100 ms, resume ≤ 150 ms; E2B ≈ 4 s/GiB and ≈ 1 s)`,
    );
    if (memoryMb === 256) {
      await client.createSnapshot({ sandboxId: id, name: "bench-tpl" });
    }
    await client.destroySandbox({ sandboxId: id });
  }

  const fromTemplate: number[] = [];
  const cold: number[] = [];
  for (let i = 0; i < cycles; i++) {
    const a = `benchtpl${i}`;
    const t0 = performance.now();
    await client.createSandbox({ sandboxId: a, template: "bench-tpl" });
    await exec(a, "true");
    fromTemplate.push(performance.now() - t0);
    await client.destroySandbox({ sandboxId: a });
    const b = `benchcold${i}`;
    const t1 = performance.now();
    await client.createSandbox({ sandboxId: b, memoryMb: 256 });
    await exec(b, "true");
    cold.push(performance.now() - t1);
    await client.destroySandbox({ sandboxId: b });
  }
  console.log(
    `create → first exec, ${cycles} runs: from template p50 ${ms(p50(fromTemplate))}, cold boot p50 ${ms(p50(cold))}, ratio ${(p50(fromTemplate) / p50(cold)).toFixed(3)}  (target from template ≤ 150 ms)`,
  );
  await client.deleteSnapshot({ name: "bench-tpl" });
} finally {
  await agent.shutdown();
  await rm(root, { recursive: true, force: true });
}
