import { accessSync, constants, statSync, type Stats } from "node:fs";
import path from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { LinuxUser } from "../users.ts";

/** PATH a login shell would start from; sbin included so root and sudoers find their tools. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The environment a process starts with: what login(1) sets for the user,
 * then the sandbox-wide variables from /init, then the request's own.
 * envd's own environment is not inherited: it belongs to the daemon.
 */
export function processEnvironment(
  user: LinuxUser,
  sandboxEnv: Record<string, string>,
  requestEnv: Record<string, string>,
): Record<string, string> {
  return {
    PATH: DEFAULT_PATH,
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: user.shell,
    ...sandboxEnv,
    ...requestEnv,
  };
}

// Synchronous on purpose: a few stats of local paths cost microseconds, while
// each async one is a thread-pool round trip on the path of every exec.
function statOrUndefined(p: string): Stats | undefined {
  try {
    return statSync(p, { throwIfNoEntry: false });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw err;
  }
}

/**
 * The directory a process starts in. `~` and relative paths are taken from
 * the user's home, as a shell would. A requested directory must exist; the
 * default (sandbox workdir or home) falls back to / when it does not, so a
 * user without a home directory can still run commands.
 */
export function workingDirectory(
  requested: string | undefined,
  fallback: string | undefined,
  user: LinuxUser,
): string {
  if (requested === undefined || requested === "") {
    const dir = fallback ?? user.home;
    const info = statOrUndefined(dir);
    return info?.isDirectory() ? dir : "/";
  }
  const expanded = requested === "~" ? user.home : requested.replace(/^~\//, `${user.home}/`);
  const dir = path.resolve(user.home, expanded);
  const info = statOrUndefined(dir);
  if (info === undefined) {
    throw new WrennError("not_found", `working directory '${dir}' does not exist`);
  }
  if (!info.isDirectory()) {
    throw new WrennError("invalid_argument", `working directory '${dir}' is not a directory`);
  }
  return dir;
}

function isExecutableFile(p: string): boolean {
  const info = statOrUndefined(p);
  if (info === undefined || !info.isFile()) return false;
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds the program before spawning it: behind setpriv a missing program
 * would only show up as exit status 127 and a line on stderr, while the
 * caller deserves a clear error instead of a start event.
 */
export function resolveExecutable(cmd: string, env: Record<string, string>, cwd: string): string {
  if (cmd.includes("/")) {
    const file = path.resolve(cwd, cmd);
    if (isExecutableFile(file)) return file;
    throw new WrennError("not_found", `'${cmd}' does not exist or is not an executable file`);
  }
  const dirs = (env.PATH ?? DEFAULT_PATH).split(":").filter((d) => d !== "");
  for (const dir of dirs) {
    const file = path.resolve(cwd, dir, cmd);
    if (isExecutableFile(file)) return file;
  }
  throw new WrennError("not_found", `'${cmd}' was not found in PATH (${dirs.join(":")})`);
}
