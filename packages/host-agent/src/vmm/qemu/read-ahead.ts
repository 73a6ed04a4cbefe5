/**
 * Reading a restored VM's own copy of its memory into the page cache. The
 * copy is a reflink, a new inode whose page cache is empty, so without it
 * the guest reads its memory a page fault at a time; under TCG that was
 * half of a resumed guest's first answer.
 */
import type { Runner } from "@wrenn/shared/command.ts";
import { messageOf } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import { readAhead } from "../../util/fs.ts";

/** Reads under way; `stop` ends them (before the file goes) and waits. */
export interface RamReadAhead {
  stop(): Promise<void>;
}

/**
 * Starts reading `path` once `copied` settles (not at all if it fails).
 * `bench/lifecycle.ts` alternates resumes with and without: the guest's
 * first answer took 0.94–0.95 as long with it on a quiet host, 0.62 (256
 * MiB) and 0.91 (1 GiB) under disk writes beside. Started before QEMU it
 * helped more, but QEMU's start then took 15–25 ms longer; started after
 * the state loaded, it came too late to help.
 */
export function readRamAhead(
  path: string,
  copied: Promise<void> | undefined,
  run: Runner,
  log: Logger,
): RamReadAhead {
  const cancel = new AbortController();
  const done = (async () => {
    try {
      await copied;
    } catch {
      return; // The restore fails on it, and says why.
    }
    await timed(log, "qemu.read_ahead", () => readAhead(path, run, cancel.signal)).catch(
      (err: unknown) => {
        // Only slower: the guest reads what it touches itself.
        if (!cancel.signal.aborted) {
          log.warn({ err: messageOf(err) }, "reading the VM's memory ahead failed");
        }
      },
    );
  })();
  return {
    stop: async () => {
      cancel.abort();
      await done;
    },
  };
}
