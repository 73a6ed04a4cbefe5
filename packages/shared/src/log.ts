import { pino, type Logger } from "pino";

export type { Logger };

/**
 * One logger per daemon, JSON to stderr so stdout stays free for command
 * output. WRENN_LOG_LEVEL overrides the level (default "info").
 */
export function createLogger(name: string, level = process.env.WRENN_LOG_LEVEL ?? "info"): Logger {
  return pino({ name, level }, pino.destination(2));
}

/**
 * Runs one step of a slow path and logs how long it took, so create, pause
 * and resume can be read step by step from the logs.
 */
export async function timed<T>(
  log: Logger,
  step: string,
  fn: () => Promise<T>,
  fields: Record<string, unknown> = {},
): Promise<T> {
  const start = performance.now();
  try {
    return await fn();
  } finally {
    log.info({ ...fields, step, ms: Math.round((performance.now() - start) * 10) / 10 }, step);
  }
}
