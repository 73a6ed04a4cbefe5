import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { takeBody } from "./socket-body.ts";

/** Hop-by-hop headers of an answer that the relay's own connection decides. */
const HOP_BY_HOP = new Set(["connection", "keep-alive"]);

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
    const headers: string[] = [];
    for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
      const name = answer.rawHeaders[i]!;
      if (!HOP_BY_HOP.has(name.toLowerCase())) headers.push(name, answer.rawHeaders[i + 1]!);
    }
    headers.push("connection", "close");
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, headers);
    pipeline(answer, res).catch(() => undefined);
  });
  const body = takeBody(req, length, {
    ownSize: 1 << 20,
    take: (data) =>
      new Promise<void>((resolve, reject) =>
        upstream.write(data, (err) => (err ? reject(err) : resolve())),
      ),
  }).then(
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
