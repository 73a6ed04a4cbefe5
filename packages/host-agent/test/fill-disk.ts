/**
 * Fills a filesystem to 0 bytes free, for tests of a full data disk: one
 * fallocated file, grown by halving chunks until not even 4 KiB fits (xfs
 * refuses one allocation of everything `statfs` calls free: it keeps blocks
 * for the extents' metadata). Only for a filesystem the test made itself.
 * xfs gives space back late — delayed allocations reserve more than they
 * take once written back, and deleted files are freed in the background —
 * so the fill syncs the filesystem and tops up until the space stays gone.
 */
import { execFile } from "node:child_process";
import { rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const ROUNDS = 5;
/** Free space a round may leave before the fill counts as done. */
const SETTLED = 64 * 1024;

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
  try {
    let size = 0;
    for (let round = 0; round < ROUNDS; round++) {
      let chunk = await freeBytes(dir);
      while (chunk >= 4096) {
        try {
          await run("fallocate", ["-o", String(size), "-l", String(chunk), path]);
          size += chunk;
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
