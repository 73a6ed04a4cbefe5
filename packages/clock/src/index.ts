import { createRequire } from "node:module";

export interface ClockAddon {
  /** Sets CLOCK_REALTIME to `ms` (Unix milliseconds); throws with `code` EPERM unless root. */
  setRealtime(ms: number): void;
}

let loaded: { addon: ClockAddon | null; error?: string } | undefined;

/**
 * The addon, loaded on first use (by package name, so it resolves the same
 * from sources and from envd's bundle with its node_modules beside it), or
 * null with the reason when it is not built.
 */
export function loadClockAddon(): { addon: ClockAddon | null; error?: string } {
  if (loaded) return loaded;
  try {
    const req = createRequire(import.meta.url);
    loaded = { addon: req("@wrenn/clock/wrenn_clock.node") as ClockAddon };
  } catch (err) {
    loaded = { addon: null, error: err instanceof Error ? err.message : String(err) };
  }
  return loaded;
}
