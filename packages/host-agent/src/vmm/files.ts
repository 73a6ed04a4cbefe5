import { constants } from "node:fs";
import { copyFile, rename, rm } from "node:fs/promises";
import { runCommand } from "@wrenn/shared/command.ts";

/**
 * Copies a (large, mostly sparse) memory file: a reflink where the
 * filesystem offers one (btrfs, xfs: a single ioctl, no process spawned),
 * else a sparse copy by `cp`. Written to a temporary name first so a crash
 * never leaves half a file.
 */
export async function copySparse(src: string, dst: string): Promise<void> {
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
      await runCommand("cp", ["--sparse=always", "--", src, tmp]);
    }
    await rename(tmp, dst);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Single-quotes a path for /bin/sh (QEMU runs `exec:` migration URIs through it). */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** QEMU option values separate keys with commas; a literal comma is doubled. */
export function qemuOpt(s: string): string {
  return s.replaceAll(",", ",,");
}
