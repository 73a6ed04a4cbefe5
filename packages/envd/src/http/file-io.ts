import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { reclaimWhileStreaming } from "./reclaim.ts";

/** Large chunks keep syscalls per GiB low; memory stays at a few of them per transfer. */
const CHUNK = 1 << 20;
/** Buffers a download cycles through: one being read while the others drain into the socket. */
const SEND_BUFFERS = 3;
/** Upload bytes queued for the disk at which the body stops being read, and where it goes on. */
const RECEIVE_HIGH = 4 << 20;
/**
 * Upload bytes gathered before a write goes to the thread pool. Every write
 * is a hand-off to a worker thread and back; on a one-vCPU TCG guest that
 * costs milliseconds, and writing each 64 KiB socket chunk on its own (as
 * soon as the previous write finished) took 4 s of guest CPU per 100 MiB
 * against 2.8 s for synchronous writes of the same chunks.
 */
const WRITE_MIN = 1 << 20;

/**
 * Streams an open file to `res` through a few buffers reused for the whole
 * transfer: `size` bytes of a regular file (its Content-Length), all of a
 * device or FIFO. A file ReadStream allocates a fresh buffer per read,
 * which V8 frees only in bulk: ~30% more of envd's CPU per GiB in
 * allocation, page faults and collection. A buffer is read into again only
 * once the socket has taken all of it (the write's callback). Resolves once
 * the response is finished; rejects if the file cannot be read or the
 * client went away.
 */
export async function sendFile(
  file: FileHandle,
  res: ServerResponse,
  size: number | undefined,
): Promise<void> {
  // A small file needs one small buffer; devices and FIFOs (no size) get full ones.
  const chunk = size === undefined ? CHUNK : Math.min(CHUNK, Math.max(size, 16 << 10));
  const free: Buffer[] = [];
  let made = 0;
  let left = size ?? Number.POSITIVE_INFINITY;
  let wake: (() => void) | undefined;
  let writeError: Error | undefined;
  const onClose = () => wake?.();
  res.on("close", onClose);
  try {
    while (left > 0) {
      if (free.length === 0 && made < SEND_BUFFERS) {
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
      // Position null reads on from the file's offset: FIFOs and devices cannot seek.
      const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, left), null);
      if (bytesRead === 0) break;
      left -= bytesRead;
      res.write(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead), (err) => {
        if (err) writeError ??= err;
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
  }
}

/** Writes every buffer to the file, again for what a short write left over. */
async function writeAll(file: FileHandle, buffers: Buffer[], size: number): Promise<void> {
  let rest = buffers;
  let left = size;
  for (;;) {
    const { bytesWritten } = await file.writev(rest);
    left -= bytesWritten;
    if (left <= 0) return;
    // A short write (a disk nearly full): the next attempt reports why, or finishes.
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) skip -= b.length;
      else {
        next.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
    }
    rest = next;
  }
}

/**
 * Writes what `source` emits to `path` (created or truncated). Chunks are
 * gathered to WRITE_MIN bytes, and those that arrive while a write is in
 * flight go to the disk together in one writev; past RECEIVE_HIGH queued
 * bytes the source is paused until the disk caught up. Leaner per chunk than
 * piping into a WriteStream, and the body keeps flowing while the disk writes.
 */
export async function receiveFile(source: Readable, path: string): Promise<void> {
  const file = await open(path, "w");
  let inflight: Promise<void> = Promise.resolve();
  try {
    await new Promise<void>((resolve, reject) => {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let writing = false;
      let ended = false;
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        source.off("data", onData);
        reject(err);
      };
      const flush = () => {
        if (writing || failed) return;
        if (pending.length === 0) {
          if (ended) resolve();
          return;
        }
        if (pendingBytes < WRITE_MIN && !ended) return;
        const batch = pending;
        const size = pendingBytes;
        pending = [];
        pendingBytes = 0;
        writing = true;
        inflight = writeAll(file, batch, size).then(() => {
          writing = false;
          if (!ended && source.isPaused()) source.resume();
          flush();
        }, fail);
      };
      const onData = (chunk: Buffer) => {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= RECEIVE_HIGH) source.pause();
        flush();
      };
      // Attached in the same tick: the first 'data' listener starts the flow.
      reclaimWhileStreaming(source);
      source.on("data", onData);
      source.once("end", () => {
        ended = true;
        flush();
      });
      source.once("error", fail);
    });
  } finally {
    await inflight.catch(() => undefined);
    await file.close();
  }
}
