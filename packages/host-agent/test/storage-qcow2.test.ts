import assert from "node:assert/strict";
import { copyFile, readdir, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { CommandError, runCommand, type Runner } from "@wrenn/shared/command.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { Qcow2Storage } from "../src/storage/qcow2.ts";
import { KEEP_META, readKeepMeta } from "../src/storage/keep.ts";
import {
  assertFsckClean,
  installed,
  makeExt4,
  readExt4,
  scratch,
  skipWithout,
  writeExt4,
} from "./storage-fixtures.ts";

const log = createLogger("storage-test", "silent");
const MIB = 1024 * 1024;
const have = await installed(["qemu-img", "mkfs.ext4", "debugfs"]);
const TOOLS = ["qemu-img", "mkfs.ext4", "debugfs"];

async function qemuInfo(
  path: string,
): Promise<{ "virtual-size": number; "backing-filename"?: string; format: string }> {
  const { stdout } = await runCommand("qemu-img", ["info", "-U", "--output=json", path]);
  return JSON.parse(stdout) as {
    "virtual-size": number;
    "backing-filename"?: string;
    format: string;
  };
}

/**
 * Makes the overlay read as `image` (a raw disk with the guest's changes): point
 * it at `image` without copying, then rebase back onto the base, which writes
 * exactly the clusters that differ into the overlay — what a guest would have.
 */
async function writeThroughOverlay(overlay: string, image: string, base: string): Promise<void> {
  await runCommand("qemu-img", ["rebase", "-u", "-b", image, "-F", "raw", overlay]);
  await runCommand("qemu-img", ["rebase", "-b", base, "-F", "raw", overlay]);
}

test("qcow2: create, write, detach, attach, flatten, destroy", async (t) => {
  if (skipWithout(t, TOOLS, have)) return;
  const { root, work } = await scratch(t, "qcow2");
  const basePath = await makeExt4(root, "base", 24, { "etc/hello": "from the base\n" });
  const base = { name: "minimal", path: basePath };
  const storage = new Qcow2Storage({ log });
  const dir = join(work, "sb1");

  const disk = await storage.create("sb1", base, 256, dir);
  assert.equal(disk.format, "qcow2");
  assert.equal(disk.path, join(dir, "rootfs.qcow2"));
  const info = await qemuInfo(disk.path);
  assert.equal(info["virtual-size"], 256 * MIB);
  assert.equal(info["backing-filename"], basePath);
  assert.ok((await storage.usage(disk)) < 1 * MIB, "a fresh overlay holds almost nothing");

  // The guest grows its filesystem at boot and writes a file.
  const guestView = join(root, "guest-view.raw");
  await copyFile(basePath, guestView);
  await truncate(guestView, 256 * MIB);
  await runCommand("e2fsck", ["-fy", guestView]);
  await runCommand("resize2fs", [guestView]);
  await writeExt4(guestView, "/root-note", "written in the sandbox\n", root);
  await writeThroughOverlay(disk.path, guestView, basePath);
  const used = await storage.usage(disk);
  assert.ok(used > 0 && used === (await stat(disk.path)).blocks * 512, "usage is allocated bytes");

  const keep = join(work, "keep-sb1");
  const paused = await storage.detach(disk, keep);
  assert.deepEqual((await readdir(dir)).sort(), []);
  assert.deepEqual((await readdir(keep)).sort(), [KEEP_META, "rootfs.qcow2"]);
  const meta = await readKeepMeta(keep);
  assert.equal(meta.baseName, "minimal");
  assert.equal(meta.basePath, basePath);
  assert.equal(await storage.detach(paused, keep), paused, "detach is idempotent");

  // Flatten works on a paused disk as well.
  const tmpl = join(work, "tmpl.ext4");
  await storage.flatten(paused, tmpl);
  const out = await stat(tmpl);
  assert.ok(out.size < (256 * MIB) / 2, `flattened image is shrunk (${out.size} bytes)`);
  assert.ok(out.blocks * 512 <= out.size, "flattened image is sparse");
  await assertFsckClean(tmpl);
  assert.equal(await readExt4(tmpl, "/etc/hello"), "from the base\n");
  assert.equal(await readExt4(tmpl, "/root-note"), "written in the sandbox\n");

  // Memory-snapshot templates keep the disk byte for byte: no fsck, no shrink.
  const exact = join(work, "exact.raw");
  await storage.flatten(paused, exact, { shrink: false });
  const ex = await stat(exact);
  assert.equal(ex.size, 256 * MIB, "unshrunk image keeps the virtual size");
  assert.ok(ex.blocks * 512 < 64 * MIB, "and is sparse");
  assert.equal(await readExt4(exact, "/root-note"), "written in the sandbox\n");
  await runCommand("rm", ["-f", exact]);

  await assert.rejects(
    storage.attach(paused, { name: "other", path: basePath }),
    /belongs on template 'minimal'/,
  );
  const resumed = await storage.attach(paused, base);
  assert.equal(resumed.path, disk.path);
  assert.deepEqual(
    (await readdir(keep)).sort(),
    [KEEP_META, "rootfs.qcow2"],
    "the pause stays whole until the resume commits",
  );
  await storage.dropKept(paused);
  assert.deepEqual(await readdir(keep), [], "a committed resume empties the keep dir");
  const again = join(root, "again.raw");
  await runCommand("qemu-img", ["convert", "-O", "raw", resumed.path, again]);
  assert.equal(await readExt4(again, "/root-note"), "written in the sandbox\n");

  await storage.destroy(resumed);
  await storage.destroy(resumed);
  assert.deepEqual(await readdir(dir), []);
  for (const f of [tmpl, again]) await runCommand("rm", ["-f", f]);
  await runCommand("rm", ["-rf", dir, keep]);
});

test("qcow2: attach rebases an overlay whose base image moved", async (t) => {
  if (skipWithout(t, TOOLS, have)) return;
  const { root, work } = await scratch(t, "qcow2-rebase");
  const basePath = await makeExt4(root, "base", 16, { hi: "hi\n" });
  const storage = new Qcow2Storage({ log });
  const disk = await storage.create("sb2", { name: "t", path: basePath }, 64, join(work, "sb2"));
  const paused = await storage.detach(disk, join(work, "keep"));
  const moved = join(root, "moved.ext4");
  await runCommand("mv", [basePath, moved]);
  const resumed = await storage.attach(paused, { name: "t", path: moved });
  assert.equal((await qemuInfo(resumed.path))["backing-filename"], moved);
  await storage.destroy(resumed);
  await runCommand("rm", ["-rf", join(work, "sb2"), join(work, "keep")]);
});

test("qcow2: failures midway leave no files behind", async (t) => {
  if (skipWithout(t, TOOLS, have)) return;
  const { root, work } = await scratch(t, "qcow2-fail");
  const basePath = await makeExt4(root, "base", 16, { hi: "hi\n" });
  const base = { name: "t", path: basePath };
  let failOn = "";
  const runner: Runner = async (cmd, args, opts) => {
    const line = [cmd, ...args].join(" ");
    if (failOn && line.startsWith(failOn)) {
      // Let the real command start its output file first, as a crash midway would.
      await runCommand(cmd, args, opts).catch(() => undefined);
      throw new CommandError(line, 1, "injected failure");
    }
    return runCommand(cmd, args, opts);
  };
  const storage = new Qcow2Storage({ runner, log });
  const dir = join(work, "sb3");

  failOn = "qemu-img create";
  await assert.rejects(storage.create("sb3", base, 64, dir), /injected failure/);
  assert.deepEqual(await readdir(dir), []);

  await assert.rejects(storage.create("sb3", base, 8, dir), /smaller than base image/);

  failOn = "";
  const disk = await storage.create("sb3", base, 64, dir);
  for (const step of ["qemu-img convert", "resize2fs -M", "dumpe2fs"]) {
    failOn = step;
    await assert.rejects(storage.flatten(disk, join(work, "out.ext4")), /injected failure/);
    assert.deepEqual(
      (await readdir(work)).sort(),
      ["sb3"],
      `no partial image after ${step} failed`,
    );
  }
  failOn = "";
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(storage.create("sb4", base, 64, join(work, "sb4"), { signal: ac.signal }), {
    code: "cancelled",
  });
  await storage.destroy(disk);
  await runCommand("rm", ["-rf", dir, join(work, "sb4")]);
});

test("qcow2: growBase grows a real ext4 image sparsely, and not while an overlay reads it", async (t) => {
  if (skipWithout(t, TOOLS, have)) return;
  const { root, work } = await scratch(t, "qcow2-grow");
  const basePath = await makeExt4(root, "base", 16, { "etc/hello": "hi\n" });
  const base = { name: "t", path: basePath };
  const storage = new Qcow2Storage({ log });
  const before = await stat(basePath);
  await storage.growBase(base, 512);
  const after = await stat(basePath);
  assert.equal(after.size, 512 * MIB);
  assert.ok(
    after.blocks * 512 - before.blocks * 512 < 8 * MIB,
    `growing allocates only new metadata (${after.blocks * 512 - before.blocks * 512} bytes)`,
  );
  await assertFsckClean(basePath);
  const { stdout } = await runCommand("dumpe2fs", ["-h", basePath]);
  assert.match(stdout, /Block count:\s+131072/, "the filesystem fills the image");
  assert.equal(await readExt4(basePath, "/etc/hello"), "hi\n");

  const disk = await storage.create("g", base, 1024, join(work, "g"));
  await assert.rejects(storage.growBase(base, 1024), { code: "failed_precondition" });
  const paused = await storage.detach(disk, join(work, "keep"));
  await storage.growBase(base, 600);
  await storage.destroy(paused);
});
