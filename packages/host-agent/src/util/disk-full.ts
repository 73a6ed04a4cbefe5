/**
 * A host disk out of space is the host's resource exhausted, not a fault in
 * the agent: the caller gets `resource_exhausted` and a message that says
 * what to free, where a bare ENOSPC (or the VMM dying of it) would reach
 * them as "internal".
 */
import { statfs } from "node:fs/promises";
import { WrennError, messageOf, type ErrorCode } from "@wrenn/shared/errors.ts";

/**
 * Below this much free space a failure is put down to the full disk: a VMM
 * whose new memory file cannot grow dies of SIGBUS before it says why.
 */
const NEARLY_FULL_BYTES = 64 * 1024 * 1024;

/** ENOSPC/EDQUOT from a syscall, or a tool's (cp, qemu-img) "No space left" in its message. */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT") return true;
    if (/no space left on device|disk quota exceeded/i.test(e.message)) return true;
  }
  return false;
}

/** Free bytes on the filesystem holding `dir` (Infinity when it cannot be read). */
async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir).catch(() => null);
  return fs ? fs.bavail * fs.bsize : Infinity;
}

/**
 * `err` as the WrennError an operation reports: `resource_exhausted` when
 * the disk is full (said by the error, or an internal failure or a VM gone
 * while `dataDir` has next to nothing free), a WrennError as it is, else
 * `fallback`.
 */
export async function operationError(
  what: string,
  err: unknown,
  fallback: ErrorCode,
  dataDir: string,
): Promise<WrennError> {
  // Internal, or the VM gone: a VMM whose memory file cannot grow dies of SIGBUS.
  const unexplained =
    !(err instanceof WrennError) || err.code === "internal" || err.code === "unavailable";
  if (unexplained) {
    const free = await freeBytes(dataDir);
    // A VMM killed by SIGBUS: its file-backed guest memory found no block.
    const sigbus = /\bSIGBUS\b/.test(messageOf(err));
    if (isDiskFull(err) || sigbus || free < NEARLY_FULL_BYTES) {
      return new WrennError(
        "resource_exhausted",
        `${what} failed: the host's data disk is full (${free} bytes free: ${messageOf(err)}); free space on it and retry`,
        { cause: err },
      );
    }
  }
  if (err instanceof WrennError) return err;
  return new WrennError(fallback, `${what} failed: ${messageOf(err)}`, { cause: err });
}
