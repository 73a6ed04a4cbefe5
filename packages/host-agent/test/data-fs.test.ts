/**
 * The data dir's xfs pool, for real: a sparse image, loop-mounted, reflinks
 * inside; mounted again after an unmount (a reboot); never made over files.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { createLogger } from "@wrenn/shared/log.ts";
import { mountDataFs, poolImage, prepareDataDir } from "../src/storage/data-fs.ts";
import { reflinkSupported } from "../src/storage/select.ts";

const log = createLogger("test", "warn");

async function hasTool(name: string): Promise<boolean> {
  return runCommand("sh", ["-c", `command -v ${name}`]).then(
    () => true,
    () => false,
  );
}

const skip =
  process.getuid?.() !== 0
    ? "needs root (loop mounts)"
    : !(await hasTool("mkfs.xfs"))
      ? "needs mkfs.xfs (wrenn setup installs xfsprogs)"
      : false;
if (skip) console.warn(`SKIPPED data-fs tests: ${skip}`);

async function loopsOf(image: string): Promise<string> {
  return (await runCommand("losetup", ["-j", image])).stdout.trim();
}

test(
  "a new data dir without reflinks gets an xfs pool that survives an unmount",
  { skip },
  async () => {
    const root = await mkdtemp(join(tmpdir(), "wrenn-datafs-"));
    const data = join(root, "data");
    const image = poolImage(data);
    try {
      if (await reflinkSupported(root)) {
        assert.equal(await prepareDataDir(data, { log }), "reflink");
        return;
      }
      assert.equal(await prepareDataDir(data, { log }), "pool-created");
      assert.ok((await stat(image)).blocks * 512 < 1024 ** 3, "the pool image is sparse");
      assert.ok(await reflinkSupported(data), "copies inside the pool are reflinks");
      await writeFile(join(data, "kept"), "yes");
      assert.equal(await prepareDataDir(data, { log }), "pool-mounted");

      // A reboot: the mount is gone, the image is not.
      await runCommand("umount", [data]);
      assert.equal(await loopsOf(image), "", "umount frees the loop device");
      assert.equal(await prepareDataDir(data, { log }), "pool-mounted");
      assert.equal(await readFile(join(data, "kept"), "utf8"), "yes");

      // Files in the way of the mount: refused, not hidden.
      await runCommand("umount", [data]);
      await writeFile(join(data, "stray"), "x");
      const err = await mountDataFs(data, { log }).catch((e: unknown) => e);
      assert.ok(err instanceof WrennError && err.code === "failed_precondition", String(err));
    } finally {
      await runCommand("umount", [data]).catch(() => undefined);
      await rm(root, { recursive: true, force: true });
      await rm(image, { force: true });
    }
    assert.equal(await loopsOf(image), "");
  },
);

test("a data dir that already holds files is left as it is", { skip }, async () => {
  const root = await mkdtemp(join(tmpdir(), "wrenn-datafs-"));
  const data = join(root, "data");
  try {
    if (await reflinkSupported(root)) return;
    await runCommand("mkdir", ["-p", data]);
    await writeFile(join(data, "images"), "x");
    assert.equal(await prepareDataDir(data, { log }), "plain");
    await assert.rejects(stat(poolImage(data)));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
