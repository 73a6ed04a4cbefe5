/**
 * `./wrenn` on a machine without Node.js: it must say what it installs and
 * install Debian's nodejs and npm (as root, with apt) just to run `npm ci`.
 * The script runs from a copy with no node_modules beside it, on a PATH with
 * the build tools but no node or npm, and a stand-in apt-get that records
 * what it was asked and fails to install (so nothing is installed here).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  symlink,
  writeFile,
  chmod,
} from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repo } from "./wrenn-binary.ts";

async function fakeMachine(): Promise<{ root: string; bin: string; log: string }> {
  const root = await mkdtemp(join(tmpdir(), "wrenn-bootstrap-"));
  await chmod(root, 0o755);
  const bin = join(root, "bin");
  await mkdir(bin);
  for (const tool of ["sh", "dirname", "readlink", "id", "g++", "make", "python3"]) {
    const real = ["/usr/bin", "/bin"].map((d) => join(d, tool)).find(existsSync);
    if (real) await symlink(real, join(bin, tool));
  }
  const log = join(root, "apt.log");
  await writeFile(join(bin, "apt-get"), `#!/bin/sh\necho "$*" >> ${log}\n[ "$1" = update ]\n`, {
    mode: 0o755,
  });
  await copyFile(join(repo, "wrenn"), join(root, "wrenn"));
  await chmod(join(root, "wrenn"), 0o755);
  return { root, bin, log };
}

test(
  "./wrenn without node and npm: installs Debian's nodejs and npm with apt, saying so",
  { timeout: 30_000 },
  async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip("needs root: the script installs with apt only as root");
      return;
    }
    const m = await fakeMachine();
    try {
      const r = spawnSync(join(m.root, "wrenn"), ["--help"], {
        env: { PATH: m.bin },
        encoding: "utf8",
      });
      assert.notEqual(r.status, 0, "the stand-in apt-get fails");
      assert.match(r.stderr, /installing with apt what the first 'npm ci' needs: nodejs npm/);
      assert.match(r.stderr, /Debian's nodejs and npm only run that install/);
      const calls = (await readFile(m.log, "utf8")).trim().split("\n");
      assert.deepEqual(calls, ["update -q", "install -y -q --no-install-recommends nodejs npm"]);
    } finally {
      await rm(m.root, { recursive: true, force: true });
    }
  },
);

test(
  "./wrenn without node and npm, not root: says what to install, exits 1",
  { timeout: 30_000 },
  async (t) => {
    if (process.getuid?.() !== 0 || !existsSync("/usr/bin/setpriv")) {
      t.skip("needs root and setpriv to run the script as nobody");
      return;
    }
    const m = await fakeMachine();
    try {
      const r = spawnSync(
        "/usr/bin/setpriv",
        ["--reuid=65534", "--regid=65534", "--clear-groups", join(m.root, "wrenn"), "--help"],
        { env: { PATH: m.bin }, encoding: "utf8" },
      );
      assert.equal(r.status, 1);
      assert.match(r.stderr, /the first run needs nodejs npm; install them/);
      assert.ok(!existsSync(m.log), "apt-get is not run by a non-root user");
    } finally {
      await rm(m.root, { recursive: true, force: true });
    }
  },
);
