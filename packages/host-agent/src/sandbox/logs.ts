/**
 * A sandbox's console: what its guest kernel, init and envd wrote to the
 * serial port during the VM's current run (a pause ends a run; the log of a
 * paused sandbox is empty until it resumes). Bounded by the console's cap.
 */
import { WrennError } from "@wrenn/shared/errors.ts";
import { CONSOLE_READ_MAX, readConsole, type ConsoleRead } from "../vmm/console-log.ts";
import type { SandboxHost } from "./host.ts";
import { homeOf } from "./records.ts";

export interface LogsOptions {
  /** Absolute byte offset to read from (a previous answer's `nextOffset`); default: the oldest kept. */
  offset?: number;
  /** Most bytes to return; default and maximum 1 MiB. */
  limit?: number;
}

export type LogsResult = ConsoleRead;

export async function logs(
  host: SandboxHost,
  id: string,
  opts: LogsOptions = {},
): Promise<LogsResult> {
  const live = host.registry.get(id);
  for (const [name, v] of [
    ["offset", opts.offset],
    ["limit", opts.limit],
  ] as const) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
      throw new WrennError("invalid_argument", `${name} must be a non-negative integer, got ${v}`);
    }
  }
  if (opts.limit !== undefined && opts.limit > CONSOLE_READ_MAX) {
    throw new WrennError("invalid_argument", `limit must be at most ${CONSOLE_READ_MAX} bytes`);
  }
  const vmId = live.vm?.vmId ?? live.record.vm?.vmId ?? homeOf(live.record);
  return readConsole(host.runDir(live.record), vmId, opts);
}
