import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import type { Logger } from "@wrenn/shared/log.ts";

/** Below this the guest clock is right enough; setting it would only add jitter. */
export const CLOCK_TOLERANCE_MS = 50;

/**
 * After a resume the guest clock is as old as the snapshot: the host sends
 * its time in /init and envd sets the clock to it. Only root can, so other
 * users (tests, development) skip it. Returns whether the clock was set.
 */
export async function syncClock(
  target: Date,
  log: Logger,
  options: { runner?: Runner; now?: number; isRoot?: boolean } = {},
): Promise<boolean> {
  const now = options.now ?? Date.now();
  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  const drift = target.getTime() - now;
  if (!isRoot || Math.abs(drift) < CLOCK_TOLERANCE_MS) return false;
  const seconds = (target.getTime() / 1000).toFixed(3);
  await (options.runner ?? runCommand)("date", ["-u", "-s", `@${seconds}`], { timeoutMs: 5000 });
  log.info({ driftMs: drift }, "guest clock set from host");
  return true;
}
