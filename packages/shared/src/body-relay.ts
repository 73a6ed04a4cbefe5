import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { Writable } from "node:stream";
import { takeBody, takeoverLength, type BodyReader } from "./socket-body.ts";

/**
 * Hop-by-hop headers of an answer, which this connection decides for itself
 * (Node frames the body it is given: chunked, or by its length).
 */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
]);

/**
 * Relays a request whose body is `length` bytes (`takeoverLength(req)`) to
 * `upstream`, reading the body off the caller's socket past Node's HTTP
 * parser, a MiB a read, each read written on before the next is taken (no
 * copy). Relaying a GiB over loopback this way cost 0.9 CPU-seconds against
 * 2.5–3.6 through the parser and http-proxy-3's pipe, whose 64 KiB chunks
 * each go through the stream machinery. The answer streams back as usual;
 * the caller's connection closes after it (the parser never saw the body).
 *
 * `failed` is told when the upstream request fails before any answer (the
 * caller answers, e.g. a 502); after that the caller's response is destroyed.
 */
export function relayBody(
  req: IncomingMessage,
  res: ServerResponse,
  length: number,
  upstream: ClientRequest,
  failed: (err: Error) => void,
): void {
  let answered = false;
  upstream.once("response", (answer) => {
    answered = true;
    relayAnswer(answer, res, req.method, { close: true });
  });
  const body = takeBody(req, length, writingTo(upstream)).then(
    () => {
      upstream.end();
    },
    (err: unknown) => {
      upstream.destroy(err instanceof Error ? err : new Error(String(err)));
    },
  );
  upstream.on("error", (err) => {
    if (answered || res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    // Answered once the caller's body is read (takeBody drops what is left,
    // 10 s at most): the connection closes with the answer, and a caller
    // still sending would meet a reset instead of reading it.
    void body.then(() => {
      if (res.headersSent || res.destroyed) return;
      res.setHeader("connection", "close");
      failed(err);
    });
  });
}

/**
 * Sends `answer` (an upstream's response) on as `res`: its status and
 * headers less the hop-by-hop ones (this connection's own are Node's, or
 * `close`), then its body. A body of 1 MiB or more with its length is read
 * off the upstream socket past the parser, as `relayBody` reads requests
 * (a GiB over loopback: 0.8 CPU-s against 2.3–4.0 through `pipe`); that
 * socket then closes instead of going back to its pool.
 */
export function relayAnswer(
  answer: IncomingMessage,
  res: ServerResponse,
  method: string | undefined,
  opts: { close?: boolean } = {},
): void {
  const headers: string[] = [];
  for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
    const name = answer.rawHeaders[i]!;
    if (!HOP_BY_HOP.has(name.toLowerCase())) headers.push(name, answer.rawHeaders[i + 1]!);
  }
  if (opts.close) headers.push("connection", "close");
  res.writeHead(answer.statusCode ?? 502, answer.statusMessage, headers);
  relayAnswerBody(answer, res, method).catch(() => res.destroy());
}

/**
 * `answer`'s body into `res` (headers already sent) at `res`'s pace; if
 * either side goes away first, both are closed and it rejects. See
 * relayAnswer for the large-body path.
 */
export async function relayAnswerBody(
  answer: IncomingMessage,
  res: ServerResponse,
  method: string | undefined,
): Promise<void> {
  const status = answer.statusCode ?? 0;
  const length =
    method !== "HEAD" && status >= 200 && status < 300 && status !== 204
      ? takeoverLength(answer)
      : undefined;
  if (length === undefined) {
    await pipeline(answer, res);
    return;
  }
  // The parser never sees the body: the response never ends for Node, so its socket is closed here.
  answer.on("error", () => undefined);
  // A caller gone ends the upstream read at once (takeBody would drain it for a while).
  const onClose = () => {
    if (!res.writableFinished) answer.socket.destroy();
  };
  res.once("close", onClose);
  try {
    await takeBody(answer, length, writingTo(res));
    res.end();
  } catch (err) {
    // As pipeline does: a relay cut short leaves neither side open.
    res.destroy();
    throw err;
  } finally {
    res.off("close", onClose);
    answer.socket.destroy();
  }
}

/**
 * Writes `data` to `dest` and settles once it is handed on (or failed): the
 * buffer is then free to be read into again, so a relay needs no copy.
 */
export function writeThrough(dest: Writable, data: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    dest.write(data, (err) => (err ? reject(err) : resolve())),
  );
}

/** A body reader that writes each read (up to a MiB) through to `dest` before the next. */
function writingTo(dest: Writable): BodyReader {
  return { ownSize: 1 << 20, take: (data) => writeThrough(dest, data) };
}
