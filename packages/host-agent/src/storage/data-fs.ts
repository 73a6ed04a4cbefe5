/**
 * The data directory's filesystem. Pausing, resuming and cloning copy guest
 * RAM files and disks: on xfs (reflink=1) or btrfs a copy is a reflink (a few
 * ms, no space), elsewhere a real copy (≈0.1 s per 64 MiB here, and a clone
 * must stream its whole RAM on every pause). A host whose data dir sits on
 * ext4 gets a sparse xfs image beside it, loop-mounted on it — LXD does the
 * same for its default storage pool.
 */
import { mkdir, readdir, rm, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import { exists } from "../util/fs.ts";
import { reflinkSupported } from "./select.ts";

const GIB = 1024 ** 3;
/** Below this much free space a pool is not worth making. */
const MIN_POOL = 4 * GIB;

export interface DataFsOptions {
  runner?: Runner;
  log: Logger;
}

/** The sparse xfs image that backs `dataDir` when its own filesystem has no reflinks. */
export function poolImage(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}.xfs`;
}

/**
 * Undoes what prepareDataDir did when it answered "pool-created" (tests and
 * benchmarks that made a pool for a throw-away data dir): unmounts the pool
 * and deletes its image. Anything else it answered is left alone.
 */
export async function removeDataFs(
  dataDir: string,
  prepared: DataFsResult,
  runner: Runner = runCommand,
): Promise<void> {
  if (prepared !== "pool-created") return;
  await runner("umount", [dataDir]);
  await rm(poolImage(dataDir), { force: true });
}

async function isMountpoint(dir: string): Promise<boolean> {
  try {
    const [own, parent] = await Promise.all([stat(dir), stat(dirname(dir))]);
    return own.dev !== parent.dev;
  } catch {
    return false;
  }
}

/**
 * Mounts the data dir's pool image if it has one and it is not mounted yet
 * (after a reboot). Returns whether the pool is mounted now.
 */
export async function mountDataFs(dataDir: string, opts: DataFsOptions): Promise<boolean> {
  const image = poolImage(dataDir);
  if (!(await exists(image))) return false;
  if (await isMountpoint(dataDir)) return true;
  await mkdir(dataDir, { recursive: true });
  if ((await readdir(dataDir)).length > 0) {
    throw new WrennError(
      "failed_precondition",
      `${dataDir} is not empty, so its pool ${image} cannot be mounted on it; move its files into the pool or remove ${image}`,
    );
  }
  // discard: space freed in the pool goes back to the host's filesystem.
  await (opts.runner ?? runCommand)("mount", ["-o", "loop,discard", image, dataDir]);
  opts.log.info({ dataDir, image }, "mounted the data dir's xfs pool");
  return true;
}

export type DataFsResult = "reflink" | "pool-created" | "pool-mounted" | "plain";

/**
 * Makes `dataDir` reflink-capable where that costs no one anything: mounts
 * an existing pool; leaves a reflink-capable filesystem alone; on one
 * without reflinks creates a pool only while the data dir is new or empty
 * (existing files are never moved behind the user's back). Returns what it
 * found or did; "plain" means copies stay real copies (logged with the fix).
 */
export async function prepareDataDir(dataDir: string, opts: DataFsOptions): Promise<DataFsResult> {
  const run = opts.runner ?? runCommand;
  if (await mountDataFs(dataDir, opts)) return "pool-mounted";
  await mkdir(dataDir, { recursive: true });
  if (await reflinkSupported(dataDir)) return "reflink";
  const hint = `put it on xfs (mkfs.xfs -m reflink=1) or btrfs, or empty it and run 'wrenn setup' to get a pool image at ${poolImage(dataDir)}`;
  if ((await readdir(dataDir)).length > 0) {
    opts.log.warn(
      { dataDir },
      `${dataDir} has no reflinks and is not empty: RAM files and disks are copied for real; ${hint}`,
    );
    return "plain";
  }
  const fs = await statfs(dirname(dataDir));
  const size = Math.floor((fs.bavail * fs.bsize * 0.9) / GIB) * GIB;
  if (size < MIN_POOL) {
    opts.log.warn(
      { dataDir, freeBytes: fs.bavail * fs.bsize },
      `too little free space for a pool; ${hint}`,
    );
    return "plain";
  }
  const image = poolImage(dataDir);
  try {
    await run("truncate", ["-s", String(size), image]);
    await run("mkfs.xfs", ["-q", "-m", "reflink=1", image]);
    await mountDataFs(dataDir, opts);
  } catch (err) {
    // An image left behind would be mounted (and fail) on every start.
    await rm(image, { force: true });
    throw new WrennError("internal", `could not create the data pool ${image}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  opts.log.info(
    { dataDir, image, sizeGiB: size / GIB },
    "created a sparse xfs pool for the data dir (reflink copies)",
  );
  return "pool-created";
}
