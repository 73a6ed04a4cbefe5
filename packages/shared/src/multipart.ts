import { WrennError } from "@wrenn/shared/errors.ts";

/** What a part's headers say about it. */
export interface PartInfo {
  /** The form field's name (Content-Disposition `name`). */
  name: string | undefined;
  /** Content-Disposition `filename` (or `filename*`), as sent: the e2b SDK puts the whole path there. */
  filename: string | undefined;
  /** A file (as busboy has it): a filename, or an application/octet-stream part. */
  file: boolean;
}

/** The boundary of a multipart Content-Type, if it names one. */
export function boundaryOf(contentType: string): string | undefined {
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  // RFC 2046: 1 to 70 characters.
  return boundary !== undefined && boundary.length <= 70 ? boundary : undefined;
}

/** Where a part's bytes go. `write` false: wait on `ready()` before more. */
export interface PartSink {
  write(data: Buffer): boolean;
  ready(): Promise<void>;
  end(): void;
}

/** Longest header block a part may have. */
const HEADERS_MAX = 16 << 10;
const CRLF2 = Buffer.from("\r\n\r\n");

type State = "preamble" | "delimiter" | "headers" | "data" | "done";

function bad(why: string): WrennError {
  return new WrennError("invalid_argument", `bad multipart body: ${why}`);
}

/**
 * Splits a multipart/form-data body into parts, fed in buffers of any size.
 * Boundaries are found with Buffer.indexOf (native code) over whole
 * buffers: busboy looks at every byte in JavaScript, which on a one-vCPU
 * TCG guest held a 100 MiB upload at ≈ 44 MB/s. A part's bytes go to the
 * sink `onPart` gives for it (none: they are dropped) as views of the
 * buffers fed in, so a sink must copy what it keeps before `push` returns.
 * Throws WrennError invalid_argument on a malformed body.
 */
export class MultipartSplitter {
  #delimiter: Buffer;
  #onPart: (info: PartInfo) => PartSink | undefined;
  #state: State = "preamble";
  /** Bytes held back at the end of a buffer: they may begin a delimiter. */
  #carry: Buffer;
  #head: Buffer = Buffer.alloc(0);
  #sink: PartSink | undefined;
  #wait: Promise<void> | undefined;

  constructor(boundary: string, onPart: (info: PartInfo) => PartSink | undefined) {
    this.#delimiter = Buffer.from(`\r\n--${boundary}`);
    this.#onPart = onPart;
    // The body opens with the boundary itself: as if a line break came first.
    this.#carry = Buffer.from("\r\n");
  }

  get done(): boolean {
    return this.#state === "done";
  }

  /** Takes `data`; a returned promise asks the caller to wait before the next push. */
  push(data: Buffer): Promise<void> | undefined {
    this.#wait = undefined;
    let at = 0;
    if (this.#carry.length > 0 && (this.#state === "data" || this.#state === "preamble")) {
      // Held-back bytes and the start of this buffer are looked at together;
      // what is held back again and came from `data` is looked at in place.
      const fromData = Math.min(data.length, this.#delimiter.length - 1);
      const joined = Buffer.concat([this.#carry, data.subarray(0, fromData)]);
      this.#carry = Buffer.alloc(0);
      this.#run(joined, 0, true);
      at = fromData;
      const held = this.#carry.length;
      if ((this.#state === "data" || this.#state === "preamble") && held <= fromData) {
        this.#carry = Buffer.alloc(0);
        at = fromData - held;
      }
    }
    if (at < data.length) this.#run(data, at, false);
    return this.#wait;
  }

  /** The body ended: throws unless the closing boundary came. */
  end(): void {
    if (this.#state !== "done") throw bad("the body ended before its closing boundary");
  }

  #run(data: Buffer, from: number, joined: boolean): void {
    let at = from;
    while (at < data.length) {
      switch (this.#state) {
        case "preamble":
        case "data":
          at = this.#scan(data, at, joined);
          break;
        case "delimiter":
          at = this.#afterDelimiter(data, at);
          break;
        case "headers":
          at = this.#headers(data, at);
          break;
        case "done":
          // The epilogue, if any, means nothing.
          return;
      }
    }
  }

  /** Part bytes up to the next delimiter; the tail that may start one is held back. */
  #scan(data: Buffer, at: number, joined: boolean): number {
    const found = data.indexOf(this.#delimiter, at);
    if (found >= 0) {
      this.#emit(data.subarray(at, found));
      this.#sink?.end();
      this.#sink = undefined;
      this.#state = "delimiter";
      this.#head = Buffer.alloc(0);
      return found + this.#delimiter.length;
    }
    const keep = Math.min(this.#delimiter.length - 1, data.length - at);
    this.#emit(data.subarray(at, data.length - keep));
    // A joined buffer is ours to keep; anything else is copied.
    const tail = data.subarray(data.length - keep);
    this.#carry = joined ? tail : Buffer.from(tail);
    return data.length;
  }

  #emit(bytes: Buffer): void {
    if (bytes.length === 0 || this.#state !== "data" || this.#sink === undefined) return;
    if (!this.#sink.write(bytes)) this.#wait = this.#sink.ready();
  }

  /** After `--boundary`: `--` closes the body; otherwise padding, then CRLF, then headers. */
  #afterDelimiter(data: Buffer, at: number): number {
    let i = at;
    for (; i < data.length; i++) {
      const seen = this.#head.length;
      const byte = data[i]!;
      if (seen === 0 && byte === 0x2d) {
        this.#head = Buffer.from([byte]);
        continue;
      }
      if (seen === 1 && this.#head[0] === 0x2d) {
        if (byte !== 0x2d) throw bad("a boundary is followed by a lone '-'");
        this.#state = "done";
        return data.length;
      }
      if (byte === 0x20 || byte === 0x09) continue;
      if (byte === 0x0d && seen === 0) {
        this.#head = Buffer.from([byte]);
        continue;
      }
      if (byte === 0x0a && seen === 1 && this.#head[0] === 0x0d) {
        this.#head = Buffer.alloc(0);
        this.#state = "headers";
        return i + 1;
      }
      throw bad("a boundary line has bytes after the boundary");
    }
    return i;
  }

  #headers(data: Buffer, at: number): number {
    const piece = data.subarray(at, Math.min(data.length, at + HEADERS_MAX));
    const joined = this.#head.length === 0 ? piece : Buffer.concat([this.#head, piece]);
    // A part without headers has its blank line right away.
    const end = joined.subarray(0, 2).equals(CRLF2.subarray(0, 2)) ? -2 : joined.indexOf(CRLF2);
    if (end === -1) {
      if (joined.length >= HEADERS_MAX) throw bad("a part's headers are longer than 16 KiB");
      this.#head = Buffer.from(joined);
      return at + piece.length;
    }
    const block = end === -2 ? "" : joined.subarray(0, end).toString("utf8");
    const consumed = (end === -2 ? 2 : end + 4) - this.#head.length;
    this.#head = Buffer.alloc(0);
    this.#state = "data";
    this.#sink = this.#onPart(partInfo(block));
    return at + consumed;
  }
}

/** The name and filename from a part's Content-Disposition header. */
export function partInfo(block: string): PartInfo {
  let disposition = "";
  let type = "";
  for (const line of block.split("\r\n")) {
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : "";
    if (name === "content-disposition") disposition = line.slice(colon + 1);
    else if (name === "content-type")
      type = line
        .slice(colon + 1)
        .trim()
        .toLowerCase();
  }
  const params = dispositionParams(disposition);
  const filename = params.get("filename*") ?? params.get("filename");
  return {
    name: params.get("name"),
    filename,
    file: filename !== undefined || type.startsWith("application/octet-stream"),
  };
}

/** `form-data; name="file"; filename="/a b.txt"` → name and filename; `filename*` per RFC 5987. */
function dispositionParams(value: string): Map<string, string> {
  const params = new Map<string, string>();
  let i = value.indexOf(";");
  while (i >= 0 && i < value.length) {
    i++;
    while (value[i] === " " || value[i] === "\t") i++;
    const eq = value.indexOf("=", i);
    if (eq < 0) break;
    const key = value.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    let v = "";
    if (value[i] === '"') {
      for (i++; i < value.length && value[i] !== '"'; i++) {
        if (value[i] === "\\" && i + 1 < value.length) i++;
        v += value[i];
      }
      i = value.indexOf(";", i);
    } else {
      const semi = value.indexOf(";", i);
      v = value.slice(i, semi < 0 ? undefined : semi).trim();
      i = semi;
    }
    if (key.endsWith("*")) {
      // charset'language'percent-encoded
      const m = /^([^']*)'[^']*'(.*)$/.exec(v);
      if (m === null) continue;
      try {
        v =
          m[1]!.toLowerCase() === "utf-8"
            ? decodeURIComponent(m[2]!)
            : m[2]!.replace(/%([0-9a-f]{2})/gi, (_, hex: string) =>
                String.fromCharCode(parseInt(hex, 16)),
              );
      } catch {
        continue;
      }
    }
    if (!params.has(key)) params.set(key, v);
    if (i < 0) break;
  }
  return params;
}
