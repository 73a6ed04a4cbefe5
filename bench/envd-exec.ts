/**
 * Exec round trip through envd: Process.Start of `true`, streamed until its
 * end event, against a bare child_process.spawn of the same command measured
 * in the same run (interleaved, so both see the same machine). envd runs as
 * its own process, as in a VM, and the client keeps its connection alive, as
 * the SDK does. Prints p50/p99 of both and the ratio (lower is better).
 *
 *   node_modules/.bin/node bench/envd-exec.ts [runs]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Process } from "@wrenn/proto/process/process_pb.js";

const runs = Math.max(200, Number(process.argv[2] ?? 300));
const warmup = 30;

async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

const port = await freePort();
const main = fileURLToPath(new URL("../packages/envd/src/main.ts", import.meta.url));
const whoami = process.getuid?.() === 0 ? "root" : (process.env.USER ?? "root");
const envd = spawn(
  process.execPath,
  [main, "--port", String(port), "--host", "127.0.0.1", "--default-user", whoami],
  { env: { ...process.env, WRENN_LOG_LEVEL: "warn" }, stdio: ["ignore", "inherit", "inherit"] },
);

const client = createClient(
  Process,
  createConnectTransport({
    baseUrl: `http://127.0.0.1:${port}`,
    httpVersion: "1.1",
    useBinaryFormat: true,
  }),
);

function basicAuth(user: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:`).toString("base64")}` };
}

async function viaEnvd(headers: Record<string, string>): Promise<void> {
  let exitCode: number | undefined;
  for await (const res of client.start({ process: { cmd: "true" }, stdin: false }, { headers })) {
    if (res.event?.event.case === "end") exitCode = res.event.event.value.exitCode;
  }
  if (exitCode !== 0) throw new Error(`true exited ${exitCode}`);
}

async function bare(): Promise<void> {
  const child = spawn("true", [], { stdio: ["ignore", "pipe", "pipe"] });
  const [code] = (await once(child, "close")) as [number | null];
  if (code !== 0) throw new Error(`true exited ${code}`);
}

async function time(fn: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

try {
  for (let attempt = 0; ; attempt++) {
    try {
      await viaEnvd({});
      break;
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Unavailable || attempt > 200)
        throw err;
      await sleep(50);
    }
  }

  const cases: Array<{ name: string; headers: Record<string, string> }> = [
    { name: `as envd's own user (${whoami})`, headers: {} },
  ];
  // A uid switch is what a sandbox's default user costs; `nobody` exists on Debian.
  if (process.getuid?.() === 0)
    cases.push({ name: "as another user (nobody)", headers: basicAuth("nobody") });

  for (const { name, headers } of cases) {
    const base: number[] = [];
    const through: number[] = [];
    for (let i = 0; i < warmup; i++) {
      await bare();
      await viaEnvd(headers);
    }
    for (let i = 0; i < runs; i++) {
      // Alternate which goes first so neither always follows the other.
      if (i % 2 === 0) {
        base.push(await time(bare));
        through.push(await time(() => viaEnvd(headers)));
      } else {
        through.push(await time(() => viaEnvd(headers)));
        base.push(await time(bare));
      }
    }
    const b50 = percentile(base, 50);
    const e50 = percentile(through, 50);
    console.log(`envd exec of \`true\` ${name}, ${runs} runs each`);
    console.log(`  bare spawn   p50 ${fmt(b50)}  p99 ${fmt(percentile(base, 99))}`);
    console.log(`  via envd     p50 ${fmt(e50)}  p99 ${fmt(percentile(through, 99))}`);
    console.log(
      `  ratio        p50 ${(e50 / b50).toFixed(2)}x  p99 ${(percentile(through, 99) / percentile(base, 99)).toFixed(2)}x  (target ≤ 1.5x at p50)`,
    );
  }
} finally {
  envd.kill();
  await once(envd, "exit").catch(() => undefined);
}
