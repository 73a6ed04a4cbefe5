import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { errnoOf } from "../filesystem/errors.ts";
import { BLOCK, BlockWriter, blockReader, returnBlocks, takeBlocks } from "./block-writer.ts";
import { reclaimWhileStreaming } from "./reclaim.ts";
import { takeBody } from "@wrenn/shared/socket-body.ts";

/** Large chunks keep syscalls per GiB low; memory stays at a few of them per transfer. */
const CHUNK = 1 << 20;
/** Buffers a download cycles through: one being read while the others drain into the socket. */
const SEND_BUFFERS = 3;
/**
 * Bytes per O_DIRECT read of a file this large or larger (smaller ones read
 * BLOCK at a time): each read is one request to the virtual disk, and in a
 * TCG guest a request costs the vCPU far more than its bytes. 100 MiB out of
 * envd (bench/files.ts, 2026-12-04): 1 MiB reads 149–212 MB/s, guest CPU
 * 0.52–0.75 s; 4 MiB reads 269–278 MB/s, 0.40–0.41 s (three buffers), 235
 * MB/s, 0.49 s (two, in a noisier run: 0.82× raw TCP out of the guest).
 */
const READ_BLOCK = 4 << 20;
/** Buffers of READ_BLOCK a download cycles through: two hold what three of BLOCK did, and more. */
const READ_BUFFERS = 2;
/**
 * Reads a regular file of a block or more through a second descriptor with
 * O_DIRECT (the same file, reopened through /proc/self/fd): the virtual
 * disk's device copies the bytes into envd's page-aligned blocks. Uploads
 * bypass the page cache (BlockWriter), so a file just uploaded is not in it:
 * a buffered read then has the guest's one vCPU fill the cache and copy out
 * of it. Measured in a TCG guest, 100 MiB just uploaded: 0.71 s of guest
 * CPU buffered; for a file in the page cache both ways cost the same
 * (0.42–0.50 s). Undefined where O_DIRECT is refused.
 */
async function directReader(file: FileHandle): Promise<FileHandle | undefined> {
  // Where it cannot be reopened so (no /proc, no O_DIRECT) the plain descriptor reads.
  return open(`/proc/self/fd/${file.fd}`, constants.O_RDONLY | constants.O_DIRECT).catch(
    () => undefined,
  );
}

/**
 * Streams an open file to `res` through a few buffers reused for the whole
 * transfer: `size` bytes of a regular file (its Content-Length), all of a
 * device or FIFO. A file ReadStream allocates a fresh buffer per read,
 * which V8 frees only in bulk: ~30% more of envd's CPU per GiB in
 * allocation, page faults and collection. A buffer is read into again only
 * once the socket has taken all of it (the write's callback). A regular
 * file of a block or more is read in page-aligned blocks with O_DIRECT
 * (directReader). Resolves once the response is finished; rejects if the
 * file cannot be read or the client went away.
 */
export async function sendFile(
  file: FileHandle,
  res: ServerResponse,
  size: number | undefined,
): Promise<void> {
  const direct = size !== undefined && size >= BLOCK ? await directReader(file) : undefined;
  // A small file needs one small buffer; devices and FIFOs (no size) get full ones.
  const chunk = size === undefined ? CHUNK : Math.min(CHUNK, Math.max(size, 16 << 10));
  const blocks =
    direct === undefined
      ? []
      : size! >= READ_BLOCK
        ? takeBlocks(READ_BUFFERS, READ_BLOCK)
        : takeBlocks(SEND_BUFFERS, BLOCK);
  const free: Buffer[] = [...blocks];
  // O_DIRECT reads only into the aligned blocks: no more buffers beside them.
  const most = blocks.length > 0 ? blocks.length : SEND_BUFFERS;
  let made = free.length;
  let left = size ?? Number.POSITIVE_INFINITY;
  // Regular files are read at explicit offsets; null reads on from the
  // descriptor's offset, as FIFOs and devices need.
  let position: number | null = size === undefined ? null : 0;
  let reader = direct ?? file;
  let wake: (() => void) | undefined;
  let writeError: Error | undefined;
  let inSocket = 0;
  const onClose = () => wake?.();
  res.on("close", onClose);
  try {
    while (left > 0) {
      if (free.length === 0 && made < most) {
        free.push(Buffer.allocUnsafeSlow(chunk));
        made++;
      }
      while (free.length === 0 && !res.destroyed) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      if (writeError !== undefined) throw writeError;
      if (res.destroyed) throw new Error("the client closed the connection");
      const buf = free.pop()!;
      let bytesRead: number;
      try {
        // O_DIRECT reads whole blocks: the last one comes back short at the file's end.
        const want = reader === direct ? buf.length : Math.min(buf.length, left);
        ({ bytesRead } = await reader.read(buf, 0, want, position));
      } catch (err) {
        if (reader !== direct || errnoOf(err) !== "EINVAL") throw err;
        reader = file;
        free.push(buf);
        continue;
      }
      if (bytesRead === 0) break;
      bytesRead = Math.min(bytesRead, left);
      left -= bytesRead;
      if (position !== null) position += bytesRead;
      inSocket++;
      res.write(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead), (err) => {
        if (err) writeError ??= err;
        inSocket--;
        free.push(buf);
        wake?.();
      });
    }
    await new Promise<void>((resolve, reject) => {
      res.end(resolve);
      res.once("close", () =>
        res.writableFinished ? resolve() : reject(new Error("the client closed the connection")),
      );
    });
  } finally {
    res.off("close", onClose);
    await direct?.close();
    // Blocks the socket may still hold are left to the collector.
    if (inSocket === 0) returnBlocks(blocks);
  }
}

/**
 * Hands what `source` emits (a body through Node's parser, gunzip) to
 * `take` piece by piece; while a returned promise is pending the source is
 * paused. Collects behind it (reclaim.ts): without, a 1 GiB upload's spent
 * chunks peaked 64 MiB over the start. Rejects with `take`'s error, the
 * source's, or `stop`'s.
 */
export function feedStream(
  source: Readable,
  take: (data: Buffer) => Promise<void> | undefined,
  stop?: Promise<never>,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      source.off("data", onData);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onData = (chunk: Buffer) => {
      let wait: Promise<void> | undefined;
      try {
        wait = take(chunk);
      } catch (err) {
        finish(err);
        return;
      }
      if (wait === undefined) return;
      source.pause();
      (stop ? Promise.race([wait, stop]) : wait).then(() => {
        if (!done) source.resume();
      }, finish);
    };
    // Attached in the same tick: the first 'data' listener starts the flow.
    reclaimWhileStreaming(source);
    source.on("data", onData);
    source.once("end", () => finish());
    source.once("error", finish);
    stop?.catch(finish);
  });
}

/**
 * Writes what `source` emits to `path` (created or truncated), copied into
 * BlockWriter's blocks; while every block waits for the disk the source is
 * paused. For bodies that come through a stream: gunzip, chunked framing.
 */
export async function receiveFile(source: Readable, path: string): Promise<void> {
  const writer = await BlockWriter.open(path);
  try {
    await feedStream(source, (chunk) => (writer.copy(chunk) ? undefined : writer.ready(true)));
  } catch (err) {
    await writer.abort();
    throw err;
  }
  await writer.finish();
}

/**
 * Writes the `length` bytes of `req`'s raw body to `path`, read off the
 * socket straight into the blocks (socket-body.ts). The caller checked
 * `takeoverLength` and answers with `Connection: close`.
 */
export async function receiveBody(
  req: IncomingMessage,
  length: number,
  path: string,
): Promise<void> {
  const writer = await BlockWriter.open(path);
  try {
    await takeBody(req, length, blockReader(writer));
  } catch (err) {
    await writer.abort();
    throw err;
  }
  await writer.finish();
}
