import { readFileSync, statSync } from "node:fs";
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
 * Sees /etc/passwd and /etc/group as they are at the call: users may be
 * added inside the sandbox at any time (useradd).
 */
export async function lookupUser(name: string): Promise<LinuxUser> {
  return lookupUserSync(name);
}

interface FileVersion {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** What identifies a version of a file: replacing or editing it changes one of these. */
function versionOf(path: string): FileVersion | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  return st && { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

function sameVersion(a: FileVersion | undefined, b: FileVersion | undefined): boolean {
  return (
    a === b ||
    (a !== undefined &&
      b !== undefined &&
      a.ino === b.ino &&
      a.size === b.size &&
      a.mtimeMs === b.mtimeMs &&
      a.ctimeMs === b.ctimeMs)
  );
}

interface Accounts {
  passwd: FileVersion | undefined;
  group: FileVersion | undefined;
  users: Map<string, Omit<LinuxUser, "groups">>;
  /** Supplementary groups by member name, as /etc/group lists them. */
  memberOf: Map<string, number[]>;
}

function parseAccounts(passwd: FileVersion | undefined, group: FileVersion | undefined): Accounts {
  const users = new Map<string, Omit<LinuxUser, "groups">>();
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const [name, , uid, gid, , home, shell] = line.split(":");
    if (!name || users.has(name)) continue;
    users.set(name, {
      name,
      uid: Number(uid),
      gid: Number(gid),
      home: home || "/",
      shell: shell || "/bin/sh",
    });
  }
  let groupText = "";
  try {
    groupText = readFileSync("/etc/group", "utf8");
  } catch {
    // No /etc/group: the primary group is all there is.
  }
  const memberOf = new Map<string, number[]>();
  for (const line of groupText.split("\n")) {
    const [, , id, members] = line.split(":");
    for (const member of members?.split(",") ?? []) {
      if (member === "") continue;
      const ids = memberOf.get(member) ?? [];
      ids.push(Number(id));
      memberOf.set(member, ids);
    }
  }
  return { passwd, group, users, memberOf };
}

let accounts: Accounts | undefined;

/**
 * /etc/passwd and /etc/group, parsed again whenever either changed (useradd
 * renames a new file into place; an edit moves mtime and ctime): two stats
 * per exec instead of reading and parsing both files.
 */
function currentAccounts(): Accounts {
  const passwd = versionOf("/etc/passwd");
  const group = versionOf("/etc/group");
  if (
    accounts === undefined ||
    !sameVersion(accounts.passwd, passwd) ||
    !sameVersion(accounts.group, group)
  ) {
    accounts = parseAccounts(passwd, group);
  }
  return accounts;
}

/**
 * lookupUser without the thread-pool round trips of async reads: every exec
 * waits on this.
 */
export function lookupUserSync(name: string): LinuxUser {
  const { users, memberOf } = currentAccounts();
  const found = users.get(name);
  if (found === undefined) {
    throw new WrennError("unauthenticated", `user '${name}' does not exist in this sandbox`);
  }
  const groups = [found.gid];
  for (const id of memberOf.get(name) ?? []) if (!groups.includes(id)) groups.push(id);
  return { ...found, groups };
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
