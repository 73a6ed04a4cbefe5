/**
 * What the control plane adds: create-to-first-exec through REST against the
 * same through the host agent's RPC directly, interleaved in one run on real
 * VMs (alternating which goes first); and the exec round trip alone (REST vs
 * RPC, same sandbox). Under TCG a boot varies by seconds, so the same
 * comparison runs first against the tests' fake agent (no VM): that
 * difference is the control plane's own cost per create → first exec (HTTP,
 * auth, placement under its lock, the rows). Then pause and resume of one
 * sandbox, REST and RPC in turns; since a restored guest's first answer
 * varies by hundreds of ms under TCG, each call's time outside the agent
 * (the caller's time less the agent's own, from its log) is compared too.
 * The agent keeps two network slots built ahead, as `wrenn up`'s does.
 * Last, creates served from a warm pool of two, REST and RPC in pairs.
 * Target (issue 15): REST adds ≤ 10% or ≤ 20 ms, whichever is larger.
 * Needs root and the image (`./wrenn image build`).
 *
 *   node_modules/.bin/node bench/control-plane-overhead.ts [creates=10] [execs] [pause cycles]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { startControlPlane } from "@wrenn/control-plane/server.ts";
import { agentLog } from "./lib/agent-log.ts";
import { startHostAgent } from "../packages/host-agent/src/agent.ts";
import { dataDir } from "../packages/host-agent/src/image/store.ts";
import { TEST_BOOT_SNAPSHOT_DIR } from "../packages/host-agent/test/test-dirs.ts";
import { prepareDataDir, removeDataFs } from "../packages/host-agent/src/storage/data-fs.ts";
import { startFakeAgent } from "../packages/control-plane/test/fake-agent.ts";

const creates = Number(process.argv[2] ?? 10);
const execs = Number(process.argv[3] ?? 100);
const cycles = Number(process.argv[4] ?? 6);
const log = createLogger("bench", "warn");

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const ms = (x: number) => `${x.toFixed(1)} ms`;
/**
 * What `a` adds to `b`, run in interleaved pairs: the median of the pairs'
 * differences, which one slow restore or pause swings less than the
 * difference of two medians does.
 */
const pairedExtra = (a: number[], b: number[]) => p50(a.map((x, i) => x - (b[i] ?? NaN)));
/**
 * The request the control plane sends the agent for a REST create of
 * `{ template: "minimal", memory_mb: 256 }` (its defaults, a token, no env,
 * no egress rules): the same work for the guest.
 */
const asRestCreates = (sandboxId: string, i: number | string) => ({
  sandboxId,
  template: "minimal",
  vcpus: 1,
  memoryMb: 256,
  timeoutSec: 300,
  diskSizeMb: 20480,
  envVars: {},
  envdAccessToken: `bench-token-${i}`,
  network: { allowOut: [], denyOut: [] },
});

async function apiKey(url: string, email: string): Promise<string> {
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(url + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const { token } = await post("/v1/auth/signup", { email, password: "bench-password" });
  const { key } = await post(
    "/v1/api-keys",
    { name: "bench" },
    { authorization: `Bearer ${String(token)}` },
  );
  return String(key);
}

/** The control plane's own cost: create, exec, pause and resume against a fake agent, no VM. */
async function withoutVm(runs: number): Promise<void> {
  const fake = await startFakeAgent();
  const cp = await startControlPlane({ port: 0, log, reconcileIntervalMs: 3600_000 });
  try {
    await cp.addHost(fake.address);
    const key = await apiKey(cp.url, "bench-fake@wrenn.local");
    const headers = { "content-type": "application/json", "x-api-key": key };
    const rpc = createClient(
      HostAgentService,
      createConnectTransport({
        baseUrl: `http://${fake.address}`,
        httpVersion: "1.1",
        acceptCompression: [],
      }),
    );
    type Op = "create" | "exec" | "pause" | "resume";
    const OPS: Op[] = ["create", "exec", "pause", "resume"];
    const viaRest = new Map<Op, number[]>(OPS.map((op) => [op, []]));
    const viaRpc = new Map<Op, number[]>(OPS.map((op) => [op, []]));
    const step = async (into: Map<Op, number[]>, op: Op, i: number, f: () => Promise<unknown>) => {
      const t = performance.now();
      await f();
      if (i >= 20) into.get(op)!.push(performance.now() - t);
    };
    const restCall = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(cp.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return res.json() as Promise<Record<string, unknown>>;
    };
    for (let i = 0; i < runs + 20; i++) {
      let id = "";
      const rpcId = `fake${i}`;
      await step(viaRest, "create", i, async () => {
        id = String((await restCall("POST", "/v1/sandboxes", { memory_mb: 256 })).sandbox_id);
      });
      await step(viaRpc, "create", i, () =>
        rpc.createSandbox({ sandboxId: rpcId, template: "minimal", memoryMb: 256 }),
      );
      await step(viaRest, "exec", i, () =>
        restCall("POST", `/v1/sandboxes/${id}/exec`, { cmd: "true" }),
      );
      await step(viaRpc, "exec", i, () => rpc.exec({ sandboxId: rpcId, cmd: "true" }));
      await step(viaRest, "pause", i, () => restCall("POST", `/v1/sandboxes/${id}/pause`));
      await step(viaRpc, "pause", i, () => rpc.pauseSandbox({ sandboxId: rpcId }));
      await step(viaRest, "resume", i, () => restCall("POST", `/v1/sandboxes/${id}/resume`, {}));
      await step(viaRpc, "resume", i, () => rpc.resumeSandbox({ sandboxId: rpcId }));
      await fetch(`${cp.url}/v1/sandboxes/${id}`, { method: "DELETE", headers });
      await rpc.destroySandbox({ sandboxId: rpcId });
    }
    for (const op of OPS) {
      const r = p50(viaRest.get(op)!);
      const a = p50(viaRpc.get(op)!);
      console.log(
        `${op} without a VM (fake agent, ${runs} runs): REST p50 ${ms(r)}, agent RPC p50 ${ms(a)}: the control plane adds ${ms(r - a)}  (target ≤ 20 ms, or ≤ 10% of the real operation)`,
      );
    }
  } finally {
    await cp.close();
    await fake.close();
  }
}

await withoutVm(200);

/**
 * A host agent on an xfs pool as `wrenn setup` makes one (a resume reflinks
 * its memory instead of copying it), with two network slots built ahead as
 * `wrenn up`'s does, and a control plane on PGlite that knows it, without a
 * reconciler (it would see the RPC's pauses and turn the row paused under
 * the REST calls); an RPC client of the agent.
 */
async function startPlatform(
  name: string,
  networkPrefix: string,
  agentOptions: { log: Logger; warmPool?: number },
) {
  const root = await mkdtemp(join(tmpdir(), `wrenn-bench-${name}-`));
  const data = join(root, "agent");
  const dataFs = await prepareDataDir(data, { log });
  const agent = await startHostAgent({
    listen: "127.0.0.1:0",
    dataDir: data,
    imageDir: dataDir(),
    bootSnapshotDir: TEST_BOOT_SNAPSHOT_DIR,
    networkPrefix,
    networkPool: 2,
    ...agentOptions,
  });
  const cp = await startControlPlane({
    port: 0,
    dataDir: join(root, "pg"),
    log,
    reconcileIntervalMs: 3600_000,
  });
  const rpc = createClient(
    HostAgentService,
    createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1" }),
  );
  const close = async () => {
    await cp.close();
    await agent.shutdown();
    await removeDataFs(data, dataFs);
    await rm(root, { recursive: true, force: true });
  };
  return { agent, cp, rpc, close };
}

/** The agent's own time for its last pause and resume ("sandbox paused/resumed" in its log). */
const agentMs = { pause: NaN, resume: NaN };
const agentLogger = agentLog((rec) => {
  if (rec.msg === "sandbox paused") agentMs.pause = rec.ms ?? NaN;
  else if (rec.msg === "sandbox resumed") agentMs.resume = rec.ms ?? NaN;
});
const { agent, cp, rpc, close } = await startPlatform("cp", "wbc", { log: agentLogger });

async function rest<T>(method: string, path: string, body?: unknown, key?: string): Promise<T> {
  const res = await fetch(cp.url + path, {
    method,
    headers: {
      "content-type": "application/json",
      ...(key ? { "x-api-key": key } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

try {
  await cp.addHost(new URL(agent.url).host);
  const key = await apiKey(cp.url, "bench@wrenn.local");

  const viaRest: number[] = [];
  const viaRpc: number[] = [];
  const viaRestOnce = async () => {
    const t0 = performance.now();
    const sb = await rest<{ sandbox_id: string }>(
      "POST",
      "/v1/sandboxes",
      { template: "minimal", memory_mb: 256 },
      key,
    );
    await rest("POST", `/v1/sandboxes/${sb.sandbox_id}/exec`, { cmd: "true" }, key);
    viaRest.push(performance.now() - t0);
    await rest("DELETE", `/v1/sandboxes/${sb.sandbox_id}`, undefined, key);
  };
  const viaRpcOnce = async (i: number) => {
    const id = `benchrpc${i}`;
    const t1 = performance.now();
    await rpc.createSandbox(asRestCreates(id, i));
    await rpc.exec({ sandboxId: id, cmd: "true" });
    viaRpc.push(performance.now() - t1);
    await rpc.destroySandbox({ sandboxId: id });
  };
  // Alternate which goes first, so what one run leaves behind (a teardown, a cache) favours neither.
  for (let i = 0; i < creates; i++) {
    if (i % 2 === 0) {
      await viaRestOnce();
      await viaRpcOnce(i);
    } else {
      await viaRpcOnce(i);
      await viaRestOnce();
    }
  }
  const paired = pairedExtra(viaRest, viaRpc);
  console.log(
    `create → first exec (${creates} runs): REST p50 ${ms(p50(viaRest))}, agent RPC p50 ${ms(p50(viaRpc))}, REST adds ${ms(paired)} (${((paired / p50(viaRpc)) * 100).toFixed(1)}%; median of the pairs' differences)  (target ≤ 10% or ≤ 20 ms)`,
  );

  const sb = await rest<{ sandbox_id: string }>(
    "POST",
    "/v1/sandboxes",
    { template: "minimal" },
    key,
  );
  const restExec: number[] = [];
  const rpcExec: number[] = [];
  for (let i = 0; i < execs + 10; i++) {
    const a = performance.now();
    await rest("POST", `/v1/sandboxes/${sb.sandbox_id}/exec`, { cmd: "true" }, key);
    const b = performance.now();
    await rpc.exec({ sandboxId: sb.sandbox_id, cmd: "true" });
    const c = performance.now();
    if (i >= 10) {
      restExec.push(b - a);
      rpcExec.push(c - b);
    }
  }
  console.log(
    `exec round trip of 'true' (${execs} runs): REST p50 ${ms(p50(restExec))}, agent RPC p50 ${ms(p50(rpcExec))}, ratio ${(p50(restExec) / p50(rpcExec)).toFixed(2)}x, REST adds ${ms(p50(restExec) - p50(rpcExec))}`,
  );

  // Pause and resume, REST and RPC in turns on the same sandbox. The control
  // plane does not see the RPC's pauses: each REST call finds the sandbox
  // running, as its row says.
  type Op = "pause" | "resume";
  type Leg = Record<Op, { total: number[]; outside: number[] }>;
  const leg = (): Leg => ({
    pause: { total: [], outside: [] },
    resume: { total: [], outside: [] },
  });
  const restLeg = leg();
  const rpcLeg = leg();
  const timed = async (op: Op, into: Leg, f: () => Promise<unknown>) => {
    agentMs[op] = NaN;
    const t = performance.now();
    await f();
    const total = performance.now() - t;
    into[op].total.push(total);
    into[op].outside.push(total - agentMs[op]);
  };
  const id = sb.sandbox_id;
  const viaRestCycle = async () => {
    await timed("pause", restLeg, () => rest("POST", `/v1/sandboxes/${id}/pause`, undefined, key));
    await timed("resume", restLeg, () => rest("POST", `/v1/sandboxes/${id}/resume`, {}, key));
  };
  const viaRpcCycle = async () => {
    await timed("pause", rpcLeg, () => rpc.pauseSandbox({ sandboxId: id }));
    await timed("resume", rpcLeg, () => rpc.resumeSandbox({ sandboxId: id, timeoutSec: 300 }));
  };
  for (let i = 0; i < cycles; i++) {
    if (i % 2 === 0) {
      await viaRestCycle();
      await viaRpcCycle();
    } else {
      await viaRpcCycle();
      await viaRestCycle();
    }
  }
  for (const op of ["pause", "resume"] as const) {
    const r = p50(restLeg[op].total);
    const a = p50(rpcLeg[op].total);
    const ro = p50(restLeg[op].outside);
    const ao = p50(rpcLeg[op].outside);
    const extra = pairedExtra(restLeg[op].total, rpcLeg[op].total);
    console.log(
      `${op} (${cycles} runs each): REST p50 ${ms(r)}, agent RPC p50 ${ms(a)}, REST adds ${ms(extra)} (${((extra / a) * 100).toFixed(1)}%; median of the pairs' differences); ` +
        `time outside the agent's own ${op}: REST ${ms(ro)}, RPC ${ms(ao)}, REST adds ${ms(ro - ao)} (${(((ro - ao) / a) * 100).toFixed(1)}% of the RPC)  (target ≤ 10% or ≤ 20 ms)`,
    );
  }
  await rest("DELETE", `/v1/sandboxes/${id}`, undefined, key);
} finally {
  await close();
}

/**
 * Creates served from the warm pool (what a create is once a template is in
 * use): REST and RPC in interleaved pairs, each pair claiming one of two
 * ready entries, so the control plane's share is measured against a create
 * of tens of milliseconds rather than a restore's hundreds.
 */
async function warmCreates(pairs: number): Promise<void> {
  const { agent, cp, rpc, close } = await startPlatform("cp-warm", "wbw", { log, warmPool: 2 });
  const headers = (key: string) => ({ "content-type": "application/json", "x-api-key": key });
  /** Until the pool holds both entries again, then a second for the last one's warm-up to settle. */
  const refilled = async () => {
    const until = Date.now() + 60_000;
    while (agent.manager.warmSandboxes() < 2) {
      if (Date.now() > until) throw new Error("the warm pool did not refill within 60 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 1000));
  };
  try {
    await cp.addHost(new URL(agent.url).host);
    const key = await apiKey(cp.url, "bench-warm@wrenn.local");
    const viaRest: number[] = [];
    const viaRpc: number[] = [];
    const restOnce = async () => {
      const t = performance.now();
      const res = await fetch(`${cp.url}/v1/sandboxes`, {
        method: "POST",
        headers: headers(key),
        body: JSON.stringify({ template: "minimal", memory_mb: 256 }),
      });
      const body = (await res.json()) as { sandbox_id?: string };
      if (!res.ok) throw new Error(`REST create: ${res.status} ${JSON.stringify(body)}`);
      viaRest.push(performance.now() - t);
      return async () => {
        await fetch(`${cp.url}/v1/sandboxes/${body.sandbox_id}`, {
          method: "DELETE",
          headers: headers(key),
        });
      };
    };
    const rpcOnce = async (i: number | string) => {
      const id = `benchwarm${i}`;
      const t = performance.now();
      await rpc.createSandbox(asRestCreates(id, i));
      viaRpc.push(performance.now() - t);
      return async () => {
        await rpc.destroySandbox({ sandboxId: id });
      };
    };
    // The first create of the shape builds the pool's source; the next fill it.
    await (
      await rpcOnce("first")
    )();
    await (
      await rpcOnce("second")
    )();
    viaRpc.length = 0;
    for (let i = 0; i < pairs; i++) {
      await refilled();
      const undo =
        i % 2 === 0 ? [await restOnce(), await rpcOnce(i)] : [await rpcOnce(i), await restOnce()];
      for (const u of undo) await u();
    }
    const paired = pairedExtra(viaRest, viaRpc);
    console.log(
      `create from the warm pool (${pairs} pairs): REST p50 ${ms(p50(viaRest))}, agent RPC p50 ${ms(p50(viaRpc))}, REST adds ${ms(paired)} (${((paired / p50(viaRpc)) * 100).toFixed(1)}%; median of the pairs' differences)  (target ≤ 10% or ≤ 20 ms)`,
    );
  } finally {
    await close();
  }
}

await warmCreates(creates);
