/**
 * Exec round trip through envd: Process.Start of `true`, streamed until its
 * end event, against a bare child_process.spawn of the same command measured
 * in the same run (interleaved, so both see the same machine). envd runs as
 * its own process from the same esbuild bundle the guest image carries (a
 * fork costs in proportion to the parent's memory, so the artefact matters),
 * and the clients keep their connection alive, as the SDK does. Prints
 * p50/p99 of each and the ratios (lower is better). On a busy machine,
 * `chrt -f 10` in front gives steadier figures (children inherit it, so the
 * baseline and envd are treated alike).
 *
 *   node_modules/.bin/node bench/envd-exec.ts [runs]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "node:http";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  Process,
  StartRequestSchema,
  StartResponseSchema,
} from "@wrenn/proto/process/process_pb.js";
import { runCommand } from "@wrenn/shared/command.ts";

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
const outDir = await mkdtemp(join(tmpdir(), "wrenn-envd-bench-"));
// Built by its own process, as in envd-files.ts: this one is the clients and
// the bare spawn's parent, and carries nothing else. build.ts prints
// "<bundle> sha256=…".
const built = await runCommand(process.execPath, [
  fileURLToPath(new URL("../packages/envd/build.ts", import.meta.url)),
  outDir,
]);
const bundle = built.stdout.trim().split(" ")[0] ?? "";
const whoami = process.getuid?.() === 0 ? "root" : (process.env.USER ?? "root");
const envd = spawn(
  process.execPath,
  [bundle, "--port", String(port), "--host", "127.0.0.1", "--default-user", whoami],
  { env: { ...process.env, WRENN_LOG_LEVEL: "warn" }, stdio: ["ignore", "inherit", "inherit"] },
);

const baseUrl = `http://127.0.0.1:${port}`;
const client = createClient(
  Process,
  createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
);

function basicAuth(user: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:`).toString("base64")}` };
}

/** Through @connectrpc/connect-node's client, as our SDK and tests talk to envd. */
async function viaConnectClient(headers: Record<string, string>): Promise<void> {
  let exitCode: number | undefined;
  for await (const res of client.start({ process: { cmd: "true" }, stdin: false }, { headers })) {
    if (res.event?.event.case === "end") exitCode = res.event.event.value.exitCode;
  }
  if (exitCode !== 0) throw new Error(`true exited ${exitCode}`);
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const startBody = toBinary(
  StartRequestSchema,
  create(StartRequestSchema, { process: { cmd: "true" }, stdin: false }),
);
const startFrame = Buffer.alloc(5 + startBody.length);
startFrame.writeUInt32BE(startBody.length, 1);
startFrame.set(startBody, 5);

/**
 * The same RPC on the wire with nothing but node:http: Connect's streaming
 * framing by hand. The client's own cost then hardly counts, so this row
 * shows what envd itself adds.
 */
function viaLeanClient(headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${baseUrl}/process.Process/Start`,
      {
        method: "POST",
        agent,
        headers: { ...headers, "content-type": "application/connect+proto" },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const buf = Buffer.concat(chunks);
          let exitCode: number | undefined;
          for (let at = 0; at + 5 <= buf.length;) {
            const length = buf.readUInt32BE(at + 1);
            const message = buf.subarray(at + 5, at + 5 + length);
            // Flag 2 marks Connect's end-of-stream message (JSON), not an event.
            if ((buf[at]! & 2) === 0) {
              const ev = fromBinary(StartResponseSchema, message).event?.event;
              if (ev?.case === "end") exitCode = ev.value.exitCode;
            }
            at += 5 + length;
          }
          if (exitCode === 0) resolve();
          else reject(new Error(`true exited ${exitCode}: ${buf.toString("latin1")}`));
        });
      },
    );
    req.on("error", reject);
    req.end(startFrame);
  });
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
      await viaConnectClient({});
      break;
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Unavailable || attempt > 200)
        throw err;
      await sleep(50);
    }
  }

  const users: Array<{ name: string; headers: Record<string, string> }> = [
    { name: `envd's own user (${whoami})`, headers: {} },
  ];
  // A uid switch is what a sandbox's default user costs; `nobody` exists on Debian.
  if (process.getuid?.() === 0) {
    users.push({ name: "another user (nobody)", headers: basicAuth("nobody") });
  }
  const clients = [
    { name: "connect-node client", run: viaConnectClient },
    { name: "lean HTTP client", run: viaLeanClient },
  ];

  console.log(
    `envd exec of \`true\`: p50/p99 over ${runs} runs each, interleaved with a bare spawn`,
  );
  for (const user of users) {
    const base: number[] = [];
    const through = clients.map(() => [] as number[]);
    for (let i = 0; i < warmup; i++) {
      await bare();
      for (const c of clients) await c.run(user.headers);
    }
    for (let i = 0; i < runs; i++) {
      // Rotate the order so no variant always runs right after another.
      const order = [-1, ...clients.keys()];
      for (let k = 0; k < i % order.length; k++) order.push(order.shift()!);
      for (const which of order) {
        if (which === -1) base.push(await time(bare));
        else through[which]!.push(await time(() => clients[which]!.run(user.headers)));
      }
    }
    const b50 = percentile(base, 50);
    const b99 = percentile(base, 99);
    console.log(`as ${user.name}`);
    console.log(`  ${"bare spawn".padEnd(41)} p50 ${fmt(b50)}  p99 ${fmt(b99)}`);
    clients.forEach((c, k) => {
      const e50 = percentile(through[k]!, 50);
      const e99 = percentile(through[k]!, 99);
      console.log(
        `  ${`via envd, ${c.name}`.padEnd(41)} p50 ${fmt(e50)}  p99 ${fmt(e99)}  ratio p50 ${(e50 / b50).toFixed(2)}x  p99 ${(e99 / b99).toFixed(2)}x`,
      );
    });
  }
  console.log("target: ≤ 1.5x at p50");
} finally {
  envd.kill();
  await once(envd, "exit").catch(() => undefined);
  await rm(outDir, { recursive: true, force: true });
}
