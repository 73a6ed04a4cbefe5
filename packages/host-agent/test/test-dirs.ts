/**
 * Shared state that tests and benchmarks keep apart from a user's platform:
 * never the machine's image dir, which `wrenn up` and the CLI use.
 */

/**
 * Boot snapshots of tests' and benchmarks' agents: shared between runs so a
 * machine builds each shape once, but never the user's (`<imageDir>/boot-snapshots`).
 * A test that needs a shape not built yet gives its agent a fresh dir instead.
 */
export const TEST_BOOT_SNAPSHOT_DIR = "/var/lib/wrenn-test/boot-snapshots";
