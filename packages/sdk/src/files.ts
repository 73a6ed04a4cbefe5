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
 * The request body: the data itself, read as the request is sent (a 1 GiB
 * file never sits in memory). Data already in memory goes as a Blob, so
 * the request carries its length (the guest reads a body of known length
 * several times faster than a chunked one).
 */
function rawBody(data: FileData): ReadableStream<Uint8Array> | Blob {
  if (typeof data === "string" || data instanceof Uint8Array) {
    return new Blob([data as Uint8Array<ArrayBuffer>]);
  }
  const iterator = chunksOf(data);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await iterator.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await iterator.return(undefined);
    },
  });
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
    const query = new URLSearchParams({ path, ...(options.user ? { user: options.user } : {}) });
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (options.size !== undefined) headers["content-length"] = String(options.size);
    const res = await this.#wrenn.fetch(
      `/v1/sandboxes/${encodeURIComponent(this.#sandboxId)}/files/write?${query}`,
      {
        method: "POST",
        headers,
        body: rawBody(data),
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
