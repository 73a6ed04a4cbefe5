/**
 * Large-transfer helpers for tests and benchmarks: a gigabyte is made and
 * hashed on the fly, so nothing in the test itself holds it whole.
 */
import { createHash } from "node:crypto";
import { request } from "node:http";

/** `total` deterministic bytes in 1 MiB chunks (each MiB differs). */
export function* patternChunks(total: number): Generator<Buffer> {
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let sent = 0, n = 0; sent < total; sent += block.length, n++) {
    // A fresh buffer each time: a transport may still hold the previous one.
    const out = Buffer.from(block.subarray(0, Math.min(block.length, total - sent)));
    out.writeUInt32LE(n, 0);
    yield out;
  }
}

/**
 * POSTs `prefix`, `total` pattern bytes and `suffix` with backpressure;
 * returns the pattern bytes' sha256 and the response.
 */
export function streamUpload(
  url: string,
  headers: Record<string, string>,
  total: number,
  prefix = Buffer.alloc(0),
  suffix = Buffer.alloc(0),
): Promise<{ sha: string; status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash("sha256");
    const req = request(url, { method: "POST", headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () =>
        resolvePromise({ sha: hash.digest("hex"), status: res.statusCode ?? 0, body }),
      );
    });
    req.on("error", reject);
    const source = patternChunks(total);
    const pump = (): void => {
      for (;;) {
        const next = source.next();
        if (next.done) {
          req.end(suffix);
          return;
        }
        hash.update(next.value);
        if (!req.write(next.value)) {
          req.once("drain", pump);
          return;
        }
      }
    };
    req.write(prefix);
    pump();
  });
}
