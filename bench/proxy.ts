/**
 * The traffic proxy on a real VM (as root, after `./wrenn image build`):
 * what the control plane's hop adds to the agent's. In one run, against one
 * sandbox, interleaved:
 * - exec round trip of `true` (envd's Process.Start, as the e2b SDK calls
 *   it) through the control plane's proxy vs direct to the agent's proxy;
 * - envd `/files` upload and download of 256 MiB both ways;
 * - this process's RSS growth (both proxy hops live here) while 1 GiB
 *   streams up and back down through the control plane.
 *
 *   node_modules/.bin/node bench/proxy.ts [execs] [MiB]
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Process } from "@wrenn/proto/process/process_pb.js";
import { startBenchPlatform } from "./lib/platform.ts";

const execs = Number(process.argv[2] ?? 200);
const mib = Number(process.argv[3] ?? 256);

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const ms = (x: number) => `${x.toFixed(2)} ms`;
const rssMiB = () => process.memoryUsage.rss() / (1 << 20);

const platform = await startBenchPlatform("proxy", "wbp");
const { secret, agent, cp, key, post: json } = platform;
try {
  // Room in guest RAM for the transfers; E2B's detail gives the envd token.
  const created = await json(
    "/v1/sandboxes",
    { template: "minimal", vcpus: 1, memory_mb: 2048, timeout_sec: 3600 },
    { "x-api-key": String(key) },
  );
  const id = String(created.sandbox_id);
  const detail = (await (
    await fetch(`${cp.url}/sandboxes/${id}`, { headers: { "x-api-key": String(key) } })
  ).json()) as Record<string, unknown>;
  const envdToken = String(detail.envdAccessToken ?? "");

  // The two ways in: the control plane (what users reach) and the agent's own proxy.
  const paths = {
    proxy: {
      url: cp.url,
      headers: { "e2b-sandbox-id": id, "e2b-sandbox-port": "49983" },
    },
    agent: {
      url: agent.url,
      headers: {
        "x-wrenn-proxy-sandbox": id,
        "x-wrenn-proxy-port": "49983",
        "x-wrenn-host-secret": secret,
      },
    },
  };
  const clients = Object.fromEntries(
    Object.entries(paths).map(([name, p]) => [
      name,
      createClient(
        Process,
        createConnectTransport({
          baseUrl: p.url,
          httpVersion: "1.1",
          useBinaryFormat: false,
          interceptors: [
            (next) => (req) => {
              for (const [k, v] of Object.entries(p.headers)) req.header.set(k, v);
              if (envdToken) req.header.set("x-access-token", envdToken);
              req.header.set("authorization", `Basic ${Buffer.from("root:").toString("base64")}`);
              return next(req);
            },
          ],
        }),
      ),
    ]),
  ) as Record<keyof typeof paths, ReturnType<typeof createClient<typeof Process>>>;

  const times = { proxy: [] as number[], agent: [] as number[] };
  for (let i = 0; i < execs + 20; i++) {
    for (const name of ["proxy", "agent"] as const) {
      const t0 = performance.now();
      for await (const ev of clients[name].start({ process: { cmd: "true", args: [] } })) void ev;
      if (i >= 20) times[name].push(performance.now() - t0);
    }
  }
  console.log(
    `exec round trip of 'true' (${execs} runs): through the control plane p50 ${ms(pct(times.proxy, 50))} p99 ${ms(pct(times.proxy, 99))}; direct to the agent p50 ${ms(pct(times.agent, 50))} p99 ${ms(pct(times.agent, 99))}; ratio p50 ${(pct(times.proxy, 50) / pct(times.agent, 50)).toFixed(2)}x  (target ≤ 1.1x)`,
  );

  const headersOf = (name: keyof typeof paths) => ({
    ...paths[name].headers,
    ...(envdToken ? { "x-access-token": envdToken } : {}),
  });
  /** Seconds to upload `size` bytes (generated as they go) and to download them back. */
  async function transfer(name: keyof typeof paths, size: number) {
    const chunk = randomBytes(1 << 20);
    const body = Readable.from(
      (function* () {
        for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
      })(),
    );
    // In the guest's RAM (/dev/shm): the figure is the proxy's, not the guest disk's.
    const url = `${paths[name].url}/files?path=/dev/shm/bench.bin&username=root`;
    const t0 = performance.now();
    const up = await fetch(url, {
      method: "POST",
      headers: { ...headersOf(name), "content-type": "application/octet-stream" },
      body: Readable.toWeb(body) as ReadableStream,
      duplex: "half",
    } as RequestInit);
    if (!up.ok) throw new Error(`upload via ${name}: ${up.status} ${await up.text()}`);
    const t1 = performance.now();
    const down = await fetch(url, { headers: headersOf(name) });
    if (!down.ok || !down.body) throw new Error(`download via ${name}: ${down.status}`);
    let got = 0;
    for await (const c of down.body) got += (c as Uint8Array).length;
    const t2 = performance.now();
    if (got !== size) throw new Error(`download via ${name}: ${got} of ${size} bytes`);
    return { up: (t1 - t0) / 1000, down: (t2 - t1) / 1000 };
  }
  const size = mib << 20;
  const direct = await transfer("agent", size);
  const proxied = await transfer("proxy", size);
  const rate = (s: number) => `${(mib / s).toFixed(0)} MiB/s`;
  console.log(
    `/files ${mib} MiB: upload through the control plane ${rate(proxied.up)} vs direct ${rate(direct.up)} (ratio ${(direct.up / proxied.up).toFixed(2)}), download ${rate(proxied.down)} vs ${rate(direct.down)} (ratio ${(direct.down / proxied.down).toFixed(2)})  (target ≥ 0.8)`,
  );

  global.gc?.();
  const before = rssMiB();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB())), 50);
  // 1 GiB in four files' worth, so the guest's disk need only hold 256 MiB.
  for (let i = 0; i < 4; i++) await transfer("proxy", 256 << 20);
  clearInterval(sampler);
  console.log(
    `RSS of this process (both proxy hops) while 1 GiB streams up and down through the control plane: ${before.toFixed(0)} → peak ${peak.toFixed(0)} MiB, growth ${(peak - before).toFixed(1)} MiB  (target ≤ 32 MiB)`,
  );
} finally {
  await platform.close();
}
