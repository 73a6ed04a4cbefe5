/**
 * Page server throughput: a harness playing Firecracker touches every page
 * of a 3-generation snapshot served by native/uffd over a real userfaultfd;
 * the baseline is a plain memcpy of the same bytes, measured by the same
 * harness in the same run. Target: page server ≥ 25% of memcpy.
 * Also printed: pages per second of the server's own CPU time, which stays
 * meaningful when the host is busy and wall time mostly measures waiting.
 *
 *   node bench/page-server.ts [--mib 256] [--rounds 3]
 * Needs root (userfaultfd), gcc and make.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

// The agent's loggers are created at import; keep the per-run exit lines out of the table.
process.env.WRENN_LOG_LEVEL ??= "warn";
const { BLOCK_SIZE } = await import("../packages/host-agent/src/snapshot/header.ts");
const { dirtyBitmap, writeDiff, writeFull } =
  await import("../packages/host-agent/src/snapshot/memfile.ts");
const { NATIVE_UFFD_DIR, buildPageServer, startPageServer } =
  await import("../packages/host-agent/src/snapshot/page-server.ts");

const { values } = parseArgs({
  options: { mib: { type: "string", default: "256" }, rounds: { type: "string", default: "3" } },
});
const size = Number(values.mib) << 20;
const rounds = Number(values.rounds);

interface Report {
  ok: boolean;
  pages: number;
  touch_ns: number;
  memcpy_ns: number;
}

/** Guest-like memory: runs of data (1–64 blocks) between runs of zeros, ~70% data. */
async function writeImage(path: string): Promise<void> {
  const fh = await open(path, "w");
  const chunk = Buffer.alloc(4 << 20);
  let inData = true;
  let runLeft = 0;
  for (let pos = 0; pos < size; pos += chunk.length) {
    for (let b = 0; b < chunk.length / BLOCK_SIZE; b++) {
      if (runLeft === 0) {
        inData = Math.random() < 0.7;
        runLeft = 1 + Math.floor(Math.random() * 64);
      }
      runLeft--;
      if (inData) randomBytes(BLOCK_SIZE).copy(chunk, b * BLOCK_SIZE);
      else chunk.fill(0, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE);
    }
    await fh.write(chunk, 0, chunk.length, pos);
  }
  await fh.close();
}

/** Dirties `count` random blocks of the image in place; returns their indices. */
async function scribble(path: string, count: number): Promise<number[]> {
  const fh = await open(path, "r+");
  const blocks: number[] = [];
  for (let i = 0; i < count; i++) {
    const b = Math.floor(Math.random() * (size / BLOCK_SIZE));
    blocks.push(b);
    await fh.write(randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, b * BLOCK_SIZE);
  }
  await fh.close();
  return blocks;
}

function harness(socket: string, expected: string, cpu: number | undefined): Promise<Report> {
  const args = cpu === undefined ? [] : ["--cpu", String(cpu)];
  return new Promise((resolve, reject) => {
    const child = spawn(join(NATIVE_UFFD_DIR, "test-harness"), [...args, socket, expected], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`harness exit ${code}`));
      else resolve(JSON.parse(out.trim()) as Report);
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

await buildPageServer();
const dir = await mkdtemp(join(tmpdir(), "wrenn-bench-uffd-"));
try {
  const image = join(dir, "image");
  await writeImage(image);
  await writeFull({ imagePath: image, dir });
  for (let g = 1; g <= 2; g++) {
    const dirty = await scribble(image, 2000);
    await writeDiff({ imagePath: image, dir, dirty: dirtyBitmap(size, dirty) });
  }

  console.log(`page server: ${size >> 20} MiB, 3-generation chain, median of ${rounds} rounds`);
  console.log(
    "run KiB  read-ahead  pinned  pages/s   memcpy pages/s  ratio   server CPU: pages/s of its own CPU time",
  );
  // [run KiB, read-ahead KiB, CPU]: 4/0 is one page per fault (a plain handler), the last rows are the defaults.
  const configs: [number, number, number | undefined][] = [
    [4, 0, undefined],
    [4, 0, 0],
    [64, 0, undefined],
    [1024, 0, undefined],
    [256, 4096, 0],
    [256, 4096, undefined],
  ];
  for (const [runKib, readaheadKib, cpu] of configs) {
    const rates: number[] = [];
    const base: number[] = [];
    const cpuRates: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const server = await startPageServer({
        socketPath: join(dir, "uffd.sock"),
        snapshotDir: dir,
        runKib,
        readaheadKib,
        cpu,
      });
      const rep = await harness(server.socketPath, image, cpu);
      await server.exited;
      if (!rep.ok) throw new Error("harness saw wrong bytes");
      // On a busy host wall time mostly measures waiting for a CPU; the server's own CPU time does not.
      const cpuUs = Number(/cpu_us=(\d+)/.exec(server.stderr())?.[1] ?? NaN);
      cpuRates.push(rep.pages / (cpuUs / 1e6));
      rates.push(rep.pages / (rep.touch_ns / 1e9));
      base.push(rep.pages / (rep.memcpy_ns / 1e9));
    }
    const rate = median(rates);
    const mem = median(base);
    console.log(
      `${String(runKib).padEnd(8)} ${`${readaheadKib} KiB`.padEnd(11)} ` +
        `${(cpu === undefined ? "no" : `cpu ${cpu}`).padEnd(7)} ` +
        `${Math.round(rate).toString().padStart(7)}  ${Math.round(mem).toString().padStart(14)}  ` +
        `${`${((rate / mem) * 100).toFixed(1)}%`.padEnd(7)} ${Math.round(median(cpuRates))} ` +
        `(${((median(cpuRates) / mem) * 100).toFixed(0)}% of memcpy)`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
