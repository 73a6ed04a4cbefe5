/**
 * What the qcow2 and reflink drivers share: a sandbox disk is one file in its
 * sandbox dir, no devices; pausing moves the file to the keep dir, resuming
 * copies it back (the kept file stays until the resume commits).
 */
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "@wrenn/shared/log.ts";
import type { Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { checkSignal } from "./cleanup.ts";
import { allocatedBytes, copySparse, exists } from "../util/fs.ts";
import { growImage, moveFile, shrinkImage } from "./image.ts";
import {
  attachedState,
  checkKept,
  detachedDisk,
  dropKept,
  isDetached,
  writeKeepMeta,
} from "./keep.ts";
import type {
  BaseImage,
  SandboxDisk,
  StorageDriver,
  StorageName,
  FlattenOptions,
  StorageOptions,
} from "./storage.ts";

export abstract class FileStorage implements StorageDriver {
  abstract readonly name: StorageName;
  protected abstract readonly fileName: string;
  protected abstract readonly format: SandboxDisk["format"];
  protected readonly runner: Runner;
  protected readonly log: Logger;
  /** Base image path → sandboxes whose attached disk reads it (growBase must wait). */
  private readonly users = new Map<string, Set<string>>();

  constructor(runner: Runner, log: Logger) {
    this.runner = runner;
    this.log = log;
  }

  /** Makes the disk file at `path` over `base`; must not leave a partial file. */
  protected abstract makeDisk(
    base: BaseImage,
    sizeMb: number,
    path: string,
  ): Promise<Record<string, string>>;
  /** Writes the disk's contents as a sparse raw image to `out`. */
  protected abstract exportRaw(diskFile: string, out: string): Promise<void>;
  /** Fixes up a re-attached file whose base image moved. */
  protected async rebased(_file: string, _base: BaseImage): Promise<void> {}

  private use(basePath: string, sandboxId: string, inUse: boolean): void {
    const set = this.users.get(basePath) ?? new Set<string>();
    if (inUse) set.add(sandboxId);
    else set.delete(sandboxId);
    if (set.size > 0) this.users.set(basePath, set);
    else this.users.delete(basePath);
  }

  async growBase(base: BaseImage, sizeMb: number): Promise<void> {
    const users = this.users.get(base.path)?.size ?? 0;
    if (users > 0) {
      throw new WrennError(
        "failed_precondition",
        `base image '${base.name}' is in use by ${users} sandbox disk(s); grow it before creating any`,
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
    checkSignal(options.signal, `create disk for ${sandboxId}`);
    if (!Number.isSafeInteger(sizeMb) || sizeMb <= 0) {
      throw new WrennError(
        "invalid_argument",
        `disk_size_mb must be a positive integer, not ${sizeMb}`,
      );
    }
    const path = join(dir, this.fileName);
    await mkdir(dir, { recursive: true });
    await rm(path, { force: true });
    const start = performance.now();
    const extra = await this.makeDisk(base, sizeMb, path);
    try {
      checkSignal(options.signal, `create disk for ${sandboxId}`);
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    this.use(base.path, sandboxId, true);
    this.log.info(
      {
        sandboxId,
        path,
        base: base.name,
        sizeMb,
        ...extra,
        ms: Math.round(performance.now() - start),
      },
      `created ${this.name} disk`,
    );
    return {
      sandboxId,
      path,
      format: this.format,
      state: {
        file: path,
        dir,
        baseName: base.name,
        basePath: base.path,
        sizeMb: String(sizeMb),
        ...extra,
      },
    };
  }

  async destroy(disk: SandboxDisk): Promise<void> {
    this.use(disk.state.basePath ?? "", disk.sandboxId, false);
    await dropKept(disk);
    await rm(disk.state.file ?? "", { force: true });
  }

  dropKept(disk: SandboxDisk): Promise<void> {
    return dropKept(disk);
  }

  async detach(disk: SandboxDisk, keepDir: string): Promise<SandboxDisk> {
    if (isDetached(disk)) return disk;
    const s = disk.state;
    const file = s.file ?? "";
    const kept = join(keepDir, this.fileName);
    await mkdir(keepDir, { recursive: true });
    await moveFile(this.runner, file, kept);
    try {
      await writeKeepMeta(keepDir, {
        driver: this.name,
        sandboxId: disk.sandboxId,
        baseName: s.baseName ?? "",
        basePath: s.basePath ?? "",
        sizeMb: Number(s.sizeMb),
        file: this.fileName,
        keptAt: new Date().toISOString(),
      });
    } catch (err) {
      await moveFile(this.runner, kept, file).catch((e: unknown) =>
        this.log.error({ err: e, kept }, "could not move the disk file back"),
      );
      throw err;
    }
    this.use(s.basePath ?? "", disk.sandboxId, false);
    return detachedDisk(disk, keepDir, kept);
  }

  async attach(
    disk: SandboxDisk,
    base: BaseImage,
    options: StorageOptions = {},
  ): Promise<SandboxDisk> {
    await checkKept(this.name, disk, base);
    checkSignal(options.signal, `attach disk of ${disk.sandboxId}`);
    const s = disk.state;
    const file = s.file ?? join(s.dir ?? "", this.fileName);
    const kept = s.keptPath ?? "";
    await mkdir(s.dir ?? "", { recursive: true });
    await copySparse(kept, file, this.runner);
    try {
      if (base.path !== s.basePath) await this.rebased(file, base);
    } catch (err) {
      await rm(file, { force: true });
      throw err;
    }
    this.use(base.path, disk.sandboxId, true);
    return {
      sandboxId: disk.sandboxId,
      path: file,
      format: this.format,
      state: attachedState(disk, { file, basePath: base.path }),
    };
  }

  async flatten(disk: SandboxDisk, outPath: string, options: FlattenOptions = {}): Promise<void> {
    const file = isDetached(disk) ? (disk.state.keptPath ?? "") : (disk.state.file ?? "");
    const partial = `${outPath}.partial`;
    const start = performance.now();
    try {
      checkSignal(options.signal, `flatten ${disk.sandboxId}`);
      await rm(partial, { force: true });
      await this.exportRaw(file, partial);
      checkSignal(options.signal, `flatten ${disk.sandboxId}`);
      if (options.shrink ?? true) await shrinkImage(this.runner, partial);
      await rename(partial, outPath);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
    this.log.info(
      { sandboxId: disk.sandboxId, outPath, ms: Math.round(performance.now() - start) },
      "flattened disk",
    );
  }

  usage(disk: SandboxDisk): Promise<number> {
    return allocatedBytes(isDetached(disk) ? (disk.state.keptPath ?? "") : (disk.state.file ?? ""));
  }

  async adopt(disk: SandboxDisk): Promise<boolean> {
    const detached = isDetached(disk);
    if (!(await exists(detached ? (disk.state.keptPath ?? "") : (disk.state.file ?? ""))))
      return false;
    if (!detached) this.use(disk.state.basePath ?? "", disk.sandboxId, true);
    return true;
  }
}
