import { chown, lchown, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { LinuxUser } from "../users.ts";
import { fsError } from "./errors.ts";

/** envd runs as root in a sandbox; elsewhere (tests as a user) it cannot give files away. */
const canChown = process.getuid?.() === 0;

/** Gives a path to the user the request runs as, as E2B's envd does. */
export async function giveTo(path: string, user: LinuxUser): Promise<void> {
  if (!canChown) return;
  try {
    await lchown(path, user.uid, user.gid);
  } catch (err) {
    throw fsError(err, path);
  }
}

/**
 * `mkdir -p` whose newly created directories belong to the user (existing
 * ones keep their owner). Returns whether `path` itself was created.
 */
export async function makeDirsFor(path: string, user: LinuxUser): Promise<boolean> {
  let first: string | undefined;
  try {
    first = await mkdir(path, { recursive: true });
  } catch (err) {
    throw fsError(err, path);
  }
  if (first === undefined) return false;
  if (canChown) {
    // mkdir reports the first directory it created; everything below it is new too.
    for (let dir = path; ; dir = dirname(dir)) {
      await chown(dir, user.uid, user.gid).catch((err: unknown) => {
        throw fsError(err, dir);
      });
      if (dir === first || dir === dirname(dir)) break;
    }
  }
  return true;
}
