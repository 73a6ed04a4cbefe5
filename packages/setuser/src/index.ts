import { builtExecutable } from "@wrenn/shared/built-executable.ts";

let found: string | null | undefined;

/** The path of the built `wrenn-setuser`, or null when it is not built (then envd falls back to setpriv). */
export function setuserPath(): string | null {
  if (found === undefined) found = builtExecutable("@wrenn/setuser/wrenn-setuser", import.meta.url);
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
