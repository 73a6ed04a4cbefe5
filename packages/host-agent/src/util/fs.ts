/** File helpers every layer of the host agent uses. */
import { constants } from "node:fs";
import { copyFile, open, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";

/** Whether `path` exists (following links); an unreadable path counts as absent. */
export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Copies a (large, mostly sparse) file: a reflink where the filesystem
 * offers one (btrfs, xfs: a single ioctl, no process spawned), else a sparse
 * copy by `cp` through `runner`. Written to a temporary name first so a
 * crash never leaves half a file.
 */
export async function copySparse(
  src: string,
  dst: string,
  runner: Runner = runCommand,
): Promise<void> {
  const tmp = `${dst}.partial`;
  try {
    try {
      await copyFile(src, tmp, constants.COPYFILE_FICLONE_FORCE);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV" && code !== "EINVAL") {
        throw err;
      }
      await rm(tmp, { force: true });
      await runner("cp", ["--sparse=always", "--", src, tmp]);
    }
    await rename(tmp, dst);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Replaces `path` with `data` so that a crash at any moment leaves either
 * the old content or the new, never a mix or nothing: a temporary file,
 * fsync'd, renamed over it, and the directory fsync'd so the rename lasts.
 */
export async function writeFileDurable(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

/** Makes the entries of `dir` (creations, renames, removals) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
