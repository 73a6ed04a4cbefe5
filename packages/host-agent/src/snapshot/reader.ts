/**
 * Reads guest memory back out of a snapshot directory: any byte range, or
 * the whole image into a raw file (QEMU maps that file as guest RAM).
 * Validates the header against the data files before anything is read, so
 * a truncated or missing generation is an error at open, not wrong pages.
 */
import { open, readFile, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { WrennError } from "@wrenn/shared/errors.ts";
import {
  BLOCK_SIZE,
  HEADER_FILE,
  HEADER_VERSION,
  NIL_BUILD_ID,
  dataFileName,
  decodeHeader,
  findEntry,
  referencedBuildIds,
  validateStorage,
  type Header,
  type MappingEntry,
} from "./header.ts";

/** The older layout: one raw `memfile` holding all of guest memory, no header. */
export const LEGACY_FILE = "memfile";

export const DEFAULT_CHUNK_BYTES = 4 << 20;

/** Reads up to `length` bytes at `position`, looping over short reads; returns bytes read. */
export async function readFully(
  fh: FileHandle,
  buf: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, offset + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export class SnapshotReader {
  readonly dir: string;
  readonly header: Header;
  /** True when the directory holds the older single-file layout. */
  readonly legacy: boolean;
  readonly #files: Map<string, FileHandle>;

  constructor(dir: string, header: Header, legacy: boolean, files: Map<string, FileHandle>) {
    this.dir = dir;
    this.header = header;
    this.legacy = legacy;
    this.#files = files;
  }

  get size(): number {
    return this.header.metadata.size;
  }

  /** Guest memory [offset, offset+length) into `out` (allocated when omitted). */
  async read(offset: number, length: number, out?: Buffer): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new WrennError(
        "invalid_argument",
        `read [${offset}, +${length}) is outside guest memory of ${this.size} bytes`,
      );
    }
    const buf = out ?? Buffer.allocUnsafe(length);
    const { mapping } = this.header;
    let pos = offset;
    let i = findEntry(mapping, pos);
    while (pos < offset + length) {
      const e = mapping[i] as MappingEntry;
      const end = Math.min(e.offset + e.length, offset + length);
      const at = pos - offset;
      if (e.buildId === NIL_BUILD_ID) {
        buf.fill(0, at, at + (end - pos));
      } else {
        const fh = this.#files.get(e.buildId) as FileHandle;
        const want = end - pos;
        const got = await readFully(fh, buf, at, want, e.storageOffset + (pos - e.offset));
        if (got !== want) {
          throw new WrennError(
            "failed_precondition",
            `memory snapshot data file ${join(this.dir, dataFileName(e.buildId))} ended early ` +
              `(truncated after it was opened)`,
          );
        }
      }
      pos = end;
      i++;
    }
    return buf;
  }

  /** Writes the whole guest memory as a raw (sparse where zero) image file. */
  async reconstruct(destPath: string, chunkBytes = DEFAULT_CHUNK_BYTES): Promise<void> {
    const out = await open(destPath, "w");
    try {
      const buf = Buffer.allocUnsafe(chunkBytes);
      const zero = Buffer.alloc(chunkBytes);
      for (let pos = 0; pos < this.size; pos += chunkBytes) {
        const n = Math.min(chunkBytes, this.size - pos);
        const view = buf.subarray(0, n);
        await this.read(pos, n, view);
        // Leave all-zero chunks as holes: guest RAM is mostly zeros.
        if (!view.equals(zero.subarray(0, n))) await out.write(view, 0, n, pos);
      }
      // No fsync: the file becomes a running VM's RAM, which a host crash loses anyway.
      await out.truncate(this.size);
    } finally {
      await out.close();
    }
  }

  async close(): Promise<void> {
    const handles = [...this.#files.values()];
    this.#files.clear();
    await Promise.all(handles.map((fh) => fh.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

async function readHeaderFile(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/**
 * Opens a snapshot directory: `memfile.header` + `memfile.<buildId>` per
 * generation, or the legacy single raw `memfile`.
 */
export async function openSnapshot(dir: string): Promise<SnapshotReader> {
  const raw = await readHeaderFile(join(dir, HEADER_FILE));
  if (raw === null) return openLegacy(dir);
  const header = decodeHeader(raw, join(dir, HEADER_FILE));
  const files = new Map<string, FileHandle>();
  try {
    const sizes = new Map<string, number>();
    for (const id of referencedBuildIds(header)) {
      let fh: FileHandle;
      try {
        fh = await open(join(dir, dataFileName(id)), "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // reported by validateStorage
        throw err;
      }
      files.set(id, fh);
      sizes.set(id, (await fh.stat()).size);
    }
    validateStorage(header, sizes);
    return new SnapshotReader(dir, header, false, files);
  } catch (err) {
    await Promise.all([...files.values()].map((fh) => fh.close()));
    throw err;
  }
}

async function openLegacy(dir: string): Promise<SnapshotReader> {
  const path = join(dir, LEGACY_FILE);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new WrennError(
        "not_found",
        `no memory snapshot in ${dir}: neither ${HEADER_FILE} nor ${LEGACY_FILE} exists`,
      );
    }
    throw err;
  }
  if (size === 0 || size % BLOCK_SIZE !== 0) {
    throw new WrennError(
      "failed_precondition",
      `legacy memory snapshot ${path} has ${size} bytes, not a positive multiple of ${BLOCK_SIZE}`,
    );
  }
  // The legacy file has no build id of its own; a fresh one names it in this reader only.
  const id = randomUUID();
  const header: Header = {
    metadata: {
      version: HEADER_VERSION,
      blockSize: BLOCK_SIZE,
      size,
      generation: 0,
      buildId: id,
      baseBuildId: id,
    },
    mapping: [{ offset: 0, length: size, buildId: id, storageOffset: 0 }],
  };
  const fh = await open(path, "r");
  return new SnapshotReader(dir, header, true, new Map([[id, fh]]));
}
