import { once } from "node:events";
import type { ClientRequest, IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { writeThrough } from "@wrenn/shared/body-relay.ts";
import { WrennError } from "@wrenn/shared/errors.ts";
import { MultipartSplitter, type PartInfo, type PartSink } from "@wrenn/shared/multipart.ts";
import { takeBody } from "@wrenn/shared/socket-body.ts";

/** The `file` part must begin within this many bytes: the fields before it are held until then. */
const HEAD_MAX = 64 << 10;
/** A `path` or `user` field's longest value. */
const FIELD_MAX = 8192;

export interface UploadTarget {
  path: string;
  user: string;
}

/** Checks the file's target once it is known (the query's, or the fields before the file part). */
export type CheckTarget = (path: string | undefined, user: string) => UploadTarget;

/** Opens envd's `POST /files` for the target: the body to write to, and envd's answer. */
export type OpenUpload = (target: UploadTarget) => {
  body: ClientRequest;
  written: Promise<void>;
};

/**
 * A REST upload's body, forwarded to envd byte for byte as it arrives, with
 * the client's length: envd then reads it past Node's HTTP parser, where
 * parsing it here and sending the file's bytes on as a stream of unknown
 * length (the former WriteFileStream RPC, then a chunked body) held uploads
 * at 0.28× envd direct. A raw body (no `boundary`) is the file itself, its
 * target the query's. A multipart body is only watched here: the fields
 * before the `file` part name the target (envd takes it from the query),
 * the file part's bytes are counted for the answer, and a second `file`
 * part is refused (envd would write it too); envd splits it again, which
 * costs the guest CPU a raw body does not.
 *
 * On failure the rest of the client's body is read and dropped, so the
 * client reads the error instead of a reset.
 */
export async function forwardUpload(
  source: Readable,
  opts: {
    /** The multipart body's boundary; none: the body is the file's bytes. */
    boundary: string | undefined;
    query: { path: string | undefined; user: string };
    check: CheckTarget;
    open: OpenUpload;
    /**
     * The body's length when `source` is a request whose body can be read
     * off its socket (`takeoverLength`): read so, a MiB a read (the caller
     * answers with `Connection: close`).
     */
    takeover?: number | undefined;
  },
): Promise<UploadTarget & { size: number }> {
  let { path, user } = opts.query;
  let upstream: ReturnType<OpenUpload> | undefined;
  let target: UploadTarget | undefined;
  let size = 0;
  const counting: PartSink = {
    write: (d) => {
      size += d.length;
      return true;
    },
    ready: async () => undefined,
    end: () => undefined,
  };
  const splitter =
    opts.boundary === undefined ? undefined : new MultipartSplitter(opts.boundary, onPart);
  function onPart(info: PartInfo): PartSink | undefined {
    if (info.file && info.name === "file") {
      if (target !== undefined) {
        throw new WrennError("invalid_argument", "send one `file` part per upload");
      }
      target = opts.check(path, user);
      upstream = opts.open(target);
      return counting;
    }
    if (target === undefined && !info.file && (info.name === "path" || info.name === "user")) {
      return field(info.name, (value) => {
        if (info.name === "path") path = value;
        else user = value;
      });
    }
    return undefined;
  }

  let held: Buffer[] = [];
  let heldBytes = 0;
  /** One piece of the body; `reused`: its buffer is read into again once this settles. */
  const take = (chunk: Buffer, reused: boolean): Promise<void> | undefined => {
    if (splitter) splitter.push(chunk);
    else size += chunk.length;
    if (upstream === undefined) {
      held.push(reused ? Buffer.from(chunk) : chunk);
      heldBytes += chunk.length;
      if (heldBytes > HEAD_MAX) {
        throw new WrennError(
          "invalid_argument",
          "the `file` part must begin within the body's first 64 KiB: send the `path` and `user` fields before it, or pass ?path=",
        );
      }
      return undefined;
    }
    const { body, written } = upstream;
    for (const h of held) body.write(h);
    held = [];
    if (reused) {
      // Settles when the chunk is handed on (its buffer is read into next), or envd refused.
      return new Promise<void>((resolve, reject) => {
        writeThrough(body, chunk).then(resolve, reject);
        written.catch(reject);
      });
    }
    if (body.write(chunk)) return undefined;
    return Promise.race([once(body, "drain").then(() => undefined), written]);
  };
  try {
    if (splitter === undefined) {
      target = opts.check(path, user);
      upstream = opts.open(target);
    }
    if (opts.takeover !== undefined) {
      await takeBody(source as IncomingMessage, opts.takeover, {
        ownSize: 1 << 20,
        take: (d) => take(d, true),
      });
    } else {
      for await (const chunk of source.iterator({
        destroyOnReturn: false,
      }) as AsyncIterable<Buffer>) {
        await take(chunk, false);
      }
    }
    splitter?.end();
    if (upstream === undefined || target === undefined) {
      throw new WrennError("invalid_argument", "the multipart body has no `file` part");
    }
    upstream.body.end();
    await upstream.written;
    return { ...target, size };
  } catch (err) {
    upstream?.body.destroy();
    // takeBody has read (and dropped) what was left; a stream is drained here.
    if (opts.takeover === undefined) source.resume();
    throw err;
  }
}

/** Collects a small field's value; `done` gets it once the part ends. */
function field(name: string, done: (value: string) => void): PartSink {
  const chunks: Buffer[] = [];
  let length = 0;
  return {
    write(d) {
      length += d.length;
      if (length > FIELD_MAX) {
        throw new WrennError(
          "invalid_argument",
          `the \`${name}\` field is over ${FIELD_MAX} bytes`,
        );
      }
      chunks.push(Buffer.from(d));
      return true;
    },
    ready: async () => undefined,
    end: () => done(Buffer.concat(chunks).toString("utf8")),
  };
}
