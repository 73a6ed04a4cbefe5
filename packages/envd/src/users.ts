import { readFileSync } from "node:fs";
import { WrennError } from "@wrenn/shared/errors.ts";

/** A Linux account as a process started for it needs to see it. */
export interface LinuxUser {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups, including the primary one. */
  groups: number[];
  home: string;
  shell: string;
}

/**
 * Reads /etc/passwd and /etc/group on every call: users may be added inside
 * the sandbox at any time (useradd), and the files are small.
 */
export async function lookupUser(name: string): Promise<LinuxUser> {
  return lookupUserSync(name);
}

/**
 * lookupUser without the thread-pool round trips of async reads: two small
 * local files cost microseconds, and every exec waits on this.
 */
export function lookupUserSync(name: string): LinuxUser {
  const passwd = readFileSync("/etc/passwd", "utf8");
  const line = passwd.split("\n").find((l) => l.split(":")[0] === name);
  if (line === undefined) {
    throw new WrennError("unauthenticated", `user '${name}' does not exist in this sandbox`);
  }
  const [, , uid, gid, , home, shell] = line.split(":");
  const user: LinuxUser = {
    name,
    uid: Number(uid),
    gid: Number(gid),
    groups: [Number(gid)],
    home: home || "/",
    shell: shell || "/bin/sh",
  };
  let group = "";
  try {
    group = readFileSync("/etc/group", "utf8");
  } catch {
    // No /etc/group: the primary group is all there is.
  }
  for (const g of group.split("\n")) {
    const [, , id, members] = g.split(":");
    if (members?.split(",").includes(name) && !user.groups.includes(Number(id))) {
      user.groups.push(Number(id));
    }
  }
  return user;
}

/**
 * The user an RPC runs as: `Authorization: Basic base64("<user>:")`, or the
 * default user when the header is absent.
 */
export function userFromAuthorization(header: string | null, defaultUser: string): string {
  if (header === null || header === "") return defaultUser;
  const match = /^Basic\s+(\S+)$/i.exec(header);
  if (match?.[1] === undefined) {
    throw new WrennError("unauthenticated", "Authorization must be 'Basic base64(<user>:)'");
  }
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const name = decoded.split(":")[0] ?? "";
  if (name === "") throw new WrennError("unauthenticated", "Authorization names no user");
  return name;
}
