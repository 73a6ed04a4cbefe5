/**
 * Fallback rootfs storage: each sandbox gets its own raw image — a reflink
 * (instant, no space until written) where the filesystem can (btrfs, xfs),
 * else a sparse copy — extended to the requested disk size.
 */
import { rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { CommandError, runCommand, type Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { FileStorage } from "./file-storage.ts";
import { copySparse } from "../util/fs.ts";
import { extendTo, MIB } from "./image.ts";
import type { BaseImage } from "./storage.ts";

const NO_REFLINK = /Operation not supported|Invalid cross-device link|not supported/i;

export interface ReflinkOptions {
  runner?: Runner;
  log?: Logger;
}

export class ReflinkStorage extends FileStorage {
  readonly name = "reflink" as const;
  protected readonly fileName = "rootfs.img";
  protected readonly format = "raw" as const;
  /** "<base fs dev>:<dir fs dev>" pairs where reflink failed; they copy directly. */
  private readonly noReflink = new Set<string>();

  constructor(options: ReflinkOptions = {}) {
    super(
      options.runner ?? runCommand,
      (options.log ?? createLogger("host-agent")).child({ storage: "reflink" }),
    );
  }

  protected async makeDisk(
    base: BaseImage,
    sizeMb: number,
    path: string,
  ): Promise<Record<string, string>> {
    const baseStat = await stat(base.path);
    if (sizeMb * MIB < baseStat.size) {
      throw new WrennError(
        "invalid_argument",
        `disk_size_mb ${sizeMb} is smaller than base image '${base.name}' (${Math.ceil(baseStat.size / MIB)} MiB)`,
      );
    }
    const pair = `${baseStat.dev}:${(await stat(dirname(path))).dev}`;
    let method = "reflink";
    try {
      if (this.noReflink.has(pair)) {
        method = "copy";
        await copySparse(base.path, path, this.runner);
      } else {
        try {
          await this.runner("cp", ["--reflink=always", base.path, path]);
        } catch (err) {
          if (!(err instanceof CommandError && NO_REFLINK.test(err.stderr))) throw err;
          this.noReflink.add(pair);
          this.log.warn(
            { base: base.path, dir: dirname(path) },
            "filesystem cannot reflink; using sparse copies (slower, uses space for what the base holds)",
          );
          await rm(path, { force: true });
          method = "copy";
          await copySparse(base.path, path, this.runner);
        }
      }
      await extendTo(path, sizeMb * MIB);
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    return { method };
  }

  protected async exportRaw(diskFile: string, out: string): Promise<void> {
    // A reflink where possible; resize2fs -M then rewrites only the copy.
    await this.runner("cp", ["--reflink=auto", "--sparse=always", diskFile, out]);
  }
}
