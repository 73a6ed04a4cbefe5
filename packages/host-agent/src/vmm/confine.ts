/**
 * What a VMM runs as: a uid:gid of its own (`vmmIdentity`), which no other
 * VMM on the host holds at the same time and no user in /etc/passwd has, so
 * a guest that escapes into its VMM holds no root and cannot open another
 * sandbox's disk (it can read the other VMM's command line in /proc, and the
 * directories on the way are searchable, but the disk is that VMM's uid's
 * alone, mode 0600). The VMM opens its disk, TAP, sockets and RAM file as
 * root at start and drops to its uid before the guest runs; what it opens
 * afterwards — a pause's state file through `exec:cat`, a restore's disk
 * reopened read-write — must be reachable by that uid, which `grantTraverse`
 * and `handOver` arrange, and `giveBack` undoes once the VMM is gone.
 */
import { chmod, chown, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";

/**
 * The first uid (and gid) a VMM may run as: far above any real user's and
 * above the usual container sub-uid ranges (100000 + 65536 per user).
 */
export const VMM_UID_BASE = 2 ** 30;
/**
 * The kernel numbers every namespace's inode from here (PROC_DYNAMIC_FIRST),
 * one host-wide counter that hands out the lowest free number: below 2^28
 * above it in practice, so base + (inode - first) stays a valid uid.
 */
const NS_INODE_FIRST = 0xf0000000;
const NS_INODE_SPAN = 2 ** 28;
/** Where `ip netns add` pins named namespaces. */
export const NETNS_DIR = "/run/netns";

export interface VmmUser {
  name: string;
  uid: number;
  gid: number;
}

/**
 * The uid:gid a VMM in network namespace `netns` runs as: VMM_UID_BASE plus
 * the namespace's inode number (less the kernel's first). Why this and not a
 * counter of our own: every VM has a namespace of its own while it runs (its
 * TAP takes one VMM), and the kernel keeps namespace inode numbers unique
 * host-wide, across agents (each with its own network prefix) and agent
 * restarts, with no state of ours to lose or to keep in a record; a running
 * VM keeps its uid (adopt reads it back from the process), and a VM restored
 * into another slot gets that slot's. A number is reused only once its
 * namespace is gone, and by then its VMM is too and `giveBack` has returned
 * what it held.
 */
export async function vmmIdentity(netns: string): Promise<VmmUser> {
  if (!netns) {
    throw new WrennError(
      "failed_precondition",
      "a confined VMM needs a network namespace of its own: its uid is derived from it",
    );
  }
  const at = `${NETNS_DIR}/${netns}`;
  const ino = await stat(at).then(
    (st) => st.ino,
    (err: NodeJS.ErrnoException) => {
      throw new WrennError(
        err.code === "ENOENT" ? "failed_precondition" : "internal",
        `the VM's network namespace ${netns} cannot be read (${at}: ${err.code ?? err.message})`,
        { cause: err },
      );
    },
  );
  if (ino < NS_INODE_FIRST || ino >= NS_INODE_FIRST + NS_INODE_SPAN) {
    throw new WrennError(
      "failed_precondition",
      `${at} is not a network namespace the kernel made (inode ${ino}); a VMM cannot get a uid from it`,
    );
  }
  const uid = VMM_UID_BASE + (ino - NS_INODE_FIRST);
  const named = await namedId(uid);
  if (named) {
    throw new WrennError(
      "failed_precondition",
      `uid/gid ${uid}, the one the VMM in ${netns} would run as, belongs to ${named}: ` +
        `wrenn keeps uids from ${VMM_UID_BASE} up for its VMMs; move that account out of the range`,
    );
  }
  return { name: `${uid}:${uid}`, uid, gid: uid };
}

/** The passwd user or group that names `id`, if one does. */
async function namedId(id: number): Promise<string | null> {
  for (const [file, what] of [
    ["/etc/passwd", "user"],
    ["/etc/group", "group"],
  ] as const) {
    const text = await readFile(file, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      const [name, , num] = line.split(":");
      if (name && num === String(id)) return `${what} ${name} (${file})`;
    }
  }
  return null;
}

/** The real uid and gid a running process has (a VMM re-adopted after an agent restart). */
export async function identityOf(pid: number): Promise<VmmUser | null> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => null);
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s*(\\d+)`, "m").exec(status ?? "")?.[1] ?? NaN);
  const uid = field("Uid");
  const gid = field("Gid");
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) return null;
  return { name: `${uid}:${gid}`, uid, gid };
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

/**
 * Gives a file to the VMM's uid (a state file its `cat` appends to, a disk
 * it reopens), for it alone: mode 0600.
 */
export async function handOver(path: string, user: VmmUser): Promise<void> {
  await chown(path, user.uid, user.gid);
  await chmod(path, 0o600);
}

/**
 * Returns a file a gone VMM held to root, so whichever VMM gets its uid
 * next finds nothing of this one's. Only while `user` still owns it: a new
 * VMM may already have been handed the same file.
 */
export async function giveBack(path: string, user: VmmUser): Promise<void> {
  try {
    const st = await stat(path);
    if (st.uid === user.uid) await chown(path, 0, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
