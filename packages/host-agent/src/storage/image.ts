/**
 * Raw ext4 image helpers shared by the drivers: sparse growth, shrinking,
 * fsck, allocation-based usage and file moves.
 */
import { rename, rm, stat, truncate } from "node:fs/promises";
import type { Logger } from "@wrenn/shared/log.ts";
import { CommandError, type Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

export const MIB = 1024 * 1024;

/**
 * `e2fsck -fy`: exit 1 (errors corrected) and 2 (corrected, reboot advised —
 * meaningless for an image file) still leave a clean filesystem.
 */
export async function fsck(runner: Runner, path: string): Promise<void> {
  try {
    await runner("e2fsck", ["-fy", path]);
  } catch (err) {
    if (err instanceof CommandError && (err.exitCode === 1 || err.exitCode === 2)) return;
    throw err;
  }
}

/**
 * Grows a raw ext4 image to `sizeMb` without allocating space: a sparse
 * truncate, then e2fsck and resize2fs to fill it. Returns false when the image
 * is already large enough. A failure restores the original size.
 */
export async function growImage(
  runner: Runner,
  log: Logger,
  path: string,
  sizeMb: number,
): Promise<boolean> {
  const before = (await stat(path)).size;
  const target = sizeMb * MIB;
  if (before >= target) return false;
  const start = performance.now();
  await truncate(path, target);
  try {
    await fsck(runner, path);
    await runner("resize2fs", [path]);
  } catch (err) {
    // resize2fs only rewrites the filesystem once it succeeds, so cutting the
    // file back leaves the image as it was.
    await truncate(path, before).catch((e: unknown) =>
      log.error({ err: e, path }, "could not restore image size after a failed grow"),
    );
    throw err;
  }
  log.info(
    { path, fromBytes: before, toBytes: target, ms: Math.round(performance.now() - start) },
    "grew base image",
  );
  return true;
}

/** Block count × block size of an ext4 image, from its superblock. */
export async function ext4Bytes(runner: Runner, path: string): Promise<number> {
  const { stdout } = await runner("dumpe2fs", ["-h", path]);
  const count = /^Block count:\s+(\d+)/m.exec(stdout)?.[1];
  const size = /^Block size:\s+(\d+)/m.exec(stdout)?.[1];
  if (count === undefined || size === undefined) {
    throw new WrennError("internal", `dumpe2fs -h ${path}: no block count or size in its output`);
  }
  return Number(count) * Number(size);
}

/**
 * Makes an image as small as its contents allow: e2fsck -fy (replays the
 * journal of a disk taken from a stopped VM), resize2fs -M, then cuts the
 * file to the filesystem's new end.
 */
export async function shrinkImage(runner: Runner, path: string): Promise<void> {
  await fsck(runner, path);
  await runner("resize2fs", ["-M", path]);
  const bytes = await ext4Bytes(runner, path);
  if ((await stat(path)).size > bytes) await truncate(path, bytes);
}

/** Extends a file sparsely to at least `bytes`; never shrinks it. */
export async function extendTo(path: string, bytes: number): Promise<void> {
  if ((await stat(path)).size < bytes) await truncate(path, bytes);
}

/** Renames, or copies sparsely across filesystems. */
export async function moveFile(runner: Runner, from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    try {
      await runner("cp", ["--sparse=always", "--reflink=auto", from, to]);
    } catch (e) {
      await rm(to, { force: true });
      throw e;
    }
    await rm(from, { force: true });
  }
}
