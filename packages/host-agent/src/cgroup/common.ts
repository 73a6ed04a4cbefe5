/** What both cgroup drivers do the same way: directories that are removed once empty. */
import { mkdir, readdir, rmdir, stat, writeFile } from "node:fs/promises";

/** The parent group every sandbox's group lives under. */
export const CGROUP_PARENT = "wrenn";

/** Names a group may have: a VM id, nothing that walks out of the parent. */
export function checkName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name)) {
    throw new Error(`not a cgroup name: '${name}'`);
  }
  return name;
}

export async function ensureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
}

export async function put(file: string, value: string | number): Promise<void> {
  await writeFile(file, String(value));
}

/** rmdir, retried for 2 s while the group still holds an exiting process (EBUSY). */
export async function removeDir(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY" || i >= 100) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Child groups of `dir` (cgroupfs lists a group's children as its only subdirectories). */
export async function children(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

/**
 * A group this young may be one another agent on the host is filling: its
 * VMM joins a few milliseconds after the mkdir, and a sweep in between would
 * pull the group from under it.
 */
export const STALE_GROUP_MS = 60_000;

/**
 * Tries rmdir once on a group older than STALE_GROUP_MS: a group with
 * processes refuses (EBUSY) and is left as it is.
 */
export async function removeIfStale(dir: string): Promise<boolean> {
  try {
    if (Date.now() - (await stat(dir)).mtimeMs < STALE_GROUP_MS) return false;
    await rmdir(dir);
    return true;
  } catch {
    return false;
  }
}
