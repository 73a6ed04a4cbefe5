import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";

let found: string | null | undefined;

/**
 * The path of the built `wrenn-setuser`, or null when it is not built (then
 * envd falls back to setpriv). Resolved by package name, so it is found the
 * same from sources and from envd's bundle with its node_modules beside it.
 */
export function setuserPath(): string | null {
  if (found !== undefined) return found;
  try {
    const file = createRequire(import.meta.url).resolve("@wrenn/setuser/wrenn-setuser");
    accessSync(file, constants.X_OK);
    found = file;
  } catch {
    found = null;
  }
  return found;
}

/** The command line that runs `file args` as uid:gid with `groups` through the helper. */
export function setuserArgs(
  uid: number,
  gid: number,
  groups: readonly number[],
  file: string,
  args: readonly string[],
): string[] {
  return [
    String(uid),
    String(gid),
    groups.length > 0 ? groups.join(",") : "-",
    "--",
    file,
    ...args,
  ];
}
