import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { runCommand } from "@wrenn/shared/command.ts";
import { dataRanges, readAhead } from "../src/util/fs.ts";
import { installed, scratch, skipWithout } from "./storage-fixtures.ts";

const MIB = 1024 * 1024;
const have = await installed(["xfs_io", "fincore"]);

test("dataRanges: data rows up to the next hole; close ranges merged; the header skipped", () => {
  const table =
    "Whence\tResult\nDATA\t0\nHOLE\t8192\nDATA\t28672\nHOLE\t32768\nDATA\t1048576\nHOLE\t2097152\n";
  assert.deepEqual(dataRanges(table), [
    [0, 8192],
    [28672, 4096],
    [1048576, 1048576],
  ]);
  // A 20 KiB hole under a 64 KiB gap is read with its neighbours; the 1 MiB one is not.
  assert.deepEqual(dataRanges(table, 64 * 1024), [
    [0, 32768],
    [1048576, 1048576],
  ]);
  assert.deepEqual(dataRanges("Whence\tResult\nHOLE\t0\n"), []);
  assert.deepEqual(dataRanges(""), []);
});

/** Resident bytes of `path` in the page cache (util-linux's fincore). */
async function resident(path: string): Promise<number> {
  const r = await runCommand("fincore", ["--bytes", "--noheadings", "--output", "RES", path]);
  return Number(r.stdout.trim());
}

/** The ranges of `path`'s first `size` bytes in the page cache (xfs_io's mincore), as `[offset, length]`. */
async function cachedRanges(path: string, size: number): Promise<Array<[number, number]>> {
  const r = await runCommand("xfs_io", ["-r", "-c", `mmap -r 0 ${size}`, "-c", "mincore", path]);
  return [...r.stdout.matchAll(/\((\d+) : (\d+)\)/g)].map((m) => [Number(m[1]), Number(m[2])]);
}

test("readAhead: reads a sparse file's data into the page cache, not its holes", async (t) => {
  if (skipWithout(t, ["xfs_io", "fincore"], have)) return;
  const { work } = await scratch(t, "read-ahead");
  const path = join(work, "mem");
  try {
    await checkReadAhead(path, work);
  } finally {
    await rm(path, { force: true });
  }
});

async function checkReadAhead(path: string, work: string): Promise<void> {
  // As a guest's RAM file: 256 MiB, of which two 8 MiB runs were written.
  await writeFile(path, "");
  const fh = await open(path, "r+");
  try {
    await fh.truncate(256 * MIB);
    await fh.write(randomBytes(8 * MIB), 0, 8 * MIB, 0);
    await fh.write(randomBytes(8 * MIB), 0, 8 * MIB, 64 * MIB);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await runCommand("xfs_io", ["-c", `fadvise -d 0 ${256 * MIB}`, path]);
  assert.equal(await resident(path), 0, "the file's pages were not dropped first");

  await readAhead(path, runCommand);
  const cached = await cachedRanges(path, 256 * MIB);
  for (const [at, length] of [
    [0, 8 * MIB],
    [64 * MIB, 8 * MIB],
  ] as const) {
    assert.ok(
      cached.some(([from, n]) => from <= at && at + length <= from + n),
      `${length} bytes at ${at} were not read: cached ${JSON.stringify(cached)}`,
    );
  }
  const res = await resident(path);
  // The kernel's own readahead runs on past a run's end (by up to its
  // window, 8 MiB on some disks), but not through the file.
  assert.ok(res < 64 * MIB, `the holes were read too: ${res} bytes resident`);

  await assert.rejects(readAhead(join(work, "a b"), runCommand), { code: "invalid_argument" });
  await assert.rejects(readAhead(join(work, "missing"), runCommand));
}
