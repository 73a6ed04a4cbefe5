/**
 * The memory snapshot header (`memfile.header`), byte-compatible with the
 * seed system: little-endian metadata followed by mapping entries until the
 * end of the file. Entries are sorted and cover guest memory exactly; each
 * says where a range of guest memory lives: in `memfile.<buildId>` at
 * `storageOffset`, or nowhere (nil build id) because it is all zeros.
 *
 *   metadata (64 B): version u64, blockSize u64, size u64, generation u64,
 *                    buildId [16], baseBuildId [16]
 *   entry    (40 B): offset u64, length u64, buildId [16], storageOffset u64
 *
 * The page server (native/uffd) reads the same bytes and validates them
 * the same way; a snapshot that fails here must never reach a VM.
 */
import { WrennError } from "@wrenn/shared/errors.ts";

export const HEADER_VERSION = 1;
export const BLOCK_SIZE = 4096;
export const METADATA_BYTES = 64;
export const ENTRY_BYTES = 40;
export const NIL_BUILD_ID = "00000000-0000-0000-0000-000000000000";

export interface Metadata {
  version: number;
  blockSize: number;
  /** Guest memory size in bytes. */
  size: number;
  /** 0 for a Full snapshot, parent + 1 for each Diff. */
  generation: number;
  buildId: string;
  /** The Full snapshot the chain started from. */
  baseBuildId: string;
}

export interface MappingEntry {
  offset: number;
  length: number;
  /** NIL_BUILD_ID: the range reads as zeros and has no storage. */
  buildId: string;
  storageOffset: number;
}

export interface Header {
  metadata: Metadata;
  mapping: MappingEntry[];
}

/** Data file name of one generation inside a snapshot directory. */
export function dataFileName(buildId: string): string {
  return `memfile.${buildId}`;
}

export const HEADER_FILE = "memfile.header";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isBuildId(s: string): boolean {
  return UUID_RE.test(s);
}

function uuidToBytes(id: string, where: string): Buffer {
  if (!UUID_RE.test(id)) {
    throw new WrennError("invalid_argument", `${where}: build id '${id}' is not a UUID`);
  }
  return Buffer.from(id.replaceAll("-", ""), "hex");
}

function bytesToUuid(b: Buffer): string {
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function readU64(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw corrupt(`${what} ${v} is out of range`);
  }
  return Number(v);
}

/** A snapshot that cannot be used as it is: resuming from it must not be attempted. */
function corrupt(detail: string): WrennError {
  return new WrennError("failed_precondition", detail);
}

export function encodeHeader(header: Header): Buffer {
  validateHeader(header);
  const { metadata: m, mapping } = header;
  const buf = Buffer.alloc(METADATA_BYTES + mapping.length * ENTRY_BYTES);
  buf.writeBigUInt64LE(BigInt(m.version), 0);
  buf.writeBigUInt64LE(BigInt(m.blockSize), 8);
  buf.writeBigUInt64LE(BigInt(m.size), 16);
  buf.writeBigUInt64LE(BigInt(m.generation), 24);
  uuidToBytes(m.buildId, "metadata").copy(buf, 32);
  uuidToBytes(m.baseBuildId, "metadata").copy(buf, 48);
  let at = METADATA_BYTES;
  for (const e of mapping) {
    buf.writeBigUInt64LE(BigInt(e.offset), at);
    buf.writeBigUInt64LE(BigInt(e.length), at + 8);
    uuidToBytes(e.buildId, "mapping").copy(buf, at + 16);
    buf.writeBigUInt64LE(BigInt(e.storageOffset), at + 32);
    at += ENTRY_BYTES;
  }
  return buf;
}

/** Parses and validates a header; `source` names the file in error messages. */
export function decodeHeader(buf: Buffer, source = HEADER_FILE): Header {
  try {
    if (buf.length < METADATA_BYTES) {
      throw corrupt(`truncated: ${buf.length} bytes, metadata needs ${METADATA_BYTES}`);
    }
    const tail = (buf.length - METADATA_BYTES) % ENTRY_BYTES;
    if (tail !== 0) {
      throw corrupt(`truncated: the last mapping entry has ${tail} of ${ENTRY_BYTES} bytes`);
    }
    const metadata: Metadata = {
      version: readU64(buf, 0, "version"),
      blockSize: readU64(buf, 8, "block size"),
      size: readU64(buf, 16, "memory size"),
      generation: readU64(buf, 24, "generation"),
      buildId: bytesToUuid(buf.subarray(32, 48)),
      baseBuildId: bytesToUuid(buf.subarray(48, 64)),
    };
    const mapping: MappingEntry[] = [];
    for (let at = METADATA_BYTES; at < buf.length; at += ENTRY_BYTES) {
      mapping.push({
        offset: readU64(buf, at, "entry offset"),
        length: readU64(buf, at + 8, "entry length"),
        buildId: bytesToUuid(buf.subarray(at + 16, at + 32)),
        storageOffset: readU64(buf, at + 32, "storage offset"),
      });
    }
    const header = { metadata, mapping };
    validateHeader(header);
    return header;
  } catch (err) {
    if (err instanceof WrennError) {
      throw new WrennError(err.code, `memory snapshot header ${source}: ${err.message}`);
    }
    throw err;
  }
}

/**
 * Checks everything that can be checked without the data files: version,
 * block size, and that the mapping covers [0, size) exactly, in order, in
 * whole blocks.
 */
export function validateHeader(header: Header): void {
  const { metadata: m, mapping } = header;
  if (m.version !== HEADER_VERSION) {
    throw corrupt(`unknown version ${m.version} (this agent reads version ${HEADER_VERSION})`);
  }
  if (m.blockSize !== BLOCK_SIZE) {
    throw corrupt(`block size ${m.blockSize} is not ${BLOCK_SIZE}`);
  }
  if (m.size === 0 || m.size % BLOCK_SIZE !== 0) {
    throw corrupt(`memory size ${m.size} is not a positive multiple of ${BLOCK_SIZE}`);
  }
  if (m.buildId === NIL_BUILD_ID) throw corrupt("the snapshot's own build id is nil");
  // Order first: an unsorted mapping would otherwise be reported as a confusing gap.
  for (let i = 1; i < mapping.length; i++) {
    if ((mapping[i] as MappingEntry).offset < (mapping[i - 1] as MappingEntry).offset) {
      throw corrupt(`entry ${i}: entries are not sorted by offset`);
    }
  }
  let end = 0;
  for (const [i, e] of mapping.entries()) {
    const where = `entry ${i} [${e.offset}, +${e.length})`;
    if (e.length === 0 || e.length % BLOCK_SIZE !== 0 || e.offset % BLOCK_SIZE !== 0) {
      throw corrupt(`${where}: offset and length must be whole ${BLOCK_SIZE}-byte blocks`);
    }
    if (e.buildId !== NIL_BUILD_ID && e.storageOffset % BLOCK_SIZE !== 0) {
      throw corrupt(`${where}: storage offset ${e.storageOffset} is not block-aligned`);
    }
    if (e.offset > end) throw corrupt(`${where}: gap, memory [${end}, ${e.offset}) is unmapped`);
    if (e.offset < end) {
      throw corrupt(`${where}: overlaps the previous entry, which ends at ${end}`);
    }
    end = e.offset + e.length;
  }
  if (end !== m.size) {
    throw corrupt(
      end < m.size
        ? `gap: memory [${end}, ${m.size}) is unmapped`
        : `mapping ends at ${end}, beyond the memory size ${m.size}`,
    );
  }
}

/**
 * Checks that every entry's storage lies inside its data file. `sizes` maps
 * build id → data file size (missing = file absent).
 */
export function validateStorage(header: Header, sizes: ReadonlyMap<string, number>): void {
  for (const [i, e] of header.mapping.entries()) {
    if (e.buildId === NIL_BUILD_ID) continue;
    const size = sizes.get(e.buildId);
    if (size === undefined) {
      throw new WrennError(
        "failed_precondition",
        `memory snapshot data file ${dataFileName(e.buildId)} is missing (entry ${i})`,
      );
    }
    if (e.storageOffset + e.length > size) {
      throw new WrennError(
        "failed_precondition",
        `memory snapshot data file ${dataFileName(e.buildId)} is truncated: entry ${i} needs ` +
          `bytes [${e.storageOffset}, ${e.storageOffset + e.length}) but the file has ${size}`,
      );
    }
  }
}

/** The build ids a header's data lives in (without the nil id). */
export function referencedBuildIds(header: Header): Set<string> {
  const ids = new Set<string>();
  for (const e of header.mapping) if (e.buildId !== NIL_BUILD_ID) ids.add(e.buildId);
  return ids;
}

/** Index of the entry containing `offset` (binary search; the mapping is contiguous). */
export function findEntry(mapping: readonly MappingEntry[], offset: number): number {
  let lo = 0;
  let hi = mapping.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if ((mapping[mid] as MappingEntry).offset <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
