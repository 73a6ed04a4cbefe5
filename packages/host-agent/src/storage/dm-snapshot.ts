/**
 * Production rootfs storage (Firecracker): each base image on one shared
 * read-only loop device, each sandbox a sparse CoW file on its own loop
 * device, joined by a persistent dm-snapshot with 4 KiB chunks:
 *   dmsetup create wrenn-<id> --table "0 <sectors> snapshot <origin> <cow> P 8"
 * A dm-snapshot is exactly as large as its origin, so base images are grown
 * to the default disk size at agent start (growBase); the CoW file, sized by
 * disk_size_mb, bounds how much a sandbox can write.
 */
import { mkdir, open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { checkSignal, Undo } from "./cleanup.ts";
import { DeviceMapper, type RetryPolicy } from "./dmsetup.ts";
import { allocatedBytes, copySparse, exists } from "../util/fs.ts";
import { growImage, MIB, moveFile, shrinkImage } from "./image.ts";
import {
  checkKept,
  attachedState,
  detachedDisk,
  dropKept,
  isDetached,
  readKeepMeta,
  writeKeepMeta,
} from "./keep.ts";
import { attachLoop, detachLoop, LoopRegistry, loopsOf } from "./loop-registry.ts";
import type {
  BaseImage,
  SandboxDisk,
  StorageDriver,
  FlattenOptions,
  StorageOptions,
} from "./storage.ts";

export const COW_FILE = "rootfs.cow";
const CHUNK_BYTES = 4096;
const SECTOR = 512;
const SANDBOX_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

function since(start: number): number {
  return Math.round((performance.now() - start) * 10) / 10;
}

export function dmName(sandboxId: string): string {
  return `wrenn-${sandboxId}`;
}

export function snapshotTable(sectors: number, origin: string, cow: string): string {
  return `0 ${sectors} snapshot ${origin} ${cow} P 8`;
}

/**
 * Room for `sizeMb` of written chunks plus the persistent store's header
 * chunk and one metadata chunk per 256 exceptions (16 bytes each) — so a
 * sandbox can really write its whole disk size before the snapshot fills up.
 */
export function cowBytes(sizeMb: number): number {
  const chunks = Math.ceil((sizeMb * MIB) / CHUNK_BYTES);
  return (1 + chunks + Math.ceil(chunks / 256)) * CHUNK_BYTES;
}

export interface DmSnapshotOptions {
  runner?: Runner;
  log?: Logger;
  /** Backoff for `dmsetup remove` while the device is busy. */
  removeRetry?: RetryPolicy;
}

export class DmSnapshotStorage implements StorageDriver {
  readonly name = "dm-snapshot" as const;
  readonly loops: LoopRegistry;
  private readonly dm: DeviceMapper;
  private readonly runner: Runner;
  private readonly log: Logger;
  /** Sandbox id → base image it holds a loop reference on; makes release idempotent. */
  private readonly holders = new Map<string, string>();

  constructor(options: DmSnapshotOptions = {}) {
    this.runner = options.runner ?? runCommand;
    this.log = (options.log ?? createLogger("host-agent")).child({ storage: "dm-snapshot" });
    this.loops = new LoopRegistry(this.runner, this.log);
    this.dm = new DeviceMapper(this.runner, this.log, options.removeRetry);
  }

  async growBase(base: BaseImage, sizeMb: number): Promise<void> {
    if (this.loops.refs(base.path) > 0) {
      throw new WrennError(
        "failed_precondition",
        `base image '${base.name}' is in use by ${this.loops.refs(base.path)} sandbox disk(s); grow it before creating any`,
      );
    }
    await growImage(this.runner, this.log, base.path, sizeMb);
  }

  async create(
    sandboxId: string,
    base: BaseImage,
    sizeMb: number,
    dir: string,
    options: StorageOptions = {},
  ): Promise<SandboxDisk> {
    if (!SANDBOX_ID.test(sandboxId)) {
      throw new WrennError("invalid_argument", `sandbox id '${sandboxId}' cannot name a dm device`);
    }
    const { signal } = options;
    const name = dmName(sandboxId);
    const cowPath = join(dir, COW_FILE);
    checkSignal(signal, `create disk ${name}`);
    const start = performance.now();
    await this.clearStale(name, cowPath, signal);
    await rm(cowPath, { force: true });

    const undo = new Undo(this.log);
    try {
      const origin = await this.takeBase(sandboxId, base.path);
      undo.push(`base loop reference on ${base.path}`, () => this.dropBase(sandboxId));
      const sectors = await this.sectorsOf(origin);
      if (sizeMb * (MIB / SECTOR) > sectors) {
        throw new WrennError(
          "failed_precondition",
          `disk_size_mb ${sizeMb} is larger than base image '${base.name}' (${Math.floor((sectors * SECTOR) / MIB)} MiB); ` +
            `a dm-snapshot disk is as large as its base — raise the agent's default disk size so it grows base images at start`,
        );
      }
      await mkdir(dir, { recursive: true });
      const fh = await open(cowPath, "wx");
      undo.push(`CoW file ${cowPath}`, () => rm(cowPath, { force: true }));
      try {
        await fh.truncate(cowBytes(sizeMb));
      } finally {
        await fh.close();
      }
      const cowLoop = await attachLoop(this.runner, cowPath, false);
      undo.push(`CoW loop ${cowLoop}`, () => detachLoop(this.runner, cowLoop));
      await this.dm.create(name, snapshotTable(sectors, origin, cowLoop));
      undo.push(`dm device ${name}`, () => this.dm.remove(name));
      checkSignal(signal, `create disk ${name}`);
      this.log.info(
        { sandboxId, device: name, origin, cowLoop, sectors, ms: since(start) },
        "created dm-snapshot disk",
      );
      return {
        sandboxId,
        path: DeviceMapper.devicePath(name),
        format: "raw",
        state: {
          dmName: name,
          dir,
          cowPath,
          cowLoop,
          baseLoop: origin,
          baseName: base.name,
          basePath: base.path,
          sectors: String(sectors),
          sizeMb: String(sizeMb),
        },
      };
    } catch (err) {
      return undo.fail(err);
    }
  }

  async destroy(disk: SandboxDisk, options: StorageOptions = {}): Promise<void> {
    const s = disk.state;
    const name = dmName(disk.sandboxId);
    await dropKept(disk);
    await this.release(name, disk.sandboxId, s.cowPath ?? "", options.signal);
    await rm(s.cowPath ?? "", { force: true });
  }

  dropKept(disk: SandboxDisk): Promise<void> {
    return dropKept(disk);
  }

  async detach(
    disk: SandboxDisk,
    keepDir: string,
    options: StorageOptions = {},
  ): Promise<SandboxDisk> {
    if (isDetached(disk)) return disk;
    const s = disk.state;
    const cowPath = s.cowPath ?? "";
    const start = performance.now();
    // A removal that fails is a hard error: the device still uses the loops,
    // so they (and the base reference) stay until a later destroy succeeds.
    await this.release(dmName(disk.sandboxId), disk.sandboxId, cowPath, options.signal);
    const kept = join(keepDir, COW_FILE);
    await mkdir(keepDir, { recursive: true });
    await moveFile(this.runner, cowPath, kept);
    try {
      await writeKeepMeta(keepDir, {
        driver: this.name,
        sandboxId: disk.sandboxId,
        baseName: s.baseName ?? "",
        basePath: s.basePath ?? "",
        sizeMb: Number(s.sizeMb),
        file: COW_FILE,
        keptAt: new Date().toISOString(),
      });
    } catch (err) {
      // Put the CoW back so the disk stays whole for destroy or another try.
      await moveFile(this.runner, kept, cowPath).catch((e: unknown) =>
        this.log.error({ err: e, kept }, "could not move the CoW file back"),
      );
      throw err;
    }
    this.log.info(
      { sandboxId: disk.sandboxId, kept, ms: since(start) },
      "detached dm-snapshot disk",
    );
    return detachedDisk(disk, keepDir, kept, { cowLoop: "", baseLoop: "" });
  }

  async attach(
    disk: SandboxDisk,
    base: BaseImage,
    options: StorageOptions = {},
  ): Promise<SandboxDisk> {
    await checkKept(this.name, disk, base);
    const { signal } = options;
    const s = disk.state;
    const name = dmName(disk.sandboxId);
    const kept = s.keptPath ?? "";
    const cowPath = s.cowPath ?? join(s.dir ?? "", COW_FILE);
    checkSignal(signal, `attach disk ${name}`);
    const start = performance.now();
    await this.clearStale(name, cowPath, signal);

    const undo = new Undo(this.log);
    try {
      await mkdir(s.dir ?? "", { recursive: true });
      // A copy: the kept CoW stays as paused until the resume commits.
      await copySparse(kept, cowPath, this.runner);
      undo.push(`CoW copy ${cowPath}`, () => rm(cowPath, { force: true }));
      const origin = await this.takeBase(disk.sandboxId, base.path);
      undo.push(`base loop reference on ${base.path}`, () => this.dropBase(disk.sandboxId));
      const originSectors = await this.sectorsOf(origin);
      // The guest (and its memory snapshot) saw this size; keep it.
      const sectors = Number(s.sectors ?? originSectors);
      if (sectors > originSectors) {
        throw new WrennError(
          "failed_precondition",
          `base image '${base.name}' is smaller than when sandbox ${disk.sandboxId} was paused; its disk cannot be restored`,
        );
      }
      const cowLoop = await attachLoop(this.runner, cowPath, false);
      undo.push(`CoW loop ${cowLoop}`, () => detachLoop(this.runner, cowLoop));
      await this.dm.create(name, snapshotTable(sectors, origin, cowLoop));
      undo.push(`dm device ${name}`, () => this.dm.remove(name));
      checkSignal(signal, `attach disk ${name}`);
      this.log.info(
        { sandboxId: disk.sandboxId, device: name, origin, cowLoop, ms: since(start) },
        "attached dm-snapshot disk",
      );
      return {
        sandboxId: disk.sandboxId,
        path: DeviceMapper.devicePath(name),
        format: "raw",
        state: attachedState(disk, {
          cowPath,
          cowLoop,
          baseLoop: origin,
          basePath: base.path,
          sectors: String(sectors),
        }),
      };
    } catch (err) {
      return undo.fail(err);
    }
  }

  async flatten(disk: SandboxDisk, outPath: string, options: FlattenOptions = {}): Promise<void> {
    const { signal } = options;
    const s = disk.state;
    const partial = `${outPath}.partial`;
    const start = performance.now();
    const temp = new Undo(this.log);
    try {
      let source = disk.path;
      if (isDetached(disk)) {
        // A paused disk has no device: assemble a temporary one from the kept CoW.
        const meta = await readKeepMeta(s.keepDir ?? "");
        const name = `wrenn-flatten-${disk.sandboxId}`;
        await this.dm.removeIfPresent(name, signal);
        const origin = await this.loops.acquire(meta.basePath);
        temp.push(`base loop reference on ${meta.basePath}`, () =>
          this.loops.release(meta.basePath),
        );
        const sectors = Number(s.sectors ?? (await this.sectorsOf(origin)));
        const cowLoop = await attachLoop(this.runner, s.keptPath ?? "", false);
        temp.push(`CoW loop ${cowLoop}`, () => detachLoop(this.runner, cowLoop));
        await this.dm.create(name, snapshotTable(sectors, origin, cowLoop));
        temp.push(`dm device ${name}`, () => this.dm.remove(name));
        source = DeviceMapper.devicePath(name);
      }
      checkSignal(signal, `flatten ${disk.sandboxId}`);
      await rm(partial, { force: true });
      temp.push(`partial image ${partial}`, () => rm(partial, { force: true }));
      await this.runner("cp", ["--sparse=always", source, partial]);
      checkSignal(signal, `flatten ${disk.sandboxId}`);
      if (options.shrink ?? true) await shrinkImage(this.runner, partial);
      await rename(partial, outPath);
    } catch (err) {
      return temp.fail(err);
    }
    await temp.run(`flatten ${disk.sandboxId}`);
    this.log.info({ sandboxId: disk.sandboxId, outPath, ms: since(start) }, "flattened disk");
  }

  usage(disk: SandboxDisk): Promise<number> {
    return allocatedBytes(
      isDetached(disk) ? (disk.state.keptPath ?? "") : (disk.state.cowPath ?? ""),
    );
  }

  async adopt(disk: SandboxDisk): Promise<boolean> {
    const s = disk.state;
    if (isDetached(disk)) return exists(s.keptPath ?? "");
    if (!(await this.dm.exists(dmName(disk.sandboxId)))) return false;
    if (!this.holders.has(disk.sandboxId)) {
      this.loops.adopt(s.basePath ?? "", s.baseLoop ?? "");
      this.holders.set(disk.sandboxId, s.basePath ?? "");
    }
    return true;
  }

  /** Removes the dm device, then the CoW loop, then the base reference — in that order only. */
  private async release(
    name: string,
    sandboxId: string,
    cowPath: string,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.dm.removeIfPresent(name, signal);
    // From here on this is cleanup: it runs to the end whatever the signal says.
    if (await exists(cowPath)) {
      for (const loop of await loopsOf(this.runner, cowPath)) await detachLoop(this.runner, loop);
    }
    await this.dropBase(sandboxId);
  }

  /** A device or CoW loop of the same name left by a crash would collide with ours. */
  private async clearStale(name: string, cowPath: string, signal?: AbortSignal): Promise<void> {
    if (await this.dm.removeIfPresent(name, signal)) {
      this.log.warn({ device: name }, "removed stale dm device");
    }
    if (await exists(cowPath)) {
      for (const loop of await loopsOf(this.runner, cowPath)) {
        await detachLoop(this.runner, loop);
        this.log.warn({ loop, cowPath }, "detached stale CoW loop device");
      }
    }
  }

  private async takeBase(sandboxId: string, image: string): Promise<string> {
    if (this.holders.has(sandboxId)) {
      throw new WrennError("internal", `sandbox ${sandboxId} already holds a base loop reference`);
    }
    const device = await this.loops.acquire(image);
    this.holders.set(sandboxId, image);
    return device;
  }

  private async dropBase(sandboxId: string): Promise<void> {
    const image = this.holders.get(sandboxId);
    if (image === undefined) return;
    this.holders.delete(sandboxId);
    await this.loops.release(image);
  }

  private async sectorsOf(device: string): Promise<number> {
    const { stdout } = await this.runner("blockdev", ["--getsz", device]);
    const sectors = Number(stdout.trim());
    if (!Number.isSafeInteger(sectors) || sectors <= 0) {
      throw new WrennError("internal", `blockdev --getsz ${device} printed '${stdout.trim()}'`);
    }
    return sectors;
  }
}
