import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";

let found: string | null | undefined;

/**
 * The path of the built `wrenn-nothp`, or null when it is not built (then
 * the agent starts QEMU directly, with huge pages as the host's setting
 * allows).
 */
export function nothpPath(): string | null {
  if (found !== undefined) return found;
  try {
    const file = createRequire(import.meta.url).resolve("@wrenn/nothp/wrenn-nothp");
    accessSync(file, constants.X_OK);
    found = file;
  } catch {
    found = null;
  }
  return found;
}
