/**
 * A pause folder is written back to the host's disk a second after its
 * pause: the paused memory (a QEMU pause links the guest's RAM file, all of
 * its dirty pages) and the disk (what the guest wrote that the VMM had not
 * yet flushed). Left to the kernel's flusher, that takes up to 30 s, and a
 * host crash in that window loses them, or keeps one without the other.
 * A resume's reflink copies of them also wait for that write-back on its
 * path (≈ 35 ms of a 256 MiB resume's host side; `cancel` tells the resume,
 * and QEMU's copy then runs beside QEMU's start). Not at once: the
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
  /** Folders being written back now. */
  readonly #running = new Map<string, Promise<void>>();
  readonly #afterMs: number;

  constructor(afterMs = WRITE_BACK_AFTER_MS) {
    this.#afterMs = afterMs;
  }

  /** Writes back every file in the pause folder `dir` shortly, unless `cancel`led first. */
  schedule(dir: string, log: Logger): void {
    this.cancel(dir);
    const timer = setTimeout(() => {
      this.#timers.delete(dir);
      this.#running.set(
        dir,
        writeBack(dir, log).finally(() => this.#running.delete(dir)),
      );
    }, this.#afterMs);
    timer.unref();
    this.#timers.set(dir, timer);
  }

  /**
   * Cancels `dir`'s write-back if it has not started. True while the folder
   * may hold pages not yet written back: its write-back was still to come,
   * or is under way.
   */
  cancel(dir: string): boolean {
    const pending = this.#timers.has(dir);
    clearTimeout(this.#timers.get(dir));
    this.#timers.delete(dir);
    return pending || this.#running.has(dir);
  }

  /**
   * Cancels every write-back still to come and waits for those under way:
   * after it, none holds a file of the data dir open (an agent shutting
   * down, whose data dir may be unmounted next).
   */
  async stop(): Promise<void> {
    for (const dir of [...this.#timers.keys()]) this.cancel(dir);
    await Promise.all(this.#running.values());
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
