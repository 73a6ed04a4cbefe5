/**
 * File throughput through the control plane: REST `files/write` (a raw body)
 * and `files/read` against the same requests sent straight to the agent's
 * proxy hop (envd's `/files`, served here by the fake agent), which REST
 * relays them to — the relay's cost. The agent is the tests' fake (real
 * HTTP on loopback; it hashes what it receives and makes up what it sends),
 * so the figures are the control plane's and the transport's, not a
 * guest's disk. Interleaved rounds in one run; the ratio is REST time over
 * direct time. Everything runs in this one process.
 *
 *   node_modules/.bin/node bench/control-plane-files.ts [MiB] [rounds]
 */
import { createLogger } from "@wrenn/shared/log.ts";
import { ENVD_PORT, PROXY_PORT_HEADER, PROXY_SANDBOX_HEADER } from "@wrenn/shared/sandbox-proxy.ts";
import { startControlPlane } from "@wrenn/control-plane/server.ts";
import { patternChunks } from "@wrenn/shared/testing/streams.ts";
import { startFakeAgent } from "../packages/control-plane/test/fake-agent.ts";

const mib = Number(process.argv[2] ?? 256);
const rounds = Number(process.argv[3] ?? 3);
const size = mib << 20;
const log = createLogger("bench", process.env.WRENN_BENCH_LOG ?? "silent");

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const rate = (ms: number) => `${Math.round(mib / (ms / 1000))} MiB/s`;

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

const agent = await startFakeAgent();
const cp = await startControlPlane({ port: 0, log, reconcileIntervalMs: 3600_000 });
try {
  await cp.addHost(agent.address);
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(cp.url + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const session = await post("/v1/auth/signup", {
    email: "bench-files@example.com",
    password: "benchmark password",
  });
  const { key } = (await post(
    "/v1/api-keys",
    { name: "bench" },
    { authorization: `Bearer ${String(session.token)}` },
  )) as { key: string };
  const auth = { "x-api-key": key };
  const id = String((await post("/v1/sandboxes", {}, auth)).sandbox_id);
  agent.generated.set(`${id}:/gen`, size);
  // What the control plane adds to a request for the agent's hop.
  const hop = { [PROXY_SANDBOX_HEADER]: id, [PROXY_PORT_HEADER]: String(ENVD_PORT) };
  /** The file's bytes as the SDK sends them, of unknown length (a stream). */
  const rawBody = () => {
    const source = patternChunks(size);
    return new ReadableStream<Uint8Array>({
      pull(ctrl) {
        const next = source.next();
        if (!next.done) ctrl.enqueue(next.value);
        else ctrl.close();
      },
    });
  };
  const write = async (url: string, headers: Record<string, string>) => {
    const res = await fetch(url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/octet-stream" },
      body: rawBody(),
      duplex: "half",
    } as RequestInit);
    if (res.status !== 200) throw new Error(`write ${url}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  };
  const restWrite = () => write(`${cp.url}/v1/sandboxes/${id}/files/write?path=/rest`, auth);
  const directWrite = () => write(`http://${agent.address}/files?path=/direct&username=user`, hop);
  const directRead = async () => {
    const res = await fetch(`http://${agent.address}/files?path=/gen&username=user`, {
      headers: hop,
    });
    let n = 0;
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) n += c.length;
    if (n !== size) throw new Error(`direct read ${n} bytes`);
  };
  const restRead = async () => {
    const res = await fetch(`${cp.url}/v1/sandboxes/${id}/files/read`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ path: "/gen" }),
    });
    let n = 0;
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) n += c.length;
    if (n !== size) throw new Error(`REST read ${n} bytes`);
  };

  const t = { directWrite: [] as number[], restWrite: [] as number[] };
  const r = { directRead: [] as number[], restRead: [] as number[] };
  await directRead();
  await restRead();
  for (let i = 0; i < rounds; i++) {
    t.directWrite.push(await time(directWrite));
    t.restWrite.push(await time(restWrite));
    r.directRead.push(await time(directRead));
    r.restRead.push(await time(restRead));
  }
  const same =
    agent.written.get(`${id}:/direct`)?.sha256 === agent.written.get(`${id}:/rest`)?.sha256;
  if (!same) throw new Error("REST and direct uploads reached the agent differently");
  const line = (what: string, direct: number[], rest: number[]) =>
    `${what} ${mib} MiB: REST p50 ${p50(rest).toFixed(0)} ms (${rate(p50(rest))}), ` +
    `baseline straight to the agent's hop p50 ${p50(direct).toFixed(0)} ms (${rate(p50(direct))}); ratio ${(p50(rest) / p50(direct)).toFixed(2)}x`;
  console.log(line("write", t.directWrite, t.restWrite));
  console.log(line("read ", r.directRead, r.restRead));
  console.log(`largest chunk the agent received: ${agent.maxChunk} bytes`);
} finally {
  await cp.close();
  await agent.close();
}
