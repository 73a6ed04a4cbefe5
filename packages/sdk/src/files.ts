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
 * as the control plane wants it before the file part.
 */
function multipartStream(
  fields: Record<string, string>,
  data: FileData,
): { body: ReadableStream<Uint8Array>; contentType: string } {
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
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
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

  /** Writes `data` to `path` in the sandbox (parents are created), streaming it. */
  async write(
    path: string,
    data: FileData,
    options: FileOptions = {},
  ): Promise<{ path: string; size: number }> {
    const fields: Record<string, string> = { path: field("path", path) };
    if (options.user) fields.user = field("user", options.user);
    const { body, contentType } = multipartStream(fields, data);
    const res = await this.#wrenn.fetch(
      `/v1/sandboxes/${encodeURIComponent(this.#sandboxId)}/files/write`,
      {
        method: "POST",
        headers: { "content-type": contentType },
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
