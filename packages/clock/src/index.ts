import { createRequire } from "node:module";

/**
 * The guest kernel calls envd's /init makes (clock, RNG, host name), as one
 * tiny N-API addon so none forks a process.
 */
export interface ClockAddon {
  /** Sets CLOCK_REALTIME to `ms` (Unix milliseconds); throws with `code` EPERM unless root. */
  setRealtime(ms: number): void;
  /**
   * Mixes `bytes` (1 to 4096, from a CSPRNG: they are credited as
   * `length * 8` bits) into the kernel's input pool and forces its CRNG to
   * reseed, so /dev/urandom and getrandom() depend on them from the next
   * read on. Throws with `code` EPERM without CAP_SYS_ADMIN.
   */
  reseedRandom(bytes: Uint8Array): void;
  /** sethostname(2): 1 to 64 letters, digits, dots or hyphens; throws with `code` EPERM without CAP_SYS_ADMIN. */
  setHostname(name: string): void;
  /**
   * Writes `<etc>/hostname` and names `name` on the first 127.0.1.1 line of
   * `<etc>/hosts` (added when it has none; a missing file is made with a
   * localhost line), as Debian keeps them. Throws with an errno `code`.
   */
  recordHostname(etc: string, name: string): void;
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
