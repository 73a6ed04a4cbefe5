/**
 * Runs envd where the official e2b SDK looks in debug mode
 * (http://localhost:49983). Several test files need that one port, and the
 * runner executes files in parallel processes, so the port itself is the
 * lock: whoever binds it owns it until close(), the others retry.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { startEnvd, type Envd, type EnvdOptions } from "../src/server.ts";

export const E2B_DEBUG_PORT = 49983;

function addressInUse(err: unknown): boolean {
  return err instanceof Error && "code" in err && err.code === "EADDRINUSE";
}

/** Starts envd on :49983 (IPv4 and IPv6), waiting up to `waitMs` for another test to release it. */
export async function startEnvdForE2b(
  options: Omit<EnvdOptions, "port" | "host"> = {},
  waitMs = 600_000,
): Promise<Envd> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      // "::" is dual-stack: "localhost" may resolve to ::1 or 127.0.0.1.
      return await startEnvd({ ...options, port: E2B_DEBUG_PORT, host: "::" });
    } catch (err) {
      if (!addressInUse(err) || Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}
