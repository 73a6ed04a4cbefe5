import { existsSync } from "node:fs";
import { setuserArgs, setuserPath } from "@wrenn/setuser";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { LinuxUser } from "../users.ts";

/** What to exec, and the uid/gid the spawner itself should switch to. */
export interface Launch {
  file: string;
  args: string[];
  uid?: number;
  gid?: number;
}

const SETPRIV_PATHS = ["/usr/bin/setpriv", "/bin/setpriv"];
let setprivPath: string | undefined;

/** setpriv, where wrenn-setuser is not built (envd run from sources on a host without it). */
function setpriv(): string {
  setprivPath ??= SETPRIV_PATHS.find((p) => existsSync(p));
  if (setprivPath === undefined) {
    throw new WrennError(
      "failed_precondition",
      "running a process as another user with supplementary groups needs wrenn-setuser (envd's bundle) or setpriv (util-linux), and this sandbox has neither",
    );
  }
  return setprivPath;
}

function sameGroups(a: readonly number[], b: readonly number[]): boolean {
  const set = new Set(a);
  return set.size === new Set(b).size && b.every((g) => set.has(g));
}

/**
 * How to start `file args` as `user`. libuv's uid/gid switch drops every
 * supplementary group and node-pty's keeps root's, so a user with
 * supplementary groups (or any user on a PTY) goes through wrenn-setuser
 * (static: setpriv's dynamic loading costs ≈ 40 ms a command under TCG),
 * which execs in place: the pid we report stays the process's own.
 */
export function launchAs(
  user: LinuxUser,
  file: string,
  args: string[],
  options: { pty: boolean },
): Launch {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) {
    if (user.uid !== uid) {
      throw new WrennError(
        "permission_denied",
        `envd runs as uid ${uid}, not root, so it can only start processes as itself; it cannot run as '${user.name}' (uid ${user.uid})`,
      );
    }
    return { file, args };
  }
  if (
    user.uid === uid &&
    user.gid === gid &&
    sameGroups(user.groups, process.getgroups?.() ?? [])
  ) {
    return { file, args };
  }
  const supplementary = user.groups.filter((g) => g !== user.gid);
  if (!options.pty && supplementary.length === 0) {
    return { file, args, uid: user.uid, gid: user.gid };
  }
  const helper = setuserPath();
  if (helper !== null) {
    return { file: helper, args: setuserArgs(user.uid, user.gid, user.groups, file, args) };
  }
  const groups = user.groups.length > 0 ? ["--groups", user.groups.join(",")] : ["--clear-groups"];
  return {
    file: setpriv(),
    args: [`--reuid=${user.uid}`, `--regid=${user.gid}`, ...groups, "--", file, ...args],
  };
}
