import { loadClockAddon } from "@wrenn/clock";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import type { Logger } from "@wrenn/shared/log.ts";

/** Below this the guest clock is right enough; setting it would only add jitter. */
export const CLOCK_TOLERANCE_MS = 50;

/** Sets CLOCK_REALTIME to a Unix time in milliseconds. */
export type ClockSetter = (ms: number) => void | Promise<void>;

let warnedFallback = false;

/**
 * clock_settime through the @wrenn/clock addon: no fork. Spawning `date -s`
 * forks all of envd's memory, which costs hundreds of milliseconds in a TCG
 * guest on every create and resume; it is only the fallback when the addon
 * is not built.
 */
export function clockSetter(
  log: Logger,
  runner: Runner = runCommand,
  loaded: ReturnType<typeof loadClockAddon> = loadClockAddon(),
): ClockSetter {
  const { addon, error } = loaded;
  if (addon) return (ms) => addon.setRealtime(ms);
  if (!warnedFallback) {
    warnedFallback = true;
    log.warn({ err: error }, "clock addon not loaded; setting the clock with date -s");
  }
  return async (ms) => {
    await runner("date", ["-u", "-s", `@${(ms / 1000).toFixed(3)}`], { timeoutMs: 5000 });
  };
}

/**
 * After a resume the guest clock is as old as the snapshot: the host sends
 * its time in /init and envd sets the clock to it. Only root can, so other
 * users (tests, development) skip it. Returns whether the clock was set.
 */
export async function syncClock(
  target: Date,
  log: Logger,
  options: { setClock?: ClockSetter; now?: number; isRoot?: boolean } = {},
): Promise<boolean> {
  const now = options.now ?? Date.now();
  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  const drift = target.getTime() - now;
  if (!isRoot || Math.abs(drift) < CLOCK_TOLERANCE_MS) return false;
  const set = options.setClock ?? clockSetter(log);
  await set(target.getTime());
  // Every resume sets it: debug, as /init's own line is (see init.ts).
  log.debug({ driftMs: drift }, "guest clock set from host");
  return true;
}
