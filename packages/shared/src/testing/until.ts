/** Polling for tests: waits for what a test cannot be told about, such as a child's log line. */
import assert from "node:assert/strict";

/**
 * Calls `probe` every `intervalMs` until it returns something other than
 * undefined, and returns that; fails the test naming `what` once `timeoutMs`
 * has passed. A probe that throws fails at once.
 */
export async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | undefined | Promise<T | undefined>,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
