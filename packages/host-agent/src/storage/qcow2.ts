/**
 * QEMU rootfs storage: a qcow2 overlay per sandbox backed by the raw base
 * image, its virtual size the requested disk size (the guest grows its
 * filesystem into it at boot).
 */
import { rm, stat } from "node:fs/promises";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { FileStorage } from "./file-storage.ts";
import { MIB } from "./image.ts";
import type { BaseImage } from "./storage.ts";

export interface Qcow2Options {
  runner?: Runner;
  log?: Logger;
}

export class Qcow2Storage extends FileStorage {
  readonly name = "qcow2" as const;
  protected readonly fileName = "rootfs.qcow2";
  protected readonly format = "qcow2" as const;

  constructor(options: Qcow2Options = {}) {
    super(
      options.runner ?? runCommand,
      (options.log ?? createLogger("host-agent")).child({ storage: "qcow2" }),
    );
  }

  protected async makeDisk(
    base: BaseImage,
    sizeMb: number,
    path: string,
  ): Promise<Record<string, string>> {
    const baseBytes = (await stat(base.path)).size;
    if (sizeMb * MIB < baseBytes) {
      throw new WrennError(
        "invalid_argument",
        `disk_size_mb ${sizeMb} is smaller than base image '${base.name}' (${Math.ceil(baseBytes / MIB)} MiB)`,
      );
    }
    try {
      await this.runner("qemu-img", [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        base.path,
        "-F",
        "raw",
        path,
        `${sizeMb}M`,
      ]);
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    return {};
  }

  protected async exportRaw(diskFile: string, out: string): Promise<void> {
    // -U: a stopped-but-alive QEMU may still hold the image lock; the caller
    // guarantees the guest is not writing. Output is sparse (zeros skipped).
    await this.runner("qemu-img", ["convert", "-U", "-O", "raw", diskFile, out]);
  }

  protected override async rebased(file: string, base: BaseImage): Promise<void> {
    // Header-only rewrite of the backing path; the data is unchanged.
    await this.runner("qemu-img", ["rebase", "-u", "-b", base.path, "-F", "raw", file]);
  }
}
