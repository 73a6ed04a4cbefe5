import { loadClockAddon } from "@wrenn/clock";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

/** What /init takes in `entropy`, decoded: enough to reseed, small enough to be cheap. */
export const MIN_ENTROPY_BYTES = 32;
export const MAX_ENTROPY_BYTES = 512;

let warned = false;

function warnOnce(log: Logger, fields: Record<string, unknown>, message: string): void {
  if (warned) return;
  warned = true;
  log.warn(fields, message);
}

/**
 * Mixes the host's bytes into the guest kernel's pool and forces its CRNG to
 * reseed. Sandboxes restored from one memory snapshot share the kernel's
 * CRNG state, so /dev/urandom and getrandom() return the same bytes in every
 * clone until the kernel reseeds by itself (up to a minute later).
 *
 * Needs CAP_SYS_ADMIN: an unprivileged envd (tests, development) and one
 * whose addon is missing or predates reseedRandom warn once and go on.
 * Returns whether the kernel was reseeded.
 */
export function reseedKernelRandom(
  bytes: Uint8Array,
  log: Logger,
  loaded: ReturnType<typeof loadClockAddon> = loadClockAddon(),
): boolean {
  const { addon, error } = loaded;
  if (typeof addon?.reseedRandom !== "function") {
    warnOnce(
      log,
      { err: error ?? "the addon has no reseedRandom; run 'npm rebuild @wrenn/clock'" },
      "clock addon not loaded; the guest kernel RNG is not reseeded from the host",
    );
    return false;
  }
  try {
    addon.reseedRandom(bytes);
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === "EPERM") {
      warnOnce(
        log,
        { err: messageOf(err) },
        "not privileged to reseed the kernel RNG (needs CAP_SYS_ADMIN); /init goes on without",
      );
      return false;
    }
    throw new WrennError("internal", `reseeding the guest kernel RNG: ${messageOf(err)}`, {
      cause: err,
    });
  }
}
