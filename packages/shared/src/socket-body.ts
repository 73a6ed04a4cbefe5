import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";

/** Bodies below this go through Node's HTTP parser as usual: the takeover pays off on large ones. */
const TAKEOVER_MIN = 1 << 20;
/** How long the rest of a failed upload's body is read and dropped before the answer goes out. */
const DRAIN_MS = 10_000;

/**
 * The parts of Node's TCP handle and net.Socket that `net.connect({onread})`
 * uses, which a server's socket has as well: `useUserBuffer` makes the handle
 * read into a buffer of ours, and the socket's kBuffer / kBufferCb /
 * kBufferGen slots say which buffer and whom to tell. Internal to Node, so
 * looked up and checked on every use; without them uploads take the
 * parser's path.
 */
interface StreamHandle {
  useUserBuffer(buffer: Uint8Array): void;
  readStart(): number;
  readStop(): number;
  reading: boolean;
}
interface Slots {
  handle: StreamHandle;
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}
type SlotSocket = Socket & Record<symbol, unknown> & { _handle?: Partial<StreamHandle> | null };

function slotsOf(socket: Socket): Slots | undefined {
  const s = socket as SlotSocket;
  // A TLS socket's handle reads ciphertext: only a plain TCP socket qualifies.
  if ("encrypted" in socket) return undefined;
  const handle = s._handle;
  if (
    typeof handle?.useUserBuffer !== "function" ||
    typeof handle.readStart !== "function" ||
    typeof handle.readStop !== "function"
  ) {
    return undefined;
  }
  const symbols = Object.getOwnPropertySymbols(socket);
  const find = (name: string) => symbols.find((x) => x.description === name);
  const buffer = find("kBuffer");
  const callback = find("kBufferCb");
  const generator = find("kBufferGen");
  if (buffer === undefined || callback === undefined || generator === undefined) return undefined;
  return { handle: handle as StreamHandle, buffer, callback, generator };
}

/**
 * The body's length if `takeBody` can take this message's body off the
 * socket itself: a plain Content-Length body (no chunked framing, no
 * Content-Encoding) of at least TAKEOVER_MIN bytes on a plain TCP socket.
 * A request's, or a response's (on a client socket) alike.
 */
export function takeoverLength(req: IncomingMessage): number | undefined {
  if (req.headers["transfer-encoding"] !== undefined) return undefined;
  if (req.headers["content-encoding"] !== undefined) return undefined;
  const length = Number(req.headers["content-length"]);
  if (!Number.isSafeInteger(length) || length < TAKEOVER_MIN || req.complete) return undefined;
  return slotsOf(req.socket) === undefined ? undefined : length;
}

/**
 * What takes a body's bytes off the socket. `take` gets bytes in a buffer of
 * the taker's own (and those the parser had already taken); a returned
 * promise means "wait": no read happens until it settles, and `data` stays
 * untouched until then. A reader with `target` has reads land straight in
 * the buffer it gives (no copy at all), reported through `landed`.
 */
export interface BodyReader {
  /** Bytes of the buffer reads land in when there is no target. */
  ownSize: number;
  take(data: Buffer): Promise<void> | undefined;
  target?(): Buffer | undefined;
  landed?(n: number): Promise<void> | undefined;
}

/**
 * Reads the `length` bytes of `req`'s body straight from its socket, past
 * Node's HTTP parser, up to a read's worth (1 MiB) at a time. The parser
 * hands a body over in fresh 64 KiB buffers, each through the stream
 * machinery and later the collector; on a one-vCPU TCG guest that cost
 * ≈ 0.6 s of CPU per 100 MiB before any byte reached the disk. Measured in
 * a guest (100 MiB into BlockWriter's O_DIRECT writes): read straight into
 * the blocks 0.31–0.37 s of guest CPU and 217–239 MB/s; through the parser
 * with the same writes 0.73–0.80 s and 114–125 MB/s.
 *
 * The parser never sees these bytes, so the connection cannot carry another
 * request: the caller must answer with `Connection: close`. Rejects if the
 * client goes away first, or with what a reader's promise rejected with.
 */
export async function takeBody(
  req: IncomingMessage,
  length: number,
  reader: BodyReader,
  stop?: Promise<unknown>,
): Promise<void> {
  // The parser may still be working through the read that held the headers;
  // what it takes of the body waits in `req`.
  await new Promise<void>((resolve) => setImmediate(resolve));
  let got = 0;
  let failure: unknown;
  for (let chunk: Buffer | null; (chunk = req.read() as Buffer | null) !== null;) {
    got += chunk.length;
    if (failure !== undefined) continue;
    try {
      await reader.take(chunk);
    } catch (err) {
      failure = err;
    }
  }
  const socket = req.socket as SlotSocket;
  const slots = got < length ? slotsOf(socket) : undefined;
  if (got >= length || slots === undefined || socket.destroyed) {
    if (failure !== undefined) throw failure;
    if (got >= length) return;
    throw new Error("the client closed the connection");
  }
  const { handle } = slots;
  const own = Buffer.allocUnsafe(Math.min(reader.ownSize, length - got));
  await new Promise<void>((resolve, reject) => {
    let landing: Buffer = own;
    let direct = false;
    let done = false;
    let drainTimer: NodeJS.Timeout | undefined;
    const settle = (err?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(drainTimer);
      // A read the server may start later (it resumes a request it never
      // saw end) lands in our own buffer and stops the socket again.
      socket[slots.callback] = () => false;
      socket[slots.generator] = () => own;
      socket.off("close", onClose);
      socket.off("error", onClose);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onClose = () => settle(failure ?? new Error("the client closed the connection"));
    const resume = () => {
      if (done) return;
      handle.reading = true;
      handle.readStart();
    };
    /**
     * After a failure the rest of the body is read and dropped before the
     * answer, so a client that sends its whole body before it reads gets to
     * read the error instead of a reset — for DRAIN_MS at most.
     */
    const fail = (err: unknown) => {
      if (done || failure !== undefined) return;
      failure = err;
      if (got >= length) {
        settle(err);
        return;
      }
      drainTimer = setTimeout(() => settle(err), DRAIN_MS);
      socket[slots.callback] = (nread: number): boolean => {
        got += nread;
        if (got < length) return true;
        settle(err);
        return false;
      };
      socket[slots.generator] = () => own.subarray(0, Math.min(own.length, length - got));
      resume();
    };
    const next = (): Buffer => {
      const room = length - got;
      let target: Buffer | undefined;
      try {
        target = done || failure !== undefined ? undefined : reader.target?.();
      } catch {
        // A failed write: the reader tells at its next call.
      }
      direct = target !== undefined && target.length > 0;
      landing = direct ? target! : own;
      return landing.subarray(0, Math.min(landing.length, room));
    };
    socket[slots.callback] = (nread: number): boolean => {
      if (done) return false;
      let wait: Promise<void> | undefined;
      try {
        wait = direct ? reader.landed?.(nread) : reader.take(landing.subarray(0, nread));
      } catch (err) {
        got += nread;
        fail(err);
        return failure === undefined || got < length;
      }
      got += nread;
      if (wait === undefined) {
        if (got < length) return true;
        settle();
        return false;
      }
      wait.then(() => {
        if (failure !== undefined) return;
        if (got < length) resume();
        else settle();
      }, fail);
      return false;
    };
    socket[slots.generator] = next;
    socket.once("close", onClose);
    socket.once("error", onClose);
    void stop?.catch(fail);
    if (failure !== undefined) {
      // The reader failed on what the parser had taken: drain from the start.
      const err = failure;
      failure = undefined;
      fail(err);
    }
    const first = (socket[slots.generator] as () => Buffer)();
    socket[slots.buffer] = first;
    handle.useUserBuffer(first);
    resume();
  });
}
