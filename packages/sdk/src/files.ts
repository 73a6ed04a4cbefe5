import { randomUUID } from "node:crypto";
import { errorFromBody } from "./errors.ts";
import type { Wrenn } from "./wrenn.ts";

/** What a file can be written from; streams and iterables are sent as they are read. */
export type FileData =
  | string
  | Uint8Array
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>
  | Iterable<Uint8Array>;

export interface FileOptions {
  /** The guest user the file belongs to (default: the sandbox's default user). */
  user?: string;
  signal?: AbortSignal;
}

const encoder = new TextEncoder();

async function* chunksOf(data: FileData): AsyncGenerator<Uint8Array> {
  if (typeof data === "string") yield encoder.encode(data);
  else if (data instanceof Uint8Array) yield data;
  else if (data instanceof ReadableStream) yield* data as unknown as AsyncIterable<Uint8Array>;
  else yield* data;
}

/**
 * A multipart body whose file part is the data itself, read as the request
 * is sent: a 1 GiB file never sits in memory. The `path` field comes first,
 * as the control plane wants it before the file part. Data already in
 * memory goes as a Blob, so the request carries its length (the guest reads
 * a body of known length several times faster than a chunked one).
 */
function multipartBody(
  fields: Record<string, string>,
  data: FileData,
  size: number | undefined,
): { body: ReadableStream<Uint8Array> | Blob; contentType: string; length?: number } {
  const boundary = `wrenn-${randomUUID()}`;
  const head =
    Object.entries(fields)
      .map(
        ([name, value]) =>
          `--${boundary}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      )
      .join("") +
    `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="file"\r\n` +
    `content-type: application/octet-stream\r\n\r\n`;
  const tail = `\r\n--${boundary}--\r\n`;
  const contentType = `multipart/form-data; boundary=${boundary}`;
  if (typeof data === "string" || data instanceof Uint8Array) {
    return { body: new Blob([head, data as Uint8Array<ArrayBuffer>, tail]), contentType };
  }
  async function* parts() {
    yield encoder.encode(head);
    yield* chunksOf(data);
    yield encoder.encode(tail);
  }
  const iterator = parts();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await iterator.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await iterator.return(undefined);
    },
  });
  if (size === undefined) return { body, contentType };
  const length = encoder.encode(head).length + size + encoder.encode(tail).length;
  return { body, contentType, length };
}

/** Field values travel in the multipart head; keep them to one line. */
function field(name: string, value: string): string {
  if (/[\r\n]/.test(value)) throw new TypeError(`${name} must not contain line breaks`);
  return value;
}

export class Files {
  readonly #wrenn: Wrenn;
  readonly #sandboxId: string;

  constructor(wrenn: Wrenn, sandboxId: string) {
    this.#wrenn = wrenn;
    this.#sandboxId = sandboxId;
  }

  /**
   * Writes `data` to `path` in the sandbox (parents are created), streaming
   * it. Give a stream's `size` when it is known (a local file's): the
   * request then carries its length, which the guest takes several times
   * faster than a body of unknown length; a stream that yields another
   * number of bytes fails the write.
   */
  async write(
    path: string,
    data: FileData,
    options: FileOptions & { size?: number } = {},
  ): Promise<{ path: string; size: number }> {
    if (options.size !== undefined && !(Number.isSafeInteger(options.size) && options.size >= 0)) {
      throw new TypeError("size must be a whole number of bytes");
    }
    const fields: Record<string, string> = { path: field("path", path) };
    if (options.user) fields.user = field("user", options.user);
    const { body, contentType, length } = multipartBody(fields, data, options.size);
    const headers: Record<string, string> = { "content-type": contentType };
    if (length !== undefined) headers["content-length"] = String(length);
    const res = await this.#wrenn.fetch(
      `/v1/sandboxes/${encodeURIComponent(this.#sandboxId)}/files/write`,
      {
        method: "POST",
        headers,
        body,
        duplex: "half",
        signal: options.signal ?? null,
      } as RequestInit,
    );
    const json: unknown = await res.json().catch(() => null);
    if (!res.ok) throw errorFromBody(res.status, json);
    return json as { path: string; size: number };
  }

  /** The file's bytes as a stream, read from the sandbox as it is consumed. */
  async read(path: string, options: FileOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#wrenn.fetch(
      `/v1/sandboxes/${encodeURIComponent(this.#sandboxId)}/files/read`,
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(options.user ? { path, user: options.user } : { path }),
        signal: options.signal ?? null,
      },
    );
    if (!res.ok) throw errorFromBody(res.status, await res.json().catch(() => null));
    if (!res.body) return new ReadableStream({ start: (c) => c.close() });
    return res.body;
  }

  /** The whole file as text (for small files; use read() for large ones). */
  async readText(path: string, options: FileOptions = {}): Promise<string> {
    return new Response(await this.read(path, options)).text();
  }
}
