/**
 * A guest's serial console on the host, bounded: the agent drains the VMM's
 * console socket into `<vmId>.console.log`, and when that reaches `capBytes`
 * it becomes `<vmId>.console.log.1` (replacing the older one) and a new file
 * starts. So a guest writing to its console without end costs the host at
 * most two files of `capBytes`. Offsets count every byte the console ever
 * wrote, so a reader can follow the log across rotations.
 */
import { createConnection } from "node:net";
import { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { messageOf } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import { open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";

/** Bytes per console file; two are kept (WRENN_CONSOLE_CAP_BYTES overrides). */
export const CONSOLE_CAP_BYTES = Number(process.env.WRENN_CONSOLE_CAP_BYTES) || 1024 * 1024;

/** The most one read returns. */
export const CONSOLE_READ_MAX = 1024 * 1024;

export function consoleFiles(runDir: string, vmId: string) {
  return {
    current: join(runDir, `${vmId}.console.log`),
    /**
     * The older file is named for the absolute offset it starts at, so one
     * rename moves its bytes and their offsets together: a reader never sees
     * one without the other.
     */
    rotated: (base: number) => join(runDir, `${vmId}.console.${base}.log`),
  };
}

const ROTATED = /^(.*)\.console\.(\d+)\.log$/;

/** The rotated files of a VM, newest (largest base) first. */
async function rotatedFiles(runDir: string, vmId: string): Promise<number[]> {
  const bases: number[] = [];
  for (const name of await readdir(runDir).catch(() => [])) {
    const m = ROTATED.exec(name);
    if (m?.[1] === vmId) bases.push(Number(m[2]));
  }
  return bases.sort((a, b) => b - a);
}

/** Removes a VM's console files (a new VM of the same id starts a new log). */
export async function removeConsole(runDir: string, vmId: string): Promise<void> {
  const f = consoleFiles(runDir, vmId);
  const olds = (await rotatedFiles(runDir, vmId)).map((b) => f.rotated(b));
  await Promise.all([f.current, ...olds].map((p) => rm(p, { force: true })));
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * A Writable that appends to the console files, rotating at the cap. Its
 * writes are sequential (one at a time), so piping the console socket into
 * it slows the guest's console rather than buffering on the host.
 */
export class ConsoleSink extends Writable {
  readonly #files: ReturnType<typeof consoleFiles>;
  readonly #runDir: string;
  readonly #vmId: string;
  readonly #cap: number;
  #fd: FileHandle | null = null;
  #size = 0;

  constructor(runDir: string, vmId: string, capBytes = CONSOLE_CAP_BYTES) {
    super({ highWaterMark: 64 * 1024 });
    this.#files = consoleFiles(runDir, vmId);
    this.#runDir = runDir;
    this.#vmId = vmId;
    this.#cap = capBytes;
  }

  override _construct(callback: (err?: Error | null) => void): void {
    // Appends: a re-adopted VM's log continues where the last agent left it.
    open(this.#files.current, "a").then(
      async (fd) => {
        this.#fd = fd;
        this.#size = (await fd.stat()).size;
        callback();
      },
      (err: Error) => callback(err),
    );
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void) {
    this.#append(chunk).then(() => callback(), callback);
  }

  /** What the console sent while a write was under way goes to the file in one. */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.#append(Buffer.concat(chunks.map((c) => c.chunk))).then(() => callback(), callback);
  }

  async #append(chunk: Buffer): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#size >= this.#cap) await this.#rotate();
      const n = Math.min(rest.length, this.#cap - this.#size);
      await (this.#fd as FileHandle).write(rest.subarray(0, n));
      this.#size += n;
      rest = rest.subarray(n);
    }
  }

  async #rotate(): Promise<void> {
    const f = this.#files;
    const olds = await rotatedFiles(this.#runDir, this.#vmId);
    const newest = olds[0];
    const base = newest === undefined ? 0 : newest + (await sizeOf(f.rotated(newest)));
    await (this.#fd as FileHandle).close();
    this.#fd = null;
    await rename(f.current, f.rotated(base));
    // Only then the older one goes: a reader in between takes the newest.
    await Promise.all(olds.map((b) => rm(f.rotated(b), { force: true })));
    this.#fd = await open(f.current, "a");
    this.#size = 0;
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const fd = this.#fd;
    this.#fd = null;
    if (!fd) return callback(err);
    fd.close().then(
      () => callback(err),
      () => callback(err),
    );
  }

  override _final(callback: (err?: Error | null) => void): void {
    this._destroy(null, callback);
  }
}

export interface ConsoleRead {
  /** The console's bytes from `offset`, as UTF-8 (a cut multi-byte character shows as U+FFFD). */
  text: string;
  /** Where `text` starts: the offset asked for, or the oldest byte still kept if that is later. */
  offset: number;
  /** Pass back as `offset` to read what follows. */
  nextOffset: number;
}

/**
 * Reads up to `limit` bytes of the console from absolute `offset` (default:
 * the oldest byte kept). Nothing written yet, or no files: empty text.
 */
export async function readConsole(
  runDir: string,
  vmId: string,
  opts: { offset?: number; limit?: number } = {},
): Promise<ConsoleRead> {
  // A rotation during the read moves bytes to other offsets: read again.
  for (let attempt = 0; ; attempt++) {
    const before = (await rotatedFiles(runDir, vmId))[0];
    const read = await readOnce(runDir, vmId, opts);
    if ((await rotatedFiles(runDir, vmId))[0] === before || attempt >= 3) return read;
  }
}

async function readOnce(
  runDir: string,
  vmId: string,
  opts: { offset?: number; limit?: number },
): Promise<ConsoleRead> {
  const f = consoleFiles(runDir, vmId);
  const limit = Math.max(0, Math.min(opts.limit ?? CONSOLE_READ_MAX, CONSOLE_READ_MAX));
  const newest = (await rotatedFiles(runDir, vmId))[0];
  const base = newest ?? 0;
  const rotatedPath = newest === undefined ? "" : f.rotated(newest);
  const rotatedSize = newest === undefined ? 0 : await sizeOf(rotatedPath);
  const currentSize = await sizeOf(f.current);
  const end = base + rotatedSize + currentSize;
  const offset = Math.min(Math.max(opts.offset ?? base, base), end);
  const parts: Buffer[] = [];
  let want = Math.min(limit, end - offset);
  let pos = offset;
  for (const [path, start, size] of [
    [rotatedPath, base, rotatedSize],
    [f.current, base + rotatedSize, currentSize],
  ] as const) {
    if (want <= 0 || pos >= start + size) continue;
    const got = await readRange(path, pos - start, Math.min(want, start + size - pos));
    parts.push(got);
    pos += got.length;
    want -= got.length;
    // A short read (the file rotated under us): stop here, the next read resumes.
    if (got.length === 0) break;
  }
  const data = Buffer.concat(parts);
  return { text: data.toString("utf8"), offset, nextOffset: offset + data.length };
}

async function readRange(path: string, position: number, length: number): Promise<Buffer> {
  let fd: FileHandle;
  try {
    fd = await open(path, "r");
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fd.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fd.close();
  }
}

/** The agent's end of a VM's console socket. */
export interface ConsoleDrain {
  /** Resolves when the socket closed (the VM exited, or `close`) and the log is flushed. */
  readonly done: Promise<void>;
  /** Disconnects (agent shutdown): the VM keeps running, its output is dropped until the next agent. */
  close(): void;
}

/**
 * How long the drain leaves the console socket unread after each read.
 * QEMU's serial port sends the host one byte per write: read as they came,
 * a guest flooding its console cost the agent a core (≈ 3 µs a byte,
 * measured). Read at this pace, what the guest wrote meanwhile comes in one
 * read, and a flooding guest waits on the socket's buffer instead.
 */
const CONSOLE_READ_PACE_MS = 5;

/**
 * What every drain reads into: one for all VMs, since each read is copied
 * out before the next read of any socket.
 */
const readBuffer = Buffer.allocUnsafe(64 * 1024);

/**
 * Connects to a VMM's console socket and appends what comes out to the
 * VM's bounded console log. Never throws: a console that cannot be read
 * (a VM started before consoles were sockets) is logged and left alone.
 */
export function drainConsole(
  socketPath: string,
  runDir: string,
  vmId: string,
  log: Logger,
  capBytes = CONSOLE_CAP_BYTES,
): ConsoleDrain {
  const sink = new ConsoleSink(runDir, vmId, capBytes);
  let pace: NodeJS.Timeout | undefined;
  const socket = createConnection({
    path: socketPath,
    onread: {
      buffer: readBuffer,
      // Returning false stops reading until the pace is over (and the sink
      // has taken what it holds: a slow disk slows the guest's console).
      callback: (n: number, buf: Uint8Array) => {
        const resume = () => {
          pace = setTimeout(() => socket.resume(), CONSOLE_READ_PACE_MS);
        };
        if (sink.write(Buffer.from(buf.subarray(0, n)))) resume();
        else sink.once("drain", resume);
        return false;
      },
    },
  });
  const report = (err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    // A close from either side ends the console; only other failures are news.
    if (code !== "ERR_STREAM_PREMATURE_CLOSE" && code !== "ECONNRESET") {
      log.warn({ err: messageOf(err), socket: socketPath }, "console log stopped");
    }
  };
  socket.on("error", report);
  socket.once("close", () => {
    clearTimeout(pace);
    if (!sink.destroyed) sink.end();
  });
  const done = finished(sink).catch((err: unknown) => {
    report(err);
    socket.destroy();
  });
  return {
    done,
    close: () => {
      socket.destroy();
      sink.destroy();
    },
  };
}
