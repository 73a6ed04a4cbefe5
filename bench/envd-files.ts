/**
 * /files throughput: upload (POST, application/octet-stream) and download
 * (GET) of one file through envd, against `cp` of the same bytes on the same
 * disk, interleaved in the same run so both see the same machine. Every leg
 * reads a file and writes a file: the upload client streams from a source
 * file, the download client writes what it receives to disk. envd runs as
 * its own process from the esbuild bundle the guest image carries.
 *
 * Two baselines: `cp` (coreutils uses copy_file_range, an in-kernel copy
 * with no user-space pass at all) and `dd bs=1M` (the plain read/write loop:
 * one copy out of the page cache, one back in). An upload or download also
 * crosses a socket, so it makes four copies in two processes. Two measures:
 * "durable" stops the clock once the copy is fsync'd (the bytes are on the
 * disk, as a file copy is meant to be), "cached" once it is in the page
 * cache, which shows CPU cost rather than the disk. Also prints envd's CPU
 * seconds per GiB, and the client's (this process, a plain node:http client
 * streaming to or from a file): on a 2-core machine a download is bound by
 * the client's receive path, so each direction is also measured with curl
 * as the client (a native client, as most SDK-less users and scripts have),
 * which shows envd's own throughput. Target: ≥ 0.5 of the plain copy.
 *
 *   node_modules/.bin/node bench/envd-files.ts [MiB] [runs]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, open, readFile, rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { runCommand } from "@wrenn/shared/command.ts";

const mib = Math.max(16, Number(process.argv[2] ?? 512));
const runs = Math.max(1, Number(process.argv[3] ?? 3));
const bytes = mib << 20;
const CHUNK = 1 << 20;

async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

// The bench's own files live on the default temp disk, like the envd files.
const work = await mkdtemp(join(tmpdir(), "wrenn-files-bench-"));
// Built by its own process: this one is the HTTP client, and with the bundler
// loaded into it the client paid for it (2.5x the full GCs over a run, ~2.3
// instead of ~1.5 CPU s/GiB downloading) while cp and dd, processes of their
// own, did not. build.ts prints "<bundle> sha256=…".
const built = await runCommand(process.execPath, [
  fileURLToPath(new URL("../packages/envd/build.ts", import.meta.url)),
  join(work, "envd"),
]);
const bundle = built.stdout.trim().split(" ")[0] ?? "";
const port = await freePort();
const whoami = process.getuid?.() === 0 ? "root" : (process.env.USER ?? "root");
const envd = spawn(
  process.execPath,
  [bundle, "--port", String(port), "--host", "127.0.0.1", "--default-user", whoami],
  { env: { ...process.env, WRENN_LOG_LEVEL: "warn" }, stdio: ["ignore", "inherit", "inherit"] },
);
const baseUrl = `http://127.0.0.1:${port}`;

async function waitHealthy(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`${baseUrl}/health`).then(
      (r) => r.status === 204,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("envd did not become healthy");
}

async function makeSource(path: string): Promise<void> {
  const block = Buffer.alloc(CHUNK);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  const out = createWriteStream(path);
  for (let n = 0; n < mib; n++) {
    block.writeUInt32LE(n, 0);
    if (!out.write(Buffer.from(block))) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

function upload(src: string, dst: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${baseUrl}/files?path=${encodeURIComponent(dst)}`,
      {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "content-length": bytes },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`upload: ${res.statusCode}`)),
        );
      },
    );
    req.on("error", reject);
    pipeline(createReadStream(src, { highWaterMark: CHUNK }), req).catch(reject);
  });
}

function download(src: string, dst: string): Promise<void> {
  return new Promise((resolve, reject) => {
    request(`${baseUrl}/files?path=${encodeURIComponent(src)}`, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`download: ${res.statusCode}`));
        return;
      }
      pipeline(res, createWriteStream(dst, { highWaterMark: CHUNK })).then(resolve, reject);
    })
      .on("error", reject)
      .end();
  });
}

async function fsync(path: string): Promise<void> {
  const file = await open(path, "r+");
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}

/** CPU seconds (user + system) a process has used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Sample {
  mbps: number;
  envdCpu: number;
  /** This process's CPU: the HTTP client's side of the transfer. */
  clientCpu: number;
}

async function timed(fn: () => Promise<void>, dst: string, durable: boolean): Promise<Sample> {
  await rm(dst, { force: true });
  // Earlier legs' dirty pages must not be flushed on this leg's clock.
  await runCommand("sync", []);
  const cpu0 = await cpuSeconds(envd.pid ?? 0);
  const own0 = process.cpuUsage();
  const start = performance.now();
  await fn();
  // Before the fsync, which runs here for both directions.
  const own = process.cpuUsage(own0);
  if (durable) await fsync(dst);
  const seconds = (performance.now() - start) / 1000;
  const envdCpu = (await cpuSeconds(envd.pid ?? 0)) - cpu0;
  if ((await stat(dst)).size !== bytes) throw new Error(`${dst} has the wrong size`);
  await rm(dst, { force: true });
  return { mbps: bytes / 1e6 / seconds, envdCpu, clientCpu: (own.user + own.system) / 1e6 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

try {
  await waitHealthy();
  const src = join(work, "source.bin");
  await makeSource(src);
  const dst = join(work, "dest.bin");
  // One untimed round so page cache and JIT are warm for every leg alike.
  await upload(src, dst);
  await download(src, dst);
  console.log(`envd /files throughput, ${mib} MiB, median of ${runs} runs`);
  const legs = {
    cp: () => runCommand("cp", [src, dst]).then(() => undefined),
    dd: () =>
      runCommand("dd", [`if=${src}`, `of=${dst}`, "bs=1M", "status=none"]).then(() => undefined),
    upload: () => upload(src, dst),
    download: () => download(src, dst),
    // -T streams the file (--data-binary would read it whole into memory).
    "upload (curl)": () =>
      runCommand("curl", [
        "-sS",
        "--fail",
        "-X",
        "POST",
        "-H",
        "content-type: application/octet-stream",
        "-T",
        src,
        `${baseUrl}/files?path=${encodeURIComponent(dst)}`,
      ]).then(() => undefined),
    "download (curl)": () =>
      runCommand("curl", [
        "-sS",
        "--fail",
        "-o",
        dst,
        `${baseUrl}/files?path=${encodeURIComponent(src)}`,
      ]).then(() => undefined),
  };
  const names = Object.keys(legs) as (keyof typeof legs)[];
  for (const durable of [true, false]) {
    const samples = Object.fromEntries(names.map((n) => [n, [] as Sample[]])) as Record<
      keyof typeof legs,
      Sample[]
    >;
    for (let i = 0; i < runs; i++) {
      for (const name of names) {
        samples[name].push(await timed(legs[name], dst, durable));
      }
    }
    const cp = median(samples.cp.map((x) => x.mbps));
    const dd = median(samples.dd.map((x) => x.mbps));
    console.log(durable ? "durable (until fsync):" : "cached (page cache):");
    console.log(`  cp (copy_file_range)  ${cp.toFixed(0).padStart(6)} MB/s`);
    console.log(`  dd bs=1M (plain copy) ${dd.toFixed(0).padStart(6)} MB/s`);
    for (const name of ["upload", "download", "upload (curl)", "download (curl)"] as const) {
      const mbps = median(samples[name].map((x) => x.mbps));
      const cpuPerGiB = (median(samples[name].map((x) => x.envdCpu)) * 1024) / mib;
      const clientPerGiB = (median(samples[name].map((x) => x.clientCpu)) * 1024) / mib;
      console.log(
        `  ${`${name} via envd`.padEnd(28)} ${mbps.toFixed(0).padStart(6)} MB/s   ` +
          `vs dd ${(mbps / dd).toFixed(2)}   vs cp ${(mbps / cp).toFixed(2)}   envd CPU ${cpuPerGiB.toFixed(2)} s/GiB   client CPU ${clientPerGiB.toFixed(2)} s/GiB`,
      );
    }
  }
} finally {
  envd.kill();
  await once(envd, "exit").catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}
