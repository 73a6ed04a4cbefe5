/**
 * Fixtures for the storage tests: small real ext4 images, a scratch dir per
 * test, and a leak check (loop devices, mounts, files) that runs after every
 * test — also when the test failed.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { runCommand } from "@wrenn/shared/command.ts";
import { assertNoLeaks, snapshotHostResources } from "./leaks.ts";

export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(dir));
}

export interface Scratch {
  root: string;
  /** Where the drivers put sandbox and keep dirs; must be empty again after the test. */
  work: string;
}

/**
 * A scratch dir for one test. Afterwards: unmounts anything left under it
 * (reporting it), then asserts no loop device backed by a file in it and no
 * file left under `work` (empty directories are fine), and removes it.
 */
export async function scratch(t: TestContext, label: string): Promise<Scratch> {
  const root = await mkdtemp(join(tmpdir(), `wrenn-storage-${label}-`));
  const work = join(root, "work");
  await mkdir(work);
  const before = await snapshotHostResources({
    prefix: "wrenn-storage-test-",
    markers: [root],
    dirs: [work],
  });
  t.after(async () => {
    const mounts = await mountsUnder(root);
    for (const m of mounts.reverse()) await runCommand("umount", [m]).catch(() => undefined);
    try {
      // Directories are the manager's; files left in them are leaks.
      await removeEmptyDirs(work).catch(() => undefined);
      assert.deepEqual(mounts, [], "mounts leaked");
      // A loop mount's device goes away asynchronously after umount.
      await assertNoLeaks(before, { settleMs: 5000 });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
  return { root, work };
}

/** An ext4 image of `sizeMb` holding `files` (made with mkfs.ext4 -d, no mount). */
export async function makeExt4(
  dir: string,
  name: string,
  sizeMb: number,
  files: Record<string, string | Buffer>,
): Promise<string> {
  const src = join(dir, `${name}.src`);
  await mkdir(src, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(src, path, ".."), { recursive: true });
    await writeFile(join(src, path), content);
  }
  const image = join(dir, `${name}.ext4`);
  await runCommand("mkfs.ext4", ["-q", "-F", "-b", "4096", "-d", src, image, `${sizeMb}M`]);
  await rm(src, { recursive: true });
  return image;
}

/** A file's contents inside an ext4 image, read with debugfs (no mount). */
export async function readExt4(image: string, path: string): Promise<string> {
  const { stdout } = await runCommand("debugfs", ["-R", `cat ${path}`, image]);
  return stdout;
}

/** Writes a file into an ext4 image (no mount), as a guest would. */
export async function writeExt4(
  image: string,
  path: string,
  content: string,
  scratchDir: string,
): Promise<void> {
  const local = join(scratchDir, `debugfs-write-${process.hrtime.bigint()}`);
  await writeFile(local, content);
  try {
    await runCommand("debugfs", ["-w", "-R", `write ${local} ${path}`, image]);
  } finally {
    await rm(local, { force: true });
  }
}

/** Runs e2fsck -fn: throws unless the filesystem is clean. */
export async function assertFsckClean(image: string): Promise<void> {
  await runCommand("e2fsck", ["-fn", image]);
}

export function skipWithout(t: TestContext, tools: string[], have: Set<string>): boolean {
  const missing = tools.filter((x) => !have.has(x));
  if (missing.length === 0) return false;
  const reason = `SKIPPED: ${missing.join(", ")} not installed (apt-get install qemu-utils btrfs-progs e2fsprogs)`;
  console.warn(`\n!!! ${t.name}: ${reason}\n`);
  t.skip(reason);
  return true;
}

/** Which of `tools` are on PATH. */
export async function installed(tools: string[]): Promise<Set<string>> {
  const have = new Set<string>();
  for (const tool of tools) {
    try {
      await runCommand("sh", ["-c", `command -v ${tool}`]);
      have.add(tool);
    } catch {
      // missing
    }
  }
  return have;
}

/**
 * Removes the (sandbox, keep) directories a test made under `dir` with rmdir,
 * which fails if a driver left a file in one of them.
 */
export async function removeEmptyDirs(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(dir, entry.name);
    await removeEmptyDirs(path);
    await rmdir(path);
  }
}
