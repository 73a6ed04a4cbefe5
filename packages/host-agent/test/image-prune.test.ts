/**
 * `wrenn image prune`: what image rebuilds leave behind (old base images,
 * boot snapshots of an old image or kernel) is found, and removed only when
 * no sandbox recorded in the named data dirs uses it. Plain files stand in
 * for images: nothing here boots.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { findLeftovers, removeUnused, staleBootSnapshots } from "../src/image/prune.ts";
import { liveAgents } from "../src/network/claim.ts";
import { imagePathsInUse } from "../src/sandbox/records.ts";
import { bootSnapshotsDir } from "../src/image/store.ts";

const repo = resolve(import.meta.dirname, "../../..");
let root = "";
let images = "";
let data = "";

async function file(path: string, bytes = 4096): Promise<string> {
  await mkdir(join(path, ".."), { recursive: true });
  await writeFile(path, Buffer.alloc(bytes, 1));
  return path;
}

async function bootSnapshot(
  name: string,
  source?: { rootfs: string; kernel: string },
  under = join(images, "boot-snapshots"),
) {
  const dir = join(under, name);
  await file(join(dir, "rootfs.ext4"));
  await file(join(dir, "memfile"));
  await writeFile(
    join(dir, "meta.json"),
    JSON.stringify({ name, baseTemplate: "minimal", ...(source ? { source } : {}) }),
  );
  return dir;
}

async function sandbox(id: string, basePath: string, bootSnapshot: string | null = null) {
  const dir = join(data, "sandboxes", id);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "record.json"), JSON.stringify({ id, basePath, bootSnapshot }));
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "wrenn-prune-"));
  images = join(root, "images-dir");
  data = join(root, "data");
  const kernel = join(images, "kernels", "v1");
  await file(join(kernel, "vmlinuz"));
  await file(join(kernel, "vmlinux"));
  await symlink("v1", join(images, "kernels", "current"));
  const t = join(images, "images", "minimal");
  await file(join(t, "rootfs-aaaa.ext4"));
  await file(join(t, "rootfs-bbbb.ext4"));
  await file(join(t, "rootfs-cccc.ext4"));
  await symlink("rootfs-cccc.ext4", join(t, "rootfs.ext4"));
  const current = {
    rootfs: await realpath(join(t, "rootfs-cccc.ext4")),
    kernel: await realpath(join(kernel, "vmlinuz")),
  };
  await bootSnapshot("current", current);
  const old = await bootSnapshot("oldimage", {
    ...current,
    rootfs: await realpath(join(t, "rootfs-aaaa.ext4")),
  });
  await bootSnapshot("oldkernel", { ...current, kernel: "/gone/vmlinuz" });
  await bootSnapshot("legacy");
  await mkdir(join(images, "boot-snapshots", ".building-x-1-1"), { recursive: true });
  // Another agent's boot snapshots of the same images (the tests' own dir).
  const others = join(root, "test-boot-snapshots");
  await bootSnapshot("current", current, others);
  await bootSnapshot("oldimage", { ...current, rootfs: join(t, "rootfs-bbbb.ext4") }, others);
  await sandbox("s1", join(t, "rootfs-aaaa.ext4"));
  await sandbox("s2", join(old, "rootfs.ext4"), "oldimage");
});
after(() => rm(root, { recursive: true, force: true }));

/** What the sandboxes recorded in `dirs` use, as the CLI reads it. */
const inUse = (dirs: string[]) => imagePathsInUse(dirs, bootSnapshotsDir(images));

test("leftovers: old images and stale boot snapshots, each with the sandboxes that use it", async () => {
  const found = await findLeftovers(images, await inUse([data]));
  const t = join(images, "images", "minimal");
  const snaps = join(images, "boot-snapshots");
  assert.deepEqual(
    found.map((l) => [l.path, l.usedBy]).sort(),
    [
      [join(snaps, "legacy"), []],
      [join(snaps, "oldimage"), ["s2"]],
      [join(snaps, "oldkernel"), []],
      [join(t, "rootfs-aaaa.ext4"), ["s1"]],
      [join(t, "rootfs-bbbb.ext4"), []],
    ].sort(),
  );
  assert.ok(found.every((l) => l.bytes > 0));
  // Without the data dir, nothing is known to be in use.
  assert.ok((await findLeftovers(images, await inUse([]))).every((l) => l.usedBy.length === 0));
});

test("the CLI's dry run lists them and removes nothing", () => {
  const res = spawnSync(join(repo, "wrenn"), ["image", "prune", "--dry-run", "--data-dir", data], {
    cwd: repo,
    encoding: "utf8",
    env: { ...process.env, WRENN_DATA_DIR: images },
  });
  assert.equal(res.status, 0, res.stderr);
  assert.match(
    res.stdout,
    /rootfs-aaaa\.ext4: an old image of template 'minimal', 0 MiB — kept, used by s1/,
  );
  assert.match(res.stdout, /rootfs-bbbb\.ext4: .* — would be removed/);
  assert.match(res.stdout, /3 of 5 leftovers would free/);
  assert.ok(existsSync(join(images, "images", "minimal", "rootfs-bbbb.ext4")));
});

test("another agent's boot snapshot dir: those of an old image are stale, the current one is not", async () => {
  const others = join(root, "test-boot-snapshots");
  const stale = await staleBootSnapshots(others, images);
  assert.deepEqual(
    stale.map((l) => [l.path, l.what, l.usedBy]),
    [[join(others, "oldimage"), "a boot snapshot of an old image or kernel", []]],
  );
  assert.ok(stale[0]!.bytes > 0, "its size is counted");
});

test("only what no sandbox uses is removed; the current image and snapshot stay", async () => {
  await removeUnused(await findLeftovers(images, await inUse([data])));
  const t = join(images, "images", "minimal");
  const snaps = join(images, "boot-snapshots");
  for (const gone of [
    join(t, "rootfs-bbbb.ext4"),
    join(snaps, "legacy"),
    join(snaps, "oldkernel"),
  ]) {
    assert.equal(existsSync(gone), false, gone);
  }
  for (const kept of [
    join(t, "rootfs-aaaa.ext4"),
    join(t, "rootfs-cccc.ext4"),
    join(snaps, "current"),
    join(snaps, "oldimage"),
    join(snaps, ".building-x-1-1"),
  ]) {
    assert.ok(existsSync(kept), kept);
  }
});

test("live agents are told by their network prefix claims", async () => {
  const claims = join(root, "claims");
  await mkdir(claims);
  await writeFile(join(claims, "network-wa.pid"), `${process.pid}\n`);
  await writeFile(join(claims, "network-wb.pid"), `${2 ** 22 + 1}\n`);
  await writeFile(join(claims, "other.pid"), `${process.pid}\n`);
  assert.deepEqual(await liveAgents(claims), [process.pid]);
});
