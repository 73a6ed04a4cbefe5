import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { fsyncDir, writeFileDurable } from "../util/fs.ts";
import { join } from "node:path";
import type { SandboxDisk } from "../storage/storage.ts";
import type { VmRecord, VmmName } from "../vmm/vmm.ts";
import type { EgressRules } from "../network/egress.ts";
import type { PathInUse } from "../image/prune.ts";

export type SandboxStatus = "starting" | "running" | "paused" | "failed";

/**
 * What the agent keeps on disk for each sandbox, rewritten after every step
 * that acquires or releases a host resource: a restarted agent reads these to
 * re-adopt live VMs or to tear down what a crash left half-built.
 */
export interface SandboxRecord {
  id: string;
  template: string;
  vcpus: number;
  memoryMb: number;
  diskSizeMb: number;
  timeoutSec: number;
  createdAtMs: number;
  lastActiveAtMs: number;
  status: SandboxStatus;
  vmm: VmmName;
  slotIndex: number | null;
  disk: SandboxDisk | null;
  vm: VmRecord | null;
  envVars: Record<string, string>;
  envdAccessToken: string;
  /** Egress rules as given (names unresolved); applied to every slot the sandbox gets. */
  network?: EgressRules;
  /** The read-only image the disk overlays (a base template's or a snapshot template's). */
  basePath: string;
  /** The snapshot template this sandbox was restored from, if any. */
  fromSnapshot: string | null;
  /** The boot snapshot of its base template this sandbox was restored from, if any. */
  bootSnapshot?: string | null;
  error?: string;
  /**
   * The name its host resources were made under (record and run
   * directories, disk, VM, cgroup) when that is not its id: a sandbox taken
   * from the warm pool keeps the pool entry's name.
   */
  home?: string;
  /**
   * A pause or resume under way, for the agent after a crash: what it must
   * finish or undo so that no saved memory or disk is lost (see recovery.ts).
   */
  op?:
    | { kind: "pause"; memorySaved: boolean }
    /** `kept`: the paused disk, whole in the pause folder while `disk` is its working copy. */
    | { kind: "resume"; kept?: SandboxDisk };
}

/** The name a sandbox's host resources live under. */
export function homeOf(record: SandboxRecord): string {
  return record.home ?? record.id;
}

export class RecordStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The directory of a sandbox's record, disk and kept memory, by its home (see homeOf). */
  sandboxDir(home: string): string {
    return join(this.dir, home);
  }

  /** Durable and atomic: a crash at any point leaves the previous record or this one. */
  async save(record: SandboxRecord): Promise<void> {
    const dir = this.sandboxDir(homeOf(record));
    await mkdir(dir, { recursive: true });
    await writeFileDurable(join(dir, "record.json"), JSON.stringify(record, null, 2));
  }

  /**
   * A sandbox directory whose record cannot be read: moved aside under
   * `.unreadable-<id>-<time>` (never deleted: it may hold a user's disk and
   * memory), and the new path returned for the report.
   */
  async quarantine(home: string): Promise<string> {
    const aside = join(this.dir, `.unreadable-${home}-${Date.now()}`);
    await rename(this.sandboxDir(home), aside);
    await fsyncDir(this.dir);
    return aside;
  }

  async remove(record: SandboxRecord): Promise<void> {
    await rm(this.sandboxDir(homeOf(record)), { recursive: true, force: true });
  }

  async loadAll(): Promise<{ records: SandboxRecord[]; unreadable: string[] }> {
    await mkdir(this.dir, { recursive: true });
    const records: SandboxRecord[] = [];
    const unreadable: string[] = [];
    for (const id of await readdir(this.dir)) {
      if (id.startsWith(".")) continue; // set aside by quarantine()
      try {
        const text = await readFile(join(this.dir, id, "record.json"), "utf8");
        records.push(upgrade(JSON.parse(text) as SandboxRecord & { pageServer?: unknown }));
      } catch {
        unreadable.push(id);
      }
    }
    return { records, unreadable };
  }
}

/**
 * What the sandboxes recorded in `dataDirs` need from the image store: the
 * image their disk overlays (`basePath`) and the boot snapshot (in
 * `bootSnapshotDir`) they were restored from (a Firecracker pause diffs
 * against its memory). Unreadable records are skipped.
 */
export async function imagePathsInUse(
  dataDirs: string[],
  bootSnapshotDir: string,
): Promise<PathInUse[]> {
  const out: PathInUse[] = [];
  for (const data of dataDirs) {
    const dir = join(data, "sandboxes");
    for (const id of await readdir(dir).catch(() => [])) {
      let record: SandboxRecord;
      try {
        record = JSON.parse(await readFile(join(dir, id, "record.json"), "utf8")) as SandboxRecord;
      } catch {
        continue;
      }
      if (record.basePath) out.push({ path: record.basePath, sandboxId: record.id });
      if (record.bootSnapshot) {
        out.push({ path: join(bootSnapshotDir, record.bootSnapshot), sandboxId: record.id });
      }
    }
  }
  return out;
}

/** Records written before the VM driver kept its page server in `vm.driver`. */
function upgrade(record: SandboxRecord & { pageServer?: unknown }): SandboxRecord {
  const { pageServer, ...rest } = record;
  if (pageServer && rest.vm && !rest.vm.driver) rest.vm = { ...rest.vm, driver: { pageServer } };
  return rest;
}
