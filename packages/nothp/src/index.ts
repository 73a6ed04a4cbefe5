import { builtExecutable } from "@wrenn/shared/built-executable.ts";

let found: string | null | undefined;

/**
 * The path of the built `wrenn-nothp`, or null when it is not built (then
 * the agent starts QEMU directly, with huge pages as the host's setting
 * allows).
 */
export function nothpPath(): string | null {
  if (found === undefined) found = builtExecutable("@wrenn/nothp/wrenn-nothp", import.meta.url);
  return found;
}
