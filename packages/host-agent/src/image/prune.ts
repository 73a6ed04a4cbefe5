import { readdir, readFile, realpath, rm } from "node:fs/promises";
import { join, sep } from "node:path";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import { allocatedBytes, allocatedUnder } from "../util/fs.ts";
import { bootSnapshotsDir, findKernel, templateDir } from "./store.ts";

/** Something an image rebuild left behind. */
export interface Leftover {
  path: string;
  what: string;
  bytes: number;
  /** Sandboxes whose disk or memory still needs it: it stays. */
  usedBy: string[];
}

/** A file or directory of the image store that a sandbox still needs. */
export interface PathInUse {
  path: string;
  sandboxId: string;
}

/** What prune reads of a boot snapshot's meta.json (written by the agent's template store). */
interface BootSnapshotMeta {
  baseTemplate?: string;
  source?: { rootfs: string; kernel: string };
}

const ROOTFS_VERSION = /^rootfs-[0-9a-f]+\.ext4$/;

async function realOrSame(path: string): Promise<string> {
  return realpath(path).catch(() => path);
}

async function dirNames(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** The real path of each path in use, with the sandboxes that use it. */
async function users(inUse: readonly PathInUse[]): Promise<Map<string, string[]>> {
  const used = new Map<string, string[]>();
  for (const { path, sandboxId } of inUse) {
    const real = await realOrSame(path);
    used.set(real, [...(used.get(real) ?? []), sandboxId]);
  }
  return used;
}

/** Who uses a path: the sandboxes using it or anything under it. */
function usedByOf(used: Map<string, string[]>): (path: string) => string[] {
  return (path) => {
    const ids = new Set<string>();
    for (const [p, who] of used) {
      if (p === path || p.startsWith(path + sep)) for (const id of who) ids.add(id);
    }
    return [...ids].sort();
  };
}

/**
 * Base image versions no template points at any more, and boot snapshots of
 * an image or kernel that is no longer the current one (or that do not say
 * what they were made from). Each comes with the sandboxes that still use
 * it, as `inUse` (the caller's reading of sandbox records) says.
 */
export async function findLeftovers(
  imageDir: string,
  inUse: readonly PathInUse[],
): Promise<Leftover[]> {
  const usedBy = usedByOf(await users(inUse));
  const out: Leftover[] = [];
  const currentRootfs = await currentImages(imageDir);
  for (const template of await dirNames(join(imageDir, "images"))) {
    const dir = templateDir(imageDir, template);
    const current = currentRootfs.get(template);
    for (const file of await dirNames(dir)) {
      const path = join(dir, file);
      if (!ROOTFS_VERSION.test(file) || path === current) continue;
      out.push({
        path,
        what: `an old image of template '${template}'`,
        bytes: await allocatedBytes(path),
        usedBy: usedBy(path),
      });
    }
  }
  out.push(...(await staleIn(bootSnapshotsDir(imageDir), imageDir, currentRootfs, usedBy)));
  return out;
}

/** The current image of each template: `images/<template>/rootfs.ext4`, resolved. */
async function currentImages(imageDir: string): Promise<Map<string, string>> {
  const current = new Map<string, string>();
  for (const template of await dirNames(join(imageDir, "images"))) {
    const path = await realpath(join(templateDir(imageDir, template), "rootfs.ext4")).catch(
      () => null,
    );
    if (path) current.set(template, path);
  }
  return current;
}

/**
 * Boot snapshots under `dir` (the image dir's own, or another agent's such
 * as the tests') of an image or kernel of `imageDir` that is no longer the
 * current one, or that do not say what they were made from.
 */
export async function staleBootSnapshots(
  dir: string,
  imageDir: string,
  inUse: readonly PathInUse[] = [],
): Promise<Leftover[]> {
  return staleIn(dir, imageDir, await currentImages(imageDir), usedByOf(await users(inUse)));
}

async function staleIn(
  snapshots: string,
  imageDir: string,
  currentRootfs: Map<string, string>,
  usedBy: (path: string) => string[],
): Promise<Leftover[]> {
  const out: Leftover[] = [];
  const kernel = await findKernel(imageDir).then(
    async (k) => new Set([await realOrSame(k.qemuKernel), await realOrSame(k.vmlinux)]),
    () => new Set<string>(),
  );
  for (const name of await dirNames(snapshots)) {
    if (name.startsWith(".")) continue; // builds in progress: the agent's
    const path = await realOrSame(join(snapshots, name));
    let meta: BootSnapshotMeta | null = null;
    try {
      meta = JSON.parse(await readFile(join(path, "meta.json"), "utf8")) as BootSnapshotMeta;
    } catch {
      // Unreadable: as stale as one without a source.
    }
    const source = meta?.source;
    const current =
      source !== undefined &&
      currentRootfs.get(meta?.baseTemplate ?? "") === source.rootfs &&
      kernel.has(source.kernel);
    if (current) continue;
    out.push({
      path,
      what: source
        ? "a boot snapshot of an old image or kernel"
        : "a boot snapshot of unknown origin",
      bytes: await allocatedUnder(path),
      usedBy: usedBy(path),
    });
  }
  return out;
}

/** Removes the leftovers no sandbox uses; returns the bytes freed. */
export async function removeUnused(leftovers: Leftover[]): Promise<number> {
  let freed = 0;
  for (const l of leftovers) {
    if (l.usedBy.length > 0) continue;
    try {
      await rm(l.path, { recursive: true, force: true });
      freed += l.bytes;
    } catch (err) {
      throw new WrennError("internal", `cannot remove ${l.path}: ${messageOf(err)}`, {
        cause: err,
      });
    }
  }
  return freed;
}
