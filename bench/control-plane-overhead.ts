/**
 * What the control plane adds: create-to-first-exec through REST against the
 * same through the host agent's RPC directly, interleaved in one run on real
 * VMs; and the exec round trip alone (REST vs RPC, same sandbox). Target: REST
 * adds ≤ 10% (or ≤ 5 ms). Needs root and the image (`./wrenn image build`).
 *
 *   node_modules/.bin/node bench/control-plane-overhead.ts [creates] [execs]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HostAgentService } from "@wrenn/proto/hostagent/v1/hostagent_pb.js";
import { createLogger } from "@wrenn/shared/log.ts";
import { startControlPlane } from "@wrenn/control-plane/server.ts";
import { startHostAgent } from "../packages/host-agent/src/agent.ts";
import { dataDir } from "../packages/host-agent/src/image/store.ts";

const creates = Number(process.argv[2] ?? 3);
const execs = Number(process.argv[3] ?? 100);
const log = createLogger("bench", "warn");

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const ms = (x: number) => `${x.toFixed(1)} ms`;

const root = await mkdtemp(join(tmpdir(), "wrenn-bench-cp-"));
const agent = await startHostAgent({
  listen: "127.0.0.1:0",
  dataDir: join(root, "agent"),
  imageDir: dataDir(),
  networkPrefix: "wbc",
  log,
});
const cp = await startControlPlane({ port: 0, dataDir: join(root, "pg"), log });
const rpc = createClient(
  HostAgentService,
  createConnectTransport({ baseUrl: agent.url, httpVersion: "1.1" }),
);

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
  const { token } = await rest<{ token: string }>("POST", "/v1/auth/signup", {
    email: "bench@wrenn.local",
    password: "bench-password",
  });
  const keyRes = await fetch(`${cp.url}/v1/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ name: "bench" }),
  });
  const { key } = (await keyRes.json()) as { key: string };

  const viaRest: number[] = [];
  const viaRpc: number[] = [];
  for (let i = 0; i < creates; i++) {
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

    const id = `benchrpc${i}`;
    const t1 = performance.now();
    await rpc.createSandbox({ sandboxId: id, memoryMb: 256 });
    await rpc.exec({ sandboxId: id, cmd: "true" });
    viaRpc.push(performance.now() - t1);
    await rpc.destroySandbox({ sandboxId: id });
  }
  console.log(
    `create → first exec (${creates} runs): REST p50 ${ms(p50(viaRest))}, agent RPC p50 ${ms(p50(viaRpc))}, REST adds ${ms(p50(viaRest) - p50(viaRpc))} (${((p50(viaRest) / p50(viaRpc) - 1) * 100).toFixed(1)}%)  (target ≤ 10% or ≤ 5 ms)`,
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
  await rest("DELETE", `/v1/sandboxes/${sb.sandbox_id}`, undefined, key);
} finally {
  await cp.close();
  await agent.shutdown();
  await rm(root, { recursive: true, force: true });
}
