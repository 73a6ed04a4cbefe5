import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile, open } from "node:fs/promises";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isWrennError } from "@wrenn/shared/errors.ts";
import {
  BLOCK_SIZE,
  HEADER_FILE,
  NIL_BUILD_ID,
  dataFileName,
  decodeHeader,
  encodeHeader,
  type Header,
  type MappingEntry,
} from "../src/snapshot/header.ts";
import { overlayMapping } from "../src/snapshot/mapping.ts";
import { dirtyBitmap, writeDiff, writeFull } from "../src/snapshot/memfile.ts";
import { LEGACY_FILE, openSnapshot } from "../src/snapshot/reader.ts";

let root: string;
const openFds = () => readdirSync("/proc/self/fd").length;
let fdsBefore: number;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "wrenn-snapshot-store-"));
  fdsBefore = openFds();
});

after(async () => {
  await rm(root, { recursive: true, force: true });
  // Every reader and writer must have closed its files, also on the error paths.
  assert.equal(openFds(), fdsBefore, "file descriptors leaked");
});

async function scratch(name: string): Promise<string> {
  return mkdtemp(join(root, `${name}-`));
}

/** A memory image with zero stretches and random data, like a guest's RAM. */
function makeImage(blocks: number): Buffer {
  const img = Buffer.alloc(blocks * BLOCK_SIZE);
  for (let b = 0; b < blocks; b++) {
    if (b % 7 < 4) randomBytes(BLOCK_SIZE).copy(img, b * BLOCK_SIZE);
  }
  return img;
}

const uuid = () => randomUUID();

function header(size: number, mapping: MappingEntry[], patch: Partial<Header["metadata"]> = {}) {
  const id = uuid();
  return {
    metadata: {
      version: 1,
      blockSize: BLOCK_SIZE,
      size,
      generation: 0,
      buildId: id,
      baseBuildId: id,
      ...patch,
    },
    mapping,
  };
}

test("header round-trips through its little-endian encoding", () => {
  const id = uuid();
  const h = header(3 * BLOCK_SIZE, [
    { offset: 0, length: BLOCK_SIZE, buildId: id, storageOffset: 0 },
    { offset: BLOCK_SIZE, length: 2 * BLOCK_SIZE, buildId: NIL_BUILD_ID, storageOffset: 0 },
  ]);
  const buf = encodeHeader(h);
  assert.equal(buf.length, 64 + 2 * 40);
  assert.equal(buf.readBigUInt64LE(16), BigInt(3 * BLOCK_SIZE));
  assert.deepEqual(buf.subarray(64 + 40 + 16, 64 + 40 + 32), Buffer.alloc(16), "nil = zeros");
  assert.deepEqual(decodeHeader(buf), h);
});

test("header validation refuses broken headers with clear errors", () => {
  const id = uuid();
  const B = BLOCK_SIZE;
  const good = encodeHeader(
    header(2 * B, [
      { offset: 0, length: B, buildId: id, storageOffset: 0 },
      { offset: B, length: B, buildId: id, storageOffset: B },
    ]),
  );
  const refuse = (buf: Buffer, re: RegExp) =>
    assert.throws(
      () => decodeHeader(buf, "test.header"),
      (err) => isWrennError(err, "failed_precondition") && re.test(err.message),
    );
  refuse(good.subarray(0, 40), /test\.header: truncated: 40 bytes/);
  refuse(good.subarray(0, good.length - 3), /truncated: the last mapping entry has 37 of 40/);
  const v = Buffer.from(good);
  v.writeBigUInt64LE(7n, 0);
  refuse(v, /unknown version 7/);
  const bs = Buffer.from(good);
  bs.writeBigUInt64LE(512n, 8);
  refuse(bs, /block size 512/);

  const enc = (mapping: MappingEntry[], size = 2 * B) => {
    const h = header(size, mapping);
    // Build the bytes by hand: encodeHeader itself refuses invalid headers.
    const buf = Buffer.alloc(64 + 40 * mapping.length);
    buf.writeBigUInt64LE(1n, 0);
    buf.writeBigUInt64LE(BigInt(B), 8);
    buf.writeBigUInt64LE(BigInt(size), 16);
    Buffer.from(h.metadata.buildId.replaceAll("-", ""), "hex").copy(buf, 32);
    mapping.forEach((e, i) => {
      const at = 64 + 40 * i;
      buf.writeBigUInt64LE(BigInt(e.offset), at);
      buf.writeBigUInt64LE(BigInt(e.length), at + 8);
      Buffer.from(e.buildId.replaceAll("-", ""), "hex").copy(buf, at + 16);
      buf.writeBigUInt64LE(BigInt(e.storageOffset), at + 32);
    });
    return buf;
  };
  const e = (offset: number, length: number, storageOffset = 0): MappingEntry => ({
    offset,
    length,
    buildId: id,
    storageOffset,
  });
  refuse(enc([e(B, B), e(0, B)]), /not sorted/);
  refuse(enc([e(0, 2 * B), e(B, B)]), /overlaps the previous entry/);
  refuse(enc([e(0, B)]), /gap: memory \[4096, 8192\) is unmapped/);
  refuse(enc([e(0, B), e(2 * B, B)], 3 * B), /gap, memory \[4096, 8192\)/);
  refuse(enc([e(0, 100)]), /whole 4096-byte blocks/);
  refuse(enc([e(0, B), e(B, B, 100)]), /storage offset 100 is not block-aligned/);
  refuse(enc([e(0, 3 * B)]), /beyond the memory size/);
  refuse(enc([], 0), /memory size 0/);
});

test("overlay lays new ranges over the parent and shifts split storage offsets", () => {
  const a = uuid();
  const b = uuid();
  const B = BLOCK_SIZE;
  const base: MappingEntry[] = [
    { offset: 0, length: 4 * B, buildId: a, storageOffset: 0 },
    { offset: 4 * B, length: 4 * B, buildId: NIL_BUILD_ID, storageOffset: 0 },
  ];
  const over: MappingEntry[] = [
    { offset: B, length: B, buildId: b, storageOffset: 0 },
    { offset: 3 * B, length: 2 * B, buildId: b, storageOffset: B },
  ];
  assert.deepEqual(overlayMapping(base, over), [
    { offset: 0, length: B, buildId: a, storageOffset: 0 },
    { offset: B, length: B, buildId: b, storageOffset: 0 },
    { offset: 2 * B, length: B, buildId: a, storageOffset: 2 * B },
    { offset: 3 * B, length: 2 * B, buildId: b, storageOffset: B },
    { offset: 5 * B, length: 3 * B, buildId: NIL_BUILD_ID, storageOffset: 0 },
  ]);
});

test("overlay agrees with a block-by-block model on random mappings", () => {
  const ids = [uuid(), uuid(), uuid(), NIL_BUILD_ID];
  const B = BLOCK_SIZE;
  /** A random covering (or, with holes, partial) mapping over `blocks` blocks. */
  const randomMapping = (blocks: number, holes: boolean): MappingEntry[] => {
    const out: MappingEntry[] = [];
    let storage = 0;
    for (let b = 0; b < blocks;) {
      const len = 1 + Math.floor(Math.random() * 5);
      const n = Math.min(len, blocks - b);
      if (!holes || Math.random() < 0.5) {
        const buildId = ids[Math.floor(Math.random() * ids.length)] as string;
        out.push({ offset: b * B, length: n * B, buildId, storageOffset: storage * B });
        storage += n;
      }
      b += n;
    }
    return out;
  };
  /** Per block: "id@storage block", the source each block reads from. */
  const model = (m: MappingEntry[], blocks: number): (string | undefined)[] => {
    const out: (string | undefined)[] = new Array(blocks);
    for (const e of m) {
      for (let i = 0; i < e.length / B; i++) {
        out[e.offset / B + i] =
          e.buildId === NIL_BUILD_ID ? "zero" : `${e.buildId}@${e.storageOffset / B + i}`;
      }
    }
    return out;
  };
  for (let round = 0; round < 200; round++) {
    const blocks = 1 + Math.floor(Math.random() * 40);
    const base = randomMapping(blocks, false);
    const over = randomMapping(blocks, true);
    const merged = overlayMapping(base, over);
    const want = model(base, blocks);
    model(over, blocks).forEach((v, i) => {
      if (v !== undefined) want[i] = v;
    });
    assert.deepEqual(model(merged, blocks), want);
    // Still a valid header mapping, and adjacent entries that continue each other are merged.
    assert.doesNotThrow(() => encodeHeader(header(blocks * B, merged)));
    for (let i = 1; i < merged.length; i++) {
      const a = merged[i - 1] as MappingEntry;
      const b = merged[i] as MappingEntry;
      const continues =
        a.buildId === b.buildId &&
        (a.buildId === NIL_BUILD_ID || a.storageOffset + a.length === b.storageOffset);
      assert.ok(!continues, `entries ${i - 1} and ${i} should have been merged`);
    }
  }
});

test("a Full snapshot stores only the non-zero blocks and reads back exactly", async () => {
  const dir = await scratch("full");
  const img = makeImage(300);
  await writeFile(join(dir, "image"), img);
  const {
    header: h,
    kind,
    dataBytes,
  } = await writeFull({
    imagePath: join(dir, "image"),
    dir,
    chunkBytes: 64 * BLOCK_SIZE, // several chunks, runs crossing chunk borders
  });
  assert.equal(kind, "full");
  let nonZero = 0;
  for (let b = 0; b < 300; b++) {
    if (img.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE).some((x) => x !== 0)) nonZero++;
  }
  assert.equal(dataBytes, nonZero * BLOCK_SIZE);
  assert.equal((await stat(join(dir, dataFileName(h.metadata.buildId)))).size, dataBytes);
  assert.equal(h.metadata.generation, 0);
  assert.equal(h.metadata.baseBuildId, h.metadata.buildId);
  // Consecutive blocks are merged: one entry per run, alternating data and zeros.
  assert.ok(h.mapping.length <= Math.ceil(300 / 7) * 2 + 1, `${h.mapping.length} entries`);

  await using snap = await openSnapshot(dir);
  assert.deepEqual(await snap.read(0, img.length), img);
  assert.deepEqual(
    await snap.read(5 * BLOCK_SIZE + 17, 9000),
    img.subarray(5 * BLOCK_SIZE + 17, 5 * BLOCK_SIZE + 9017),
  );
  await assert.rejects(snap.read(img.length - 10, 11), (err) =>
    isWrennError(err, "invalid_argument"),
  );
  await snap.reconstruct(join(dir, "out"));
  assert.deepEqual(await readFile(join(dir, "out")), img);
});

test("Diffs store only dirtied blocks, chain generations and collapse after the limit", async () => {
  const dir = await scratch("chain");
  const blocks = 256;
  let img = makeImage(blocks);
  await writeFile(join(dir, "image"), img);
  const full = await writeFull({ imagePath: join(dir, "image"), dir });

  // Generation 1 from a dirty bitmap over a sparse file holding only the dirty blocks,
  // the way Firecracker writes a Diff; one dirtied block becomes all zeros.
  img = Buffer.from(img);
  const dirty = [3, 4, 5, 100, 255];
  const sparse = Buffer.alloc(img.length);
  for (const b of dirty) {
    const data = b === 100 ? Buffer.alloc(BLOCK_SIZE) : randomBytes(BLOCK_SIZE);
    data.copy(img, b * BLOCK_SIZE);
    data.copy(sparse, b * BLOCK_SIZE);
  }
  await writeFile(join(dir, "diff1"), sparse);
  const g1 = await writeDiff({
    imagePath: join(dir, "diff1"),
    dir,
    dirty: dirtyBitmap(img.length, dirty),
  });
  assert.equal(g1.kind, "diff");
  assert.equal(g1.header.metadata.generation, 1);
  assert.equal(g1.header.metadata.baseBuildId, full.header.metadata.buildId);
  assert.equal(g1.dataBytes, 4 * BLOCK_SIZE, "the zeroed dirty block needs no storage");
  {
    await using snap = await openSnapshot(dir);
    assert.deepEqual(await snap.read(0, img.length), img);
  }

  // Generation 2 without a bitmap (QEMU): found by comparing with the parent.
  img = Buffer.from(img);
  randomBytes(10).copy(img, 7 * BLOCK_SIZE + 1);
  randomBytes(BLOCK_SIZE * 2).copy(img, 200 * BLOCK_SIZE);
  await writeFile(join(dir, "image"), img);
  const g2 = await writeDiff({ imagePath: join(dir, "image"), dir });
  assert.equal(g2.header.metadata.generation, 2);
  assert.equal(g2.dataBytes, 3 * BLOCK_SIZE);
  const files = (await readdir(dir)).filter((f) => f.startsWith("memfile.") && f !== HEADER_FILE);
  assert.equal(files.length, 3, "one data file per generation");
  {
    await using snap = await openSnapshot(dir);
    assert.deepEqual(await snap.read(0, img.length), img);
  }

  // With a limit of 3 the chain grows to generation 3, then collapses to one Full.
  for (let gen = 3; gen <= 4; gen++) {
    img = Buffer.from(img);
    randomBytes(BLOCK_SIZE).copy(img, gen * 11 * BLOCK_SIZE);
    await writeFile(join(dir, "image"), img);
    const r = await writeDiff({ imagePath: join(dir, "image"), dir, maxGenerations: 3 });
    assert.equal(r.kind, gen === 3 ? "diff" : "full");
    assert.equal(r.header.metadata.generation, gen === 3 ? 3 : 0);
  }
  const left = (await readdir(dir)).filter((f) => f.startsWith("memfile.") && f !== HEADER_FILE);
  assert.equal(left.length, 1, "a collapse removes the old generations");
  await using snap = await openSnapshot(dir);
  assert.deepEqual(await snap.read(0, img.length), img);
});

test("by default diffs chain 10 generations deep, then the 11th pause is a Full", async () => {
  const dir = await scratch("default-limit");
  const img = makeImage(8);
  await writeFile(join(dir, "image"), img);
  await writeFull({ imagePath: join(dir, "image"), dir });
  const kinds: string[] = [];
  for (let i = 1; i <= 11; i++) {
    randomBytes(BLOCK_SIZE).copy(img, (i % 8) * BLOCK_SIZE);
    await writeFile(join(dir, "image"), img);
    const r = await writeDiff({ imagePath: join(dir, "image"), dir });
    kinds.push(`${r.kind}${r.header.metadata.generation}`);
  }
  assert.deepEqual(kinds, [...Array.from({ length: 10 }, (_, i) => `diff${i + 1}`), "full0"]);
  await using snap = await openSnapshot(dir);
  assert.deepEqual(await snap.read(0, img.length), img);
});

test("a collapse with a dirty bitmap merges the parent chain with the dirty blocks", async () => {
  const dir = await scratch("collapse");
  const img = makeImage(64);
  await writeFile(join(dir, "image"), img);
  await writeFull({ imagePath: join(dir, "image"), dir });
  const sparse = Buffer.alloc(img.length);
  randomBytes(BLOCK_SIZE).copy(sparse, 9 * BLOCK_SIZE);
  sparse.copy(img, 9 * BLOCK_SIZE, 9 * BLOCK_SIZE, 10 * BLOCK_SIZE);
  await writeFile(join(dir, "diff"), sparse);
  const r = await writeDiff({
    imagePath: join(dir, "diff"),
    dir,
    dirty: dirtyBitmap(img.length, [9]),
    maxGenerations: 0,
  });
  assert.equal(r.kind, "full");
  await using snap = await openSnapshot(dir);
  assert.deepEqual(await snap.read(0, img.length), img);
});

test("a Diff into another directory links the parent's generations there", async () => {
  const parent = await scratch("parent");
  const child = await scratch("child");
  const img = makeImage(32);
  await writeFile(join(parent, "image"), img);
  const full = await writeFull({ imagePath: join(parent, "image"), dir: parent });
  randomBytes(BLOCK_SIZE).copy(img, 0);
  await writeFile(join(child, "image"), img);
  const r = await writeDiff({ imagePath: join(child, "image"), dir: child, parentDir: parent });
  assert.equal(r.header.metadata.generation, 1);
  const a = await stat(join(parent, dataFileName(full.header.metadata.buildId)));
  const b = await stat(join(child, dataFileName(full.header.metadata.buildId)));
  assert.equal(a.ino, b.ino, "hard link, not a copy");
  await using snap = await openSnapshot(child);
  assert.deepEqual(await snap.read(0, img.length), img);
});

test("the legacy single-file layout still loads, and a Diff over it becomes a Full", async () => {
  const dir = await scratch("legacy");
  const img = makeImage(40);
  await writeFile(join(dir, LEGACY_FILE), img);
  {
    await using snap = await openSnapshot(dir);
    assert.equal(snap.legacy, true);
    assert.equal(snap.size, img.length);
    assert.deepEqual(await snap.read(0, img.length), img);
  }
  randomBytes(BLOCK_SIZE).copy(img, 4 * BLOCK_SIZE);
  await writeFile(join(dir, "image"), img);
  const r = await writeDiff({ imagePath: join(dir, "image"), dir });
  assert.equal(r.kind, "full");
  await using snap = await openSnapshot(dir);
  assert.equal(snap.legacy, false);
  assert.deepEqual(await snap.read(0, img.length), img);
});

test("truncated or missing data files are refused at open, not served as wrong pages", async () => {
  const dir = await scratch("corrupt");
  const img = makeImage(50);
  await writeFile(join(dir, "image"), img);
  const { header: h } = await writeFull({ imagePath: join(dir, "image"), dir });
  const data = join(dir, dataFileName(h.metadata.buildId));
  const size = (await stat(data)).size;

  await truncate(data, size - BLOCK_SIZE);
  await assert.rejects(
    openSnapshot(dir),
    (err) =>
      isWrennError(err, "failed_precondition") &&
      /memfile\.[0-9a-f-]+ is truncated: entry \d+ needs bytes/.test(err.message),
  );
  await rm(data);
  await assert.rejects(openSnapshot(dir), /memfile\.[0-9a-f-]+ is missing/);

  const hdr = join(dir, HEADER_FILE);
  const raw = await readFile(hdr);
  await writeFile(hdr, raw.subarray(0, raw.length - 20));
  await assert.rejects(openSnapshot(dir), /memfile\.header: truncated/);

  const empty = await scratch("empty");
  await assert.rejects(openSnapshot(empty), (err) => isWrennError(err, "not_found"));
  await writeFile(join(empty, LEGACY_FILE), Buffer.alloc(1000));
  await assert.rejects(openSnapshot(empty), /not a positive multiple of 4096/);
});

test("wrong inputs are refused: size mismatch, short bitmap, unaligned image", async () => {
  const dir = await scratch("inputs");
  await writeFile(join(dir, "odd"), Buffer.alloc(5000));
  await assert.rejects(writeFull({ imagePath: join(dir, "odd"), dir }), (err) =>
    isWrennError(err, "invalid_argument"),
  );
  const img = makeImage(16);
  await writeFile(join(dir, "image"), img);
  await writeFull({ imagePath: join(dir, "image"), dir });
  await writeFile(join(dir, "bigger"), Buffer.alloc(img.length + BLOCK_SIZE));
  await assert.rejects(
    writeDiff({ imagePath: join(dir, "bigger"), dir }),
    /has 69632 bytes but the parent snapshot has 65536/,
  );
  await assert.rejects(
    writeDiff({ imagePath: join(dir, "image"), dir, dirty: new Uint8Array(1) }),
    /dirty bitmap covers 8 blocks, memory has 16/,
  );
  // Nothing half-written is left behind by the refused attempts.
  const files = (await readdir(dir)).filter((f) => f.startsWith("memfile."));
  assert.equal(files.length, 2);
});

test("a 256 MiB image is snapshotted in chunks without holding it in the heap", async () => {
  const dir = await scratch("large");
  const size = 256 << 20;
  const fh = await open(join(dir, "image"), "w");
  // Sparse except a few scattered blocks, so the test is fast but the size is real.
  for (let i = 0; i < 64; i++)
    await fh.write(randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, i * (size / 64));
  await fh.truncate(size);
  await fh.close();
  const heapBefore = process.memoryUsage().heapUsed;
  const r = await writeFull({ imagePath: join(dir, "image"), dir });
  const grew = process.memoryUsage().heapUsed - heapBefore;
  assert.equal(r.dataBytes, 64 * BLOCK_SIZE);
  assert.ok(grew < 64 << 20, `heap grew ${grew} bytes`);
  await using snap = await openSnapshot(dir);
  assert.deepEqual(
    await snap.read(size / 2, BLOCK_SIZE),
    await readBlock(join(dir, "image"), size / 2),
  );
});

async function readBlock(path: string, at: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(BLOCK_SIZE);
    await fh.read(buf, 0, BLOCK_SIZE, at);
    return buf;
  } finally {
    await fh.close();
  }
}
