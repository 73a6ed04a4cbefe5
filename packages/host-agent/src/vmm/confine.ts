/**
 * What a VMM runs as: an unprivileged system user (`wrenn-vmm`, created on
 * first use; `nobody` if it cannot be), so a guest that escapes into its
 * VMM holds no root. The VMM opens its disk, TAP, sockets and RAM file as
 * root at start and drops to this user before the guest runs; what it opens
 * afterwards — a pause's state file through `exec:cat` — must be reachable
 * by the user, which `grantTraverse` and `handOver` arrange.
 */
import { chmod, chown, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

export const VMM_USER = "wrenn-vmm";

export interface VmmUser {
  name: string;
  uid: number;
  gid: number;
}

async function lookup(name: string): Promise<VmmUser | null> {
  const passwd = await readFile("/etc/passwd", "utf8").catch(() => "");
  for (const line of passwd.split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user === name && uid && gid) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return null;
}

let ensured: Promise<VmmUser> | null = null;

/** The VMM user, created as a system user without a home or shell if missing. */
export function vmmUser(log: Logger): Promise<VmmUser> {
  ensured ??= (async () => {
    const found = await lookup(VMM_USER);
    if (found) return found;
    try {
      await runCommand("useradd", [
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--user-group",
        VMM_USER,
      ]);
      const made = await lookup(VMM_USER);
      if (made) {
        log.info({ user: VMM_USER, uid: made.uid }, "created the VMM user");
        return made;
      }
    } catch (err) {
      // A concurrent agent may have made it meanwhile.
      const again = await lookup(VMM_USER);
      if (again) return again;
      log.warn({ err: messageOf(err) }, `could not create user ${VMM_USER}; VMMs run as nobody`);
    }
    const nobody = await lookup("nobody");
    if (!nobody) throw new Error(`neither ${VMM_USER} nor nobody exists, and useradd failed`);
    return nobody;
  })().catch((err: unknown) => {
    ensured = null;
    throw err;
  });
  return ensured;
}

/**
 * Lets the VMM user reach `dir`: search permission (o+x: enter, not list)
 * on it and every directory above it that lacks it, e.g. a data dir made
 * with mode 0700.
 */
export async function grantTraverse(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) await chmod(d, (st.mode & 0o7777) | 0o001);
    if (d === dirname(d)) return;
  }
}

/** Gives a file the root agent made to the VMM user (a state file its `cat` appends to). */
export async function handOver(path: string, user: VmmUser): Promise<void> {
  await chown(path, user.uid, user.gid);
}
