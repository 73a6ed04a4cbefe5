/**
 * A pause folder is written back to the host's disk a second after its
 * pause: the paused memory (a QEMU pause links the guest's RAM file, all of
 * its dirty pages) and the disk (what the guest wrote that the VMM had not
 * yet flushed). Left to the kernel's flusher, that takes up to 30 s, and a
 * host crash in that window loses them, or keeps one without the other.
 * A resume's reflink copies of them also wait for that write-back on its
 * path (≈ 35 ms of a 256 MiB resume's host side). Not at once: the
 * write-back ends in a disk cache flush (80–140 ms here) that the fsyncs of
 * a pause or resume right after it would queue behind; a resume within the
 * second cancels it and writes back what it copies itself.
 */
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { messageOf } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import { fsyncDir } from "../util/fs.ts";

export const WRITE_BACK_AFTER_MS = 1000;

export class PauseWriteBack {
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #afterMs: number;

  constructor(afterMs = WRITE_BACK_AFTER_MS) {
    this.#afterMs = afterMs;
  }

  /** Writes back every file in the pause folder `dir` shortly, unless `cancel`led first. */
  schedule(dir: string, log: Logger): void {
    this.cancel(dir);
    const timer = setTimeout(() => {
      this.#timers.delete(dir);
      void writeBack(dir, log);
    }, this.#afterMs);
    timer.unref();
    this.#timers.set(dir, timer);
  }

  cancel(dir: string): void {
    clearTimeout(this.#timers.get(dir));
    this.#timers.delete(dir);
  }
}

/** Datasyncs each file in `dir`, then the folder; what a resume removed meanwhile is skipped. */
async function writeBack(dir: string, log: Logger): Promise<void> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    const files = entries.filter((e) => e.isFile()).map((e) => join(dir, e.name));
    await timed(
      log,
      "write_back",
      async () => {
        // Together: the block layer merges their disk cache flushes.
        await Promise.all(files.map(datasync));
        await fsyncDir(dir);
      },
      { dir, files: files.length },
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    log.warn({ dir, err: messageOf(err) }, "could not write a pause folder back to disk early");
  }
}

async function datasync(path: string): Promise<void> {
  const fh = await open(path, "r").catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  });
  if (fh === null) return;
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
