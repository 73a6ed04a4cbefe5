/**
 * The dirty set of a Firecracker Diff memory file. Firecracker writes only
 * the dirtied pages, at their offsets, into a sparse file; its data extents
 * are therefore the dirty blocks (read with native/uffd/extents, since Node
 * has no SEEK_DATA). A file system without hole support reports everything
 * as data: the diff gets larger, never wrong.
 */
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { Runner } from "@wrenn/shared/command.ts";
import { BLOCK_SIZE } from "./header.ts";
import { NATIVE_UFFD_DIR } from "./page-server.ts";

/** One bit per 4 KiB block of `size` bytes of memory, set where `path` has data. */
export async function dirtyFromSparseFile(
  path: string,
  size: number,
  runner: Runner,
): Promise<Uint8Array> {
  const { stdout } = await runner(join(NATIVE_UFFD_DIR, "extents"), [path]);
  const bitmap = new Uint8Array(Math.ceil(size / BLOCK_SIZE / 8));
  for (const line of stdout.split("\n")) {
    if (line === "") continue;
    const [offset, length] = line.split(" ").map(Number) as [number, number];
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset + length > size) {
      throw new WrennError(
        "invalid_argument",
        `diff memory file ${path} has data at [${offset}, +${length}), beyond guest memory of ${size} bytes`,
      );
    }
    const last = Math.ceil((offset + length) / BLOCK_SIZE);
    for (let b = Math.floor(offset / BLOCK_SIZE); b < last; b++) {
      bitmap[b >>> 3] = (bitmap[b >>> 3] as number) | (1 << (b & 7));
    }
  }
  return bitmap;
}
