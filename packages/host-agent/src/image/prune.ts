import { readdir, readFile, realpath, rm } from "node:fs/promises";
import { join, sep } from "node:path";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import type { SandboxRecord } from "../sandbox/records.ts";
import { allocated, type SnapshotMeta } from "../sandbox/templates.ts";
import { CLAIM_DIR } from "../network/claim.ts";
import { allocatedBytes } from "../storage/image.ts";
import { isAlive } from "../util/process.ts";
import { findKernel, templateDir } from "./store.ts";

/** Something an image rebuild left behind. */
export interface Leftover {
  path: string;
  what: string;
  bytes: number;
  /** Sandboxes whose disk or memory still needs it: it stays. */
  usedBy: string[];
}

const ROOTFS_VERSION = /^rootfs-[0-9a-f]+\.ext4$/;

async function realOrSame(path: string): Promise<string> {
  return realpath(path).catch(() => path);
}

async function dirNames(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/**
 * What the sandboxes recorded in `dataDirs` need from the image dir: the
 * image their disk overlays (`basePath`) and the boot snapshot they were
 * restored from (a Firecracker pause diffs against its memory).
 */
async function users(imageDir: string, dataDirs: string[]): Promise<Map<string, string[]>> {
  const used = new Map<string, string[]>();
  const add = (path: string, id: string) => used.set(path, [...(used.get(path) ?? []), id]);
  for (const data of dataDirs) {
    const dir = join(data, "sandboxes");
    for (const id of await dirNames(dir)) {
      let record: SandboxRecord;
      try {
        record = JSON.parse(await readFile(join(dir, id, "record.json"), "utf8")) as SandboxRecord;
      } catch {
        continue;
      }
      if (record.basePath) add(await realOrSame(record.basePath), record.id);
      if (record.bootSnapshot) {
        add(await realOrSame(join(imageDir, "boot-snapshots", record.bootSnapshot)), record.id);
      }
    }
  }
  return used;
}

/**
 * Base image versions no template points at any more, and boot snapshots of
 * an image or kernel that is no longer the current one (or that do not say
 * what they were made from). Each comes with the sandboxes, in `dataDirs`,
 * that still use it.
 */
export async function findLeftovers(imageDir: string, dataDirs: string[]): Promise<Leftover[]> {
  const used = await users(imageDir, dataDirs);
  const usedBy = (path: string): string[] => {
    const ids = new Set<string>();
    for (const [p, who] of used) {
      if (p === path || p.startsWith(path + sep)) for (const id of who) ids.add(id);
    }
    return [...ids].sort();
  };
  const out: Leftover[] = [];
  const currentRootfs = new Map<string, string>();
  for (const template of await dirNames(join(imageDir, "images"))) {
    const dir = templateDir(imageDir, template);
    const current = await realpath(join(dir, "rootfs.ext4")).catch(() => null);
    if (current) currentRootfs.set(template, current);
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
  const kernel = await findKernel(imageDir).then(
    async (k) => new Set([await realOrSame(k.qemuKernel), await realOrSame(k.vmlinux)]),
    () => new Set<string>(),
  );
  const snapshots = join(imageDir, "boot-snapshots");
  for (const name of await dirNames(snapshots)) {
    if (name.startsWith(".")) continue; // builds in progress: the agent's
    const path = await realOrSame(join(snapshots, name));
    let meta: SnapshotMeta | null = null;
    try {
      meta = JSON.parse(await readFile(join(path, "meta.json"), "utf8")) as SnapshotMeta;
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
      bytes: await allocated(path),
      usedBy: usedBy(path),
    });
  }
  return out;
}

/** Host agents running on this machine (each holds its network prefix's claim). */
export async function liveAgents(claimDir = CLAIM_DIR): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await dirNames(claimDir)) {
    if (!/^network-.+\.pid$/.test(name)) continue;
    const pid = Number((await readFile(join(claimDir, name), "utf8").catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && (await isAlive(pid))) pids.push(pid);
  }
  return pids;
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
