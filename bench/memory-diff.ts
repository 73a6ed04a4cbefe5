/**
 * Memory diff size: after a small change to guest memory, how big is the
 * Diff (dirty bitmap, as Firecracker; or compared with the parent, as
 * QEMU) against the Full snapshot of the same memory, and how long each
 * takes to write. Baselines are the Full snapshot and the raw image, both
 * taken in the same run.
 *
 *   node bench/memory-diff.ts [--mib 256] [--changed-kib 1024]
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

process.env.WRENN_LOG_LEVEL ??= "warn";
const { BLOCK_SIZE } = await import("../packages/host-agent/src/snapshot/header.ts");
const { dirtyBitmap, writeDiff, writeFull } =
  await import("../packages/host-agent/src/snapshot/memfile.ts");

const { values } = parseArgs({
  options: {
    mib: { type: "string", default: "256" },
    "changed-kib": { type: "string", default: "1024" },
  },
});
const size = Number(values.mib) << 20;
const changedBlocks = (Number(values["changed-kib"]) << 10) / BLOCK_SIZE;

/** Guest-like memory: runs of data between runs of zeros, ~60% data. */
async function writeImage(path: string): Promise<void> {
  const fh = await open(path, "w");
  const chunk = Buffer.alloc(4 << 20);
  let inData = true;
  let runLeft = 0;
  for (let pos = 0; pos < size; pos += chunk.length) {
    for (let b = 0; b < chunk.length / BLOCK_SIZE; b++) {
      if (runLeft === 0) {
        inData = Math.random() < 0.6;
        runLeft = 1 + Math.floor(Math.random() * 256);
      }
      runLeft--;
      if (inData) randomBytes(BLOCK_SIZE).copy(chunk, b * BLOCK_SIZE);
      else chunk.fill(0, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE);
    }
    await fh.write(chunk, 0, chunk.length, pos);
  }
  await fh.close();
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await fn();
  return [result, performance.now() - start];
}

const mib = (n: number) => `${(n / (1 << 20)).toFixed(2)} MiB`;

const root = await mkdtemp(join(tmpdir(), "wrenn-bench-diff-"));
try {
  const image = join(root, "image");
  await writeImage(image);
  const bitmapDir = join(root, "bitmap");
  const compareDir = join(root, "compare");
  await mkdir(bitmapDir);
  await mkdir(compareDir);
  const [full, fullMs] = await timed(() => writeFull({ imagePath: image, dir: bitmapDir }));
  await writeFull({ imagePath: image, dir: compareDir });

  // A small change: scattered blocks, as a running process would dirty them.
  const changed = new Set<number>();
  while (changed.size < changedBlocks) changed.add(Math.floor(Math.random() * (size / BLOCK_SIZE)));
  const sparse = join(root, "sparse");
  const after = join(root, "after");
  await copyFile(image, after);
  const fa = await open(after, "r+");
  const fs = await open(sparse, "w");
  for (const b of changed) {
    const data = randomBytes(BLOCK_SIZE);
    await fa.write(data, 0, BLOCK_SIZE, b * BLOCK_SIZE);
    await fs.write(data, 0, BLOCK_SIZE, b * BLOCK_SIZE);
  }
  await fs.truncate(size);
  await fa.close();
  await fs.close();

  const [byBitmap, bitmapMs] = await timed(() =>
    writeDiff({ imagePath: sparse, dir: bitmapDir, dirty: dirtyBitmap(size, changed) }),
  );
  const [byCompare, compareMs] = await timed(() =>
    writeDiff({ imagePath: after, dir: compareDir }),
  );

  console.log(
    `memory diff: ${size >> 20} MiB guest, ${changed.size} blocks (${mib(changed.size * BLOCK_SIZE)}) changed`,
  );
  console.log(
    `raw image ${mib(size)}; Full ${mib(full.dataBytes)} (${((full.dataBytes / size) * 100).toFixed(1)}% of raw, zero blocks dropped) in ${fullMs.toFixed(0)} ms`,
  );
  for (const [name, r, ms] of [
    ["diff (dirty bitmap)", byBitmap, bitmapMs],
    ["diff (compare)     ", byCompare, compareMs],
  ] as const) {
    console.log(
      `${name} ${mib(r.dataBytes)} + header ${r.header.mapping.length * 40 + 64} B: ` +
        `${((r.dataBytes / full.dataBytes) * 100).toFixed(2)}% of Full size, ` +
        `written in ${ms.toFixed(0)} ms (${(ms / fullMs).toFixed(2)}x the Full's time)`,
    );
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
