/**
 * Writes memory snapshots in the generational layout:
 *   - Full: only the non-zero 4 KiB blocks of the image, in order, in
 *     `memfile.<buildId>`; zero blocks map to the nil build id.
 *   - Diff: only the blocks dirtied since the parent, in a new
 *     `memfile.<buildId>`, its mapping laid over the parent's; generation + 1.
 *   - After `maxGenerations` diffs the chain collapses into one Full.
 * All IO is chunked, so a large guest never needs its size in JS heap.
 *
 * Over 400 lines on purpose: Full and Diff share the chunk loop, the
 * zero-block test, the data-file commit and the pruning of unreferenced
 * generations; split, each half would import the other's internals.
 */
import {
  link,
  copyFile,
  open,
  readdir,
  rename,
  stat,
  unlink,
  type FileHandle,
} from "node:fs/promises";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { WrennError } from "@wrenn/shared/errors.ts";
import { createLogger, timed, type Logger } from "@wrenn/shared/log.ts";
import {
  BLOCK_SIZE,
  HEADER_FILE,
  HEADER_VERSION,
  NIL_BUILD_ID,
  dataFileName,
  encodeHeader,
  isBuildId,
  referencedBuildIds,
  type Header,
} from "./header.ts";
import { MappingBuilder, overlayMapping } from "./mapping.ts";
import { DEFAULT_CHUNK_BYTES, openSnapshot, readFully, type SnapshotReader } from "./reader.ts";

const log = createLogger("snapshot");

/** Diffs chain this many generations deep before the next one is a Full again. */
export const DEFAULT_MAX_GENERATIONS = 10;

export interface WriteResult {
  header: Header;
  kind: "full" | "diff";
  /** Bytes written to this generation's data file. */
  dataBytes: number;
}

export interface FullOptions {
  /** The raw guest memory image (its size is the memory size). */
  imagePath: string;
  /** Snapshot directory; gets `memfile.<buildId>` and `memfile.header`. */
  dir: string;
  chunkBytes?: number;
  /** The caller's logger (carrying its sandbox id); default a "snapshot" one. */
  log?: Logger;
}

export interface DiffOptions {
  /**
   * The guest memory after the change. With `dirty`, only the dirty blocks
   * of it are read (a Firecracker diff file holds nothing else); without,
   * it must be the complete image and is compared with the parent (QEMU).
   */
  imagePath: string;
  dir: string;
  /** Where the parent snapshot lives; default `dir`. Its data files are hard-linked into `dir`. */
  parentDir?: string;
  /** One bit per 4 KiB block, LSB first (KVM's dirty-log layout). */
  dirty?: Uint8Array;
  maxGenerations?: number;
  chunkBytes?: number;
  /** The caller's logger (carrying its sandbox id); default a "snapshot" one. */
  log?: Logger;
}

/** A bitmap with the given blocks set, sized for `size` bytes of memory. */
export function dirtyBitmap(size: number, blocks: Iterable<number>): Uint8Array {
  const bitmap = new Uint8Array(Math.ceil(size / BLOCK_SIZE / 8));
  for (const b of blocks) bitmap[b >>> 3] = (bitmap[b >>> 3] as number) | (1 << (b & 7));
  return bitmap;
}

function isDirty(bitmap: Uint8Array, block: number): boolean {
  return (((bitmap[block >>> 3] as number) >>> (block & 7)) & 1) === 1;
}

/** Appends blocks to one generation's data file, buffered. */
class DataWriter {
  readonly path: string;
  readonly #fh: FileHandle;
  readonly #buf: Buffer;
  #fill = 0;
  /** Storage offset of the next appended byte. */
  written = 0;

  private constructor(path: string, fh: FileHandle, bufBytes: number) {
    this.path = path;
    this.#fh = fh;
    this.#buf = Buffer.allocUnsafe(bufBytes);
  }

  static async create(path: string, bufBytes: number): Promise<DataWriter> {
    return new DataWriter(path, await open(path, "wx"), bufBytes);
  }

  /** Appends `data`; returns its storage offset. */
  async append(data: Buffer): Promise<number> {
    const at = this.written;
    if (this.#fill + data.length > this.#buf.length) await this.#flush();
    if (data.length > this.#buf.length) {
      await this.#fh.write(data, 0, data.length, at);
    } else {
      data.copy(this.#buf, this.#fill);
      this.#fill += data.length;
    }
    this.written += data.length;
    return at;
  }

  async #flush(): Promise<void> {
    if (this.#fill === 0) return;
    await this.#fh.write(this.#buf, 0, this.#fill, this.written - this.#fill);
    this.#fill = 0;
  }

  async finish(): Promise<void> {
    await this.#flush();
    await this.#fh.datasync();
    await this.#fh.close();
  }

  async abort(): Promise<void> {
    await this.#fh.close().catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
  }
}

/**
 * Emits runs of blocks of one chunk: zero runs as nil entries, non-zero
 * runs appended to the data file. `pick(block)` says which blocks of the
 * chunk to emit at all (all for a Full, the dirty ones for a Diff).
 */
async function emitChunk(
  chunk: Buffer,
  chunkOffset: number,
  pick: ((blockInChunk: number) => boolean) | null,
  buildId: string,
  data: DataWriter,
  out: MappingBuilder,
): Promise<void> {
  const blocks = chunk.length / BLOCK_SIZE;
  let b = 0;
  while (b < blocks) {
    if (pick !== null && !pick(b)) {
      b++;
      continue;
    }
    const zero = isZeroBlock(chunk, b);
    let e = b + 1;
    while (e < blocks && (pick === null || pick(e)) && isZeroBlock(chunk, e) === zero) e++;
    const offset = chunkOffset + b * BLOCK_SIZE;
    const length = (e - b) * BLOCK_SIZE;
    if (zero) {
      out.push({ offset, length, buildId: NIL_BUILD_ID, storageOffset: 0 });
    } else {
      const storageOffset = await data.append(chunk.subarray(b * BLOCK_SIZE, e * BLOCK_SIZE));
      out.push({ offset, length, buildId, storageOffset });
    }
    b = e;
  }
}

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);

function isZeroBlock(chunk: Buffer, block: number): boolean {
  return chunk.subarray(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE).equals(ZERO_BLOCK);
}

async function imageSize(path: string): Promise<number> {
  const { size } = await stat(path);
  if (size === 0 || size % BLOCK_SIZE !== 0) {
    throw new WrennError(
      "invalid_argument",
      `memory image ${path} has ${size} bytes, not a positive multiple of ${BLOCK_SIZE}`,
    );
  }
  return size;
}

/** Reads one chunk of a raw image; bytes past its end read as zeros (sparse diff files). */
async function readImageChunk(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
  const got = await readFully(fh, buf, 0, buf.length, pos);
  if (got < buf.length) buf.fill(0, got);
}

type FillChunk = (pos: number, buf: Buffer) => Promise<void>;

/** Writes a Full snapshot of `size` bytes whose content `fill` produces chunk by chunk. */
async function writeFullFrom(
  dir: string,
  size: number,
  fill: FillChunk,
  chunkBytes: number,
): Promise<WriteResult> {
  const buildId = randomUUID();
  const data = await DataWriter.create(join(dir, dataFileName(buildId)), chunkBytes);
  try {
    const mapping = new MappingBuilder();
    const buf = Buffer.allocUnsafe(chunkBytes);
    const zero = Buffer.alloc(chunkBytes);
    for (let pos = 0; pos < size; pos += chunkBytes) {
      const view = buf.subarray(0, Math.min(chunkBytes, size - pos));
      await fill(pos, view);
      if (view.equals(zero.subarray(0, view.length))) {
        mapping.push({ offset: pos, length: view.length, buildId: NIL_BUILD_ID, storageOffset: 0 });
      } else {
        await emitChunk(view, pos, null, buildId, data, mapping);
      }
    }
    await data.finish();
    const header: Header = {
      metadata: {
        version: HEADER_VERSION,
        blockSize: BLOCK_SIZE,
        size,
        generation: 0,
        buildId,
        baseBuildId: buildId,
      },
      mapping: mapping.entries,
    };
    await commitHeader(dir, header);
    return { header, kind: "full", dataBytes: data.written };
  } catch (err) {
    await data.abort();
    throw err;
  }
}

/** A Full snapshot of a raw memory image. */
export async function writeFull(opts: FullOptions): Promise<WriteResult> {
  return timed(opts.log ?? log, "memory snapshot (full)", () => writeFullImpl(opts), {
    dir: opts.dir,
  });
}

async function writeFullImpl(opts: FullOptions): Promise<WriteResult> {
  const chunkBytes = checkChunk(opts.chunkBytes);
  const size = await imageSize(opts.imagePath);
  const image = await open(opts.imagePath, "r");
  try {
    const result = await writeFullFrom(
      opts.dir,
      size,
      (pos, buf) => readImageChunk(image, buf, pos),
      chunkBytes,
    );
    await pruneUnreferenced(opts.dir, result.header);
    return result;
  } finally {
    await image.close();
  }
}

/**
 * A Diff over the snapshot in `parentDir` (or a Full, once the chain is
 * `maxGenerations` deep or the parent is the legacy layout).
 */
export async function writeDiff(opts: DiffOptions): Promise<WriteResult> {
  return timed(opts.log ?? log, "memory snapshot (diff)", () => writeDiffImpl(opts), {
    dir: opts.dir,
    dirtyBitmap: opts.dirty !== undefined,
  });
}

async function writeDiffImpl(opts: DiffOptions): Promise<WriteResult> {
  const chunkBytes = checkChunk(opts.chunkBytes);
  const maxGenerations = opts.maxGenerations ?? DEFAULT_MAX_GENERATIONS;
  const parentDir = opts.parentDir ?? opts.dir;
  const parent = await openSnapshot(parentDir);
  const image = await open(opts.imagePath, "r");
  try {
    const size = parent.size;
    const imgSize = (await image.stat()).size;
    const { dirty } = opts;
    if (dirty === undefined ? imgSize !== size : imgSize > size) {
      throw new WrennError(
        "invalid_argument",
        `memory image ${opts.imagePath} has ${imgSize} bytes but the parent snapshot has ${size}`,
      );
    }
    if (dirty !== undefined && dirty.length * 8 * BLOCK_SIZE < size) {
      throw new WrennError(
        "invalid_argument",
        `dirty bitmap covers ${dirty.length * 8} blocks, memory has ${size / BLOCK_SIZE}`,
      );
    }
    if (parent.legacy || parent.header.metadata.generation >= maxGenerations) {
      (opts.log ?? log).info(
        { dir: opts.dir, generation: parent.header.metadata.generation, legacy: parent.legacy },
        "collapsing the memory diff chain into a Full snapshot",
      );
      const fill: FillChunk =
        dirty === undefined
          ? (pos, buf) => readImageChunk(image, buf, pos)
          : (pos, buf) => mergedChunk(parent, image, dirty, pos, buf);
      const result = await writeFullFrom(opts.dir, size, fill, chunkBytes);
      await pruneUnreferenced(opts.dir, result.header);
      return result;
    }
    if (parentDir !== opts.dir) await linkDataFiles(parent, opts.dir);
    const result = await writeDiffFrom(parent, image, dirty, opts.dir, chunkBytes);
    await pruneUnreferenced(opts.dir, result.header);
    return result;
  } finally {
    await image.close();
    await parent.close();
  }
}

async function mergedChunk(
  parent: SnapshotReader,
  image: FileHandle,
  dirty: Uint8Array,
  pos: number,
  buf: Buffer,
): Promise<void> {
  await parent.read(pos, buf.length, buf);
  await readDirtyRuns(image, dirty, pos, buf);
}

/** Reads only the dirty blocks of one chunk of the image into `buf`; the rest stays as it is. */
async function readDirtyRuns(
  image: FileHandle,
  dirty: Uint8Array,
  pos: number,
  buf: Buffer,
): Promise<void> {
  const first = pos / BLOCK_SIZE;
  const blocks = buf.length / BLOCK_SIZE;
  for (let b = 0; b < blocks;) {
    if (!isDirty(dirty, first + b)) {
      b++;
      continue;
    }
    let e = b + 1;
    while (e < blocks && isDirty(dirty, first + e)) e++;
    const view = buf.subarray(b * BLOCK_SIZE, e * BLOCK_SIZE);
    await readImageChunk(image, view, pos + b * BLOCK_SIZE);
    b = e;
  }
}

async function writeDiffFrom(
  parent: SnapshotReader,
  image: FileHandle,
  dirty: Uint8Array | undefined,
  dir: string,
  chunkBytes: number,
): Promise<WriteResult> {
  const size = parent.size;
  const buildId = randomUUID();
  const data = await DataWriter.create(join(dir, dataFileName(buildId)), chunkBytes);
  try {
    const over = new MappingBuilder();
    const buf = Buffer.allocUnsafe(chunkBytes);
    const old = dirty === undefined ? Buffer.allocUnsafe(chunkBytes) : null;
    for (let pos = 0; pos < size; pos += chunkBytes) {
      const n = Math.min(chunkBytes, size - pos);
      const view = buf.subarray(0, n);
      const first = pos / BLOCK_SIZE;
      let pick: (b: number) => boolean;
      if (dirty !== undefined) {
        const blocks = n / BLOCK_SIZE;
        let any = false;
        for (let b = 0; b < blocks && !any; b++) any = isDirty(dirty, first + b);
        if (!any) continue;
        pick = (b) => isDirty(dirty, first + b);
        await readDirtyRuns(image, dirty, pos, view);
      } else {
        const before = (old as Buffer).subarray(0, n);
        await readImageChunk(image, view, pos);
        await parent.read(pos, n, before);
        if (view.equals(before)) continue;
        pick = (b) => {
          const s = b * BLOCK_SIZE;
          return !view.subarray(s, s + BLOCK_SIZE).equals(before.subarray(s, s + BLOCK_SIZE));
        };
      }
      await emitChunk(view, pos, pick, buildId, data, over);
    }
    await data.finish();
    const pm = parent.header.metadata;
    const header: Header = {
      metadata: {
        version: HEADER_VERSION,
        blockSize: BLOCK_SIZE,
        size,
        generation: pm.generation + 1,
        buildId,
        baseBuildId: pm.baseBuildId,
      },
      mapping: overlayMapping(parent.header.mapping, over.entries),
    };
    await commitHeader(dir, header);
    return { header, kind: "diff", dataBytes: data.written };
  } catch (err) {
    await data.abort();
    throw err;
  }
}

/** Makes the parent's data files visible in `dir` (hard link; a copy across file systems). */
async function linkDataFiles(parent: SnapshotReader, dir: string): Promise<void> {
  for (const id of referencedBuildIds(parent.header)) {
    const from = join(parent.dir, dataFileName(id));
    const to = join(dir, dataFileName(id));
    try {
      await link(from, to);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") continue;
      if (code !== "EXDEV") throw err;
      await copyFile(from, to);
    }
  }
}

/** Writes the header atomically: a reader sees the old chain or the new one, never half. */
async function commitHeader(dir: string, header: Header): Promise<void> {
  const tmp = join(dir, `${HEADER_FILE}.tmp`);
  const fh = await open(tmp, "w");
  try {
    await fh.write(encodeHeader(header));
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, HEADER_FILE));
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Removes generation files the header no longer references (after a collapse, or a failed write). */
export async function pruneUnreferenced(dir: string, header: Header): Promise<string[]> {
  const keep = referencedBuildIds(header);
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    const id = name.startsWith("memfile.") ? name.slice("memfile.".length) : "";
    if (isBuildId(id) && !keep.has(id)) {
      await unlink(join(dir, name));
      removed.push(name);
    }
  }
  return removed;
}

function checkChunk(chunkBytes = DEFAULT_CHUNK_BYTES): number {
  if (chunkBytes <= 0 || chunkBytes % BLOCK_SIZE !== 0) {
    throw new WrennError(
      "invalid_argument",
      `chunk size ${chunkBytes} is not a multiple of ${BLOCK_SIZE}`,
    );
  }
  return chunkBytes;
}
