import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { allocatedUnder, exists, fsyncDir, writeFileDurable } from "../util/fs.ts";
import { isAlive } from "../util/process.ts";
import type { VmmName } from "../vmm/vmm.ts";

/** Same rule as the REST API's names: they become directory names here. */
export const SNAPSHOT_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

/** What a snapshot template restores: the machine it was taken from. */
export interface SnapshotMeta {
  name: string;
  vmm: VmmName;
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
  /** The base template the source sandbox was made from, ultimately. */
  baseTemplate: string;
  sourceSandbox: string;
  /** The token the saved envd holds: a clone's /init must present it (host-private). */
  envdAccessToken: string;
  createdAtMs: number;
  /** A boot snapshot's image and kernel (by their real paths): `wrenn image prune` tells a stale one by them. */
  source?: BootSource;
}

export interface BootSource {
  rootfs: string;
  kernel: string;
}

/**
 * Snapshot templates on disk: `<dir>/<name>/` holds `rootfs.ext4` (the
 * flattened disk), `state` (VMM device state), the memory (`memfile` raw for
 * QEMU, or `memfile.header` + `memfile.<buildId>` generations) and
 * `meta.json`. A template is built in a hidden directory and renamed into
 * place, so a half-written one is never visible.
 */
export class TemplateStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  files(name: string) {
    const d = this.path(name);
    return {
      dir: d,
      rootfs: join(d, "rootfs.ext4"),
      state: join(d, "state"),
      memfile: join(d, "memfile"),
      meta: join(d, "meta.json"),
    };
  }

  async get(name: string): Promise<SnapshotMeta | null> {
    if (!SNAPSHOT_NAME.test(name)) return null;
    try {
      return JSON.parse(await readFile(this.files(name).meta, "utf8")) as SnapshotMeta;
    } catch {
      return null;
    }
  }

  async list(): Promise<Array<SnapshotMeta & { sizeBytes: number }>> {
    await mkdir(this.dir, { recursive: true });
    const out: Array<SnapshotMeta & { sizeBytes: number }> = [];
    for (const name of await readdir(this.dir)) {
      const meta = await this.get(name);
      if (meta) out.push({ ...meta, sizeBytes: await allocatedUnder(this.path(name)) });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * A fresh build directory for `name`; `commit` moves it into place. With
   * `keepExisting`, a template another process committed meanwhile wins and
   * this build is dropped (sandboxes may already overlay the existing one).
   */
  async begin(
    name: string,
    keepExisting = false,
  ): Promise<{ dir: string; commit: (meta: SnapshotMeta) => Promise<void> }> {
    const dir = join(this.dir, `.building-${name}-${process.pid}-${unique()}`);
    await mkdir(dir, { recursive: true });
    return {
      dir,
      commit: async (meta) => {
        // Its files reach the disk before the template is visible under its name.
        await syncTree(dir);
        await writeFileDurable(join(dir, "meta.json"), JSON.stringify(meta, null, 2));
        const target = this.path(name);
        if (keepExisting) {
          // rename(2) onto a non-empty directory fails: the first commit stays.
          await rename(dir, target).catch(async (err: NodeJS.ErrnoException) => {
            if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
            await rm(dir, { recursive: true, force: true });
          });
          await fsyncDir(this.dir);
          return;
        }
        // A crash between the two renames leaves no template under `name`
        // and the old one aside: cleanupPartial puts it back.
        const old = join(this.dir, `.old-${name}-${process.pid}-${unique()}`);
        await rename(target, old).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOENT") throw err;
        });
        await rename(dir, target);
        await fsyncDir(this.dir);
        await rm(old, { recursive: true, force: true });
      },
    };
  }

  async remove(name: string): Promise<void> {
    if ((await this.get(name)) === null) {
      throw new WrennError("not_found", `snapshot template '${name}' does not exist`);
    }
    await rm(this.path(name), { recursive: true, force: true });
  }

  /**
   * Leftovers of builds a crash interrupted. A build of another live
   * process is left alone (boot snapshots are shared by agents).
   */
  async cleanupPartial(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir)) {
      if (!name.startsWith(".building-") && !name.startsWith(".old-")) continue;
      const m = /^\.(?:building|old)-(.+)-(\d+)-\d+$/.exec(name);
      const pid = Number(m?.[2]);
      if (pid !== process.pid && Number.isInteger(pid) && pid > 0 && (await isAlive(pid))) continue;
      const template = m?.[1];
      if (name.startsWith(".old-") && template && !(await exists(this.path(template)))) {
        // An overwrite cut between its renames: the old template is still the template.
        await rename(join(this.dir, name), this.path(template));
        await fsyncDir(this.dir);
        continue;
      }
      await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }
}

let sequence = 0;
/** Digits no other build of this process has (two can start in one millisecond). */
function unique(): string {
  return `${Date.now()}${String(sequence++).padStart(4, "0")}`;
}

/** fsyncs every file under `dir` and the directories themselves. */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    if (entry.isFile()) {
      const fh = await open(path, "r");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } else if (entry.isDirectory()) await fsyncDir(path);
  }
  await fsyncDir(dir);
}
