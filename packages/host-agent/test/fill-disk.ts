/**
 * Fills a filesystem to 0 bytes free, for tests of a full data disk: one
 * fallocated file, grown by halving chunks until not even 4 KiB fits (xfs
 * refuses one allocation of everything `statfs` calls free: it keeps blocks
 * for the extents' metadata). Only for a filesystem the test made itself.
 */
import { execFile } from "node:child_process";
import { rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Filler {
  /** Bytes free once filled (a few KiB the filesystem keeps for itself). */
  freeBytes: number;
  /** Gives the space back. */
  remove(): Promise<void>;
}

export async function fillDisk(dir: string): Promise<Filler> {
  const path = join(dir, `disk-filler-${process.pid}`);
  const remove = () => rm(path, { force: true });
  try {
    const before = await statfs(dir);
    let chunk = before.bavail * before.bsize;
    let size = 0;
    while (chunk >= 4096) {
      try {
        await run("fallocate", ["-o", String(size), "-l", String(chunk), path]);
        size += chunk;
      } catch {
        chunk = Math.floor(chunk / 2);
      }
    }
    const after = await statfs(dir);
    return { freeBytes: after.bavail * after.bsize, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}
