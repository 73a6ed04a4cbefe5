/**
 * Loop devices. Each base image gets ONE read-only loop device shared by every
 * sandbox on it, counted by reference and detached when the last one goes.
 */
import type { Logger } from "@wrenn/shared/log.ts";
import type { Runner } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

export async function attachLoop(runner: Runner, file: string, readOnly: boolean): Promise<string> {
  const args = ["--find", "--show", ...(readOnly ? ["--read-only"] : []), file];
  const { stdout } = await runner("losetup", args);
  const device = stdout.trim();
  if (!device.startsWith("/dev/loop")) {
    throw new WrennError(
      "internal",
      `losetup ${args.join(" ")} printed '${device}', not a loop device`,
    );
  }
  return device;
}

export async function detachLoop(runner: Runner, device: string): Promise<void> {
  await runner("losetup", ["--detach", device]);
}

/** Loop devices currently backed by `file` (leftovers of a crashed agent, or ours). */
export async function loopsOf(runner: Runner, file: string): Promise<string[]> {
  const { stdout } = await runner("losetup", [
    "--list",
    "--noheadings",
    "--output",
    "NAME",
    "--associated",
    file,
  ]);
  return stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

interface Entry {
  device: string;
  refs: number;
}

export class LoopRegistry {
  private readonly runner: Runner;
  private readonly log: Logger;
  private readonly entries = new Map<string, Entry>();
  /** Serialises acquire/release per image so two sandboxes never attach it twice. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(runner: Runner, log: Logger) {
    this.runner = runner;
    this.log = log;
  }

  private serial<T>(image: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(image) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.queues.set(image, tail);
    void tail.then(() => {
      if (this.queues.get(image) === tail) this.queues.delete(image);
    });
    return next;
  }

  /** The image's shared read-only loop device; attaches it on first use. */
  acquire(image: string): Promise<string> {
    return this.serial(image, async () => {
      const entry = this.entries.get(image);
      if (entry) {
        entry.refs++;
        return entry.device;
      }
      const device = await attachLoop(this.runner, image, true);
      this.entries.set(image, { device, refs: 1 });
      this.log.info({ image, device }, "attached base image loop device");
      return device;
    });
  }

  /** Drops one reference; the last one detaches the loop device. */
  release(image: string): Promise<void> {
    return this.serial(image, async () => {
      const entry = this.entries.get(image);
      if (!entry) {
        throw new WrennError(
          "internal",
          `released base image ${image} that holds no loop reference`,
        );
      }
      entry.refs--;
      if (entry.refs > 0) return;
      this.entries.delete(image);
      await detachLoop(this.runner, entry.device);
      this.log.info({ image, device: entry.device }, "detached base image loop device");
    });
  }

  /** Counts a reference held by a disk from an earlier agent process. */
  adopt(image: string, device: string): void {
    const entry = this.entries.get(image);
    if (entry && entry.device !== device) {
      throw new WrennError(
        "internal",
        `base image ${image} is on ${entry.device} but an adopted disk uses ${device}`,
      );
    }
    if (entry) entry.refs++;
    else this.entries.set(image, { device, refs: 1 });
  }

  refs(image: string): number {
    return this.entries.get(image)?.refs ?? 0;
  }

  device(image: string): string | undefined {
    return this.entries.get(image)?.device;
  }
}
