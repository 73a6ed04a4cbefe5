/** File helpers every layer of the host agent uses. */
import { constants } from "node:fs";
import { copyFile, open, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Runner } from "@wrenn/shared/command.ts";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

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
export async function copySparse(src: string, dst: string, runner: Runner): Promise<void> {
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
 * Makes `dst`, an existing file as large as `src`, a reflink of `src`
 * without its size changing on the way. (`copySparse`'s reflink, Node's
 * `copyFile`, empties the file first and the reflink then grows it extent
 * by extent: a process that maps the file meanwhile sees it short. And
 * where the reflink fails, libuv unlinks the file: what is copied next goes
 * to a new file, not the one mapped.) Done by `xfs_io`, which clones into
 * the file it opened; throws where it cannot.
 */
export async function reflinkInPlace(src: string, dst: string, runner: Runner): Promise<void> {
  // xfs_io splits its command at blanks.
  if (/\s/.test(src)) {
    throw new WrennError("invalid_argument", `cannot reflink a path with blanks in place: ${src}`);
  }
  const r = await runner("xfs_io", ["-c", `reflink ${src}`, dst]);
  // It exits 0 when the reflink fails, saying why on stderr.
  if (r.stderr.trim() !== "" || !r.stdout.startsWith("linked ")) {
    throw new WrennError(
      "internal",
      `reflinking ${src} into ${dst} failed: ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
}

/**
 * The data ranges (`[offset, length]`) of a sparse file, from `xfs_io -c
 * "seek -a -r 0"`'s table (`DATA <offset>` and `HOLE <offset>` rows, the
 * last hole at the file's end). Ranges less than `gap` bytes apart become
 * one: reading a small hole costs less than a request of its own.
 */
export function dataRanges(seekTable: string, gap = 0): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  let start: number | undefined;
  for (const line of seekTable.split("\n")) {
    const [kind, offset] = line.trim().split(/\s+/);
    const at = Number(offset);
    if (!Number.isSafeInteger(at)) continue;
    if (kind === "DATA") {
      start = at;
    } else if (kind === "HOLE" && start !== undefined) {
      const last = ranges.at(-1);
      if (last !== undefined && start - (last[0] + last[1]) < gap) last[1] = at - last[0];
      else ranges.push([start, at - start]);
      start = undefined;
    }
  }
  return ranges;
}

/**
 * Reads `path`'s data (not its holes) into the page cache, at the lowest
 * CPU priority: it prepares for work that must not wait on it. Plain
 * reads, not `fadvise(WILLNEED)`: the kernel caps each such call at the
 * device's readahead window (2.5 MiB on this host's loop device, which
 * then read 58 of a file's 132 MiB of data).
 */
export async function readAhead(path: string, runner: Runner, signal?: AbortSignal): Promise<void> {
  // xfs_io splits its command at blanks.
  if (/\s/.test(path)) {
    throw new WrennError("invalid_argument", `cannot read ahead a path with blanks: ${path}`);
  }
  const table = await runner("xfs_io", ["-r", "-c", "seek -a -r 0", path], { signal });
  const ranges = dataRanges(table.stdout, READ_AHEAD_GAP);
  if (ranges.length === 0) return;
  const reads = ranges.flatMap(([at, length]) => ["-c", `pread -q -b ${1 << 20} ${at} ${length}`]);
  const r = await runner("nice", ["-n", "19", "xfs_io", "-r", ...reads, path], { signal });
  if (r.stderr.trim() !== "") {
    throw new WrennError("internal", `reading ${path} ahead failed: ${r.stderr.trim()}`);
  }
}

/** Holes smaller than this are read with the data around them. */
const READ_AHEAD_GAP = 256 * 1024;

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

/** Bytes the file really occupies (sparse and reflinked files report less than their size); 0 if it is gone. */
export async function allocatedBytes(path: string): Promise<number> {
  try {
    return (await stat(path)).blocks * 512;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
}

/** Bytes allocated under a directory (sparse files count what they hold). */
export async function allocatedUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).blocks * 512;
  }
  return total;
}

/** What `discard` renames a file to: a name no snapshot reader picks up (they look for `memfile*`). */
const DISCARDED = ".discard-";

/** Deletes what `discard` moved aside in `dir` and a crash kept from going. */
export async function removeDiscarded(dir: string): Promise<void> {
  const names = await readdir(dir).catch((): string[] => []);
  await Promise.all(
    names.filter((n) => n.startsWith(DISCARDED)).map((n) => rm(join(dir, n), { force: true })),
  );
}

/**
 * Removes a large file off the caller's path: renamed now (so nothing can
 * reuse the name before it goes), unlinked in the background.
 */
export async function discard(path: string, log: Logger): Promise<void> {
  const aside = join(dirname(path), `${DISCARDED}${randomBytes(4).toString("hex")}`);
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    log.warn({ path, err: messageOf(err) }, "could not move a stale memory file aside");
    return;
  }
  void rm(aside, { force: true });
}
