/** Host resources the envd file tests create, each with its leak check. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { runCommand } from "@wrenn/shared/command.ts";
import { lookupUser, type LinuxUser } from "../src/users.ts";

export const isRoot = process.getuid?.() === 0;

/** Where cleanups go: a test's context, or a file-wide list run by an after() hook. */
export interface Scope {
  after(fn: () => unknown): void;
}

/** A Scope for resources shared by a whole file: `run()` in after() undoes them, newest first. */
export function fileScope(): Scope & { run(): Promise<void> } {
  const cleanups: (() => unknown)[] = [];
  return {
    after: (fn) => void cleanups.unshift(fn),
    run: async () => {
      for (const fn of cleanups.splice(0)) await fn();
    },
  };
}

/** A fresh directory, removed (and checked gone) when the test ends, also after a failure. */
export async function tempDir(t: Scope, prefix = "wrenn-fs-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(async () => {
    await rm(dir, { recursive: true, force: true });
    assert.equal(existsSync(dir), false, `${dir} leaked`);
  });
  return dir;
}

let userSeq = 0;

/**
 * A throwaway Linux account (root only) whose home is under `parent`, deleted
 * when the test ends. useradd takes /etc/passwd's lock, which parallel tests
 * may hold for a moment, so it retries.
 */
export async function tempUser(t: Scope, parent: string): Promise<LinuxUser> {
  const name = `wfs${process.pid % 100000}x${userSeq++}`;
  const home = join(parent, name);
  await mkdir(home);
  for (let attempt = 0; ; attempt++) {
    try {
      await runCommand("useradd", ["-M", "-d", home, "-s", "/bin/sh", "-U", name]);
      break;
    } catch (err) {
      if (attempt >= 20) throw err;
      await sleep(100);
    }
  }
  t.after(async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        await runCommand("userdel", [name]);
        break;
      } catch (err) {
        if (attempt >= 20) throw err;
        await sleep(100);
      }
    }
    const passwd = await readFile("/etc/passwd", "utf8");
    const group = await readFile("/etc/group", "utf8");
    assert.equal(
      passwd.split("\n").some((l) => l.startsWith(`${name}:`)),
      false,
      `user ${name} leaked`,
    );
    assert.equal(
      group.split("\n").some((l) => l.startsWith(`${name}:`)),
      false,
      `group ${name} leaked`,
    );
  });
  const user = await lookupUser(name);
  await runCommand("chown", [`${user.uid}:${user.gid}`, home]);
  return user;
}

/** Inotify watches this process holds (all libuv watchers share one inotify fd). */
export async function inotifyWatches(): Promise<number> {
  let count = 0;
  for (const fd of await readdir("/proc/self/fd")) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
    if (target !== "anon_inode:inotify") continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, "utf8").catch(() => "");
    count += info.split("\n").filter((l) => l.startsWith("inotify wd:")).length;
  }
  return count;
}

/** Polls until `check` passes (returns true) or fails after `ms`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 5000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function basicAuth(user: string): string {
  return `Basic ${Buffer.from(`${user}:`).toString("base64")}`;
}
