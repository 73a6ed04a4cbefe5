/**
 * Fills a filesystem to 0 bytes free, for tests of a full data disk: one
 * fallocated file, grown by halving chunks until not even 4 KiB fits (xfs
 * refuses one allocation of everything `statfs` calls free: it keeps blocks
 * for the extents' metadata). Only for a filesystem the test made itself.
 * xfs gives space back late — delayed allocations reserve more than they
 * take once written back, and deleted files are freed in the background —
 * so the fill syncs the filesystem and tops up until the space stays gone
 * (for FILL_MS at most), and never fills past the filesystem it began on.
 */
import { execFile } from "node:child_process";
import { rm, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const ROUNDS = 5;
/** Free space a round may leave before the fill counts as done. */
const SETTLED = 64 * 1024;
/**
 * How long the fill tops up: a filesystem still freeing space (xfs frees a
 * deleted file's blocks in the background) can keep a fill going; past
 * this, the space it left is what `freeBytes` says.
 */
const FILL_MS = 30_000;

export interface Filler {
  /** Bytes free once filled (a few KiB the filesystem keeps for itself). */
  freeBytes: number;
  /** Gives the space back. */
  remove(): Promise<void>;
}

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

export async function fillDisk(dir: string): Promise<Filler> {
  const path = join(dir, `disk-filler-${process.pid}`);
  const remove = () => rm(path, { force: true });
  const { dev } = await stat(dir);
  const started = Date.now();
  try {
    // Space the filesystem is still freeing (files deleted just before) first.
    await run("sync", ["-f", dir]);
    let size = 0;
    for (let round = 0; round < ROUNDS && Date.now() - started < FILL_MS; round++) {
      let chunk = await freeBytes(dir);
      while (chunk >= 4096 && Date.now() - started < FILL_MS) {
        // A test cut short may unmount the pool under a fill still running:
        // never go on into the filesystem below it.
        if ((await stat(dir)).dev !== dev) {
          throw new Error(`${dir} is no longer the filesystem being filled`);
        }
        try {
          await run("fallocate", ["-o", String(size), "-l", String(chunk), path]);
          size += chunk;
          chunk = Math.min(chunk, await freeBytes(dir));
        } catch {
          chunk = Math.floor(chunk / 2);
        }
      }
      await run("sync", ["-f", dir]);
      if ((await freeBytes(dir)) < SETTLED) break;
    }
    return { freeBytes: await freeBytes(dir), remove };
  } catch (err) {
    await remove();
    throw err;
  }
}
