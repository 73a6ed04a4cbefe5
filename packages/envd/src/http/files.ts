import { open, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { basename, dirname } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { EnvdContext } from "../context.ts";
import { fsError } from "../filesystem/errors.ts";
import { writeMetadata } from "../filesystem/metadata.ts";
import { giveTo, makeDirsFor } from "../filesystem/ownership.ts";
import { resolveUserPath } from "../filesystem/paths.ts";
import { lookupUser, type LinuxUser } from "../users.ts";
import { feedStream, receiveBody, receiveFile, sendFile } from "./file-io.ts";
import { reclaimWhileStreaming } from "./reclaim.ts";
import { sendFailure, sendJson } from "./respond.ts";
import { takeBody, takeoverLength } from "@wrenn/shared/socket-body.ts";
import { BlockWriter } from "./block-writer.ts";
import { boundaryOf, MultipartSplitter, type PartSink } from "@wrenn/shared/multipart.ts";

/** Large chunks keep syscalls per GiB low; memory stays at a few of them per transfer. */
const CHUNK = 1 << 20;
const METADATA_HEADER = "x-metadata-";

/** What POST /files returns per written file (the e2b SDK's WriteInfo). */
export interface WrittenFile {
  name: string;
  type: "file";
  path: string;
  metadata?: Record<string, string>;
}

async function filesUser(url: URL, ctx: EnvdContext): Promise<LinuxUser> {
  const name = url.searchParams.get("username") || ctx.state.defaultUser;
  return lookupUser(name);
}

function pathParam(url: URL): string | undefined {
  const path = url.searchParams.get("path");
  return path === null || path === "" ? undefined : path;
}

/** `X-Metadata-<key>: <value>` headers, as the e2b SDK sends file metadata. */
function metadataFrom(req: IncomingMessage): Record<string, string> | undefined {
  let metadata: Record<string, string> | undefined;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] ?? "";
    if (!name.toLowerCase().startsWith(METADATA_HEADER)) continue;
    const key = name.slice(METADATA_HEADER.length);
    if (key === "") throw new WrennError("invalid_argument", "X-Metadata- header without a key");
    metadata ??= {};
    metadata[key] = req.rawHeaders[i + 1] ?? "";
  }
  return metadata;
}

/**
 * Gzip only when the client asks for gzip alone (the e2b SDK's `gzip: true`
 * sends exactly "gzip"). fetch and browsers offer "gzip, deflate" on every
 * request; compressing every download for them would spend the sandbox's CPU
 * and cut throughput several-fold for bytes that are often incompressible.
 */
export function wantsGzip(header: string | undefined): boolean {
  let gzip = false;
  for (const part of (header ?? "").split(",")) {
    const [token = "", ...params] = part.trim().toLowerCase().split(";");
    if (token === "") continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    const refused = q !== undefined && Number(q.slice(2)) === 0;
    if (token === "gzip" || token === "x-gzip") gzip = !refused;
    else if (token !== "identity" && !refused) return false;
  }
  return gzip;
}

function gzipped(req: IncomingMessage): boolean {
  return (req.headers["content-encoding"] ?? "").toLowerCase() === "gzip";
}

/** GET /files: streams a file, gzipped when the client accepts it. */
export async function downloadFile(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: EnvdContext,
): Promise<void> {
  const user = await filesUser(url, ctx);
  const raw = pathParam(url);
  if (raw === undefined)
    throw new WrennError("invalid_argument", "query parameter 'path' is required");
  const path = resolveUserPath(raw, user);
  const st = await stat(path).catch((err: unknown) => {
    throw fsError(err, path);
  });
  if (st.isDirectory())
    throw new WrennError("invalid_argument", `'${path}' is a directory, not a file`);
  const file = await open(path, "r").catch((err: unknown) => {
    throw fsError(err, path);
  });
  const gzip = wantsGzip(req.headers["accept-encoding"]);
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent(basename(path))}`,
    ...(gzip ? { "content-encoding": "gzip", vary: "Accept-Encoding" } : {}),
    // Devices and FIFOs report size 0 but have data: those go chunked.
    ...(!gzip && st.isFile() ? { "content-length": st.size } : {}),
  });
  try {
    if (gzip) {
      const source = file.createReadStream({ highWaterMark: CHUNK, autoClose: false });
      reclaimWhileStreaming(source);
      await pipeline(source, createGzip(), res);
    } else {
      await sendFile(file, res, st.isFile() ? st.size : undefined);
    }
  } catch (err) {
    // The client hung up (or the file could not be read on): nothing left to tell it.
    res.destroy();
    ctx.log.debug({ path, err }, "download ended early");
  } finally {
    await file.close();
  }
}

/** Streams one upload to its path (`receive` writes it); parents and new files go to the user. */
async function writeOne(
  receive: (path: string) => Promise<void>,
  path: string,
  user: LinuxUser,
  metadata: Record<string, string> | undefined,
): Promise<WrittenFile> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) throw new WrennError("invalid_argument", `'${path}' is a directory`);
  await makeDirsFor(dirname(path), user);
  try {
    await receive(path);
  } catch (err) {
    throw fsError(err, path);
  }
  if (existing === undefined) await giveTo(path, user);
  if (metadata !== undefined) {
    await writeMetadata(path, metadata).catch((err: unknown) => {
      throw fsError(err, path);
    });
  }
  return {
    name: basename(path),
    type: "file",
    path,
    ...(metadata !== undefined ? { metadata } : {}),
  };
}

/** Hands the body to `take` piece by piece, waiting when it asks; rejects if `stop` does. */
type Feed = (
  take: (data: Buffer) => Promise<void> | undefined,
  stop: Promise<never>,
) => Promise<void>;

/**
 * A multipart body split with MultipartSplitter (Buffer.indexOf: busboy's
 * byte-by-byte scan held a TCG guest at 35–39 MB/s): each `file` part's
 * bytes are copied into its own BlockWriter while writeOne checks its path
 * and makes its parents. `feed` reads the body: off the socket for one of
 * known length (the caller answers `Connection: close`), else as it comes
 * through Node's parser (chunked, gzipped, small).
 */
async function uploadMultipart(
  feed: Feed,
  boundary: string,
  queryPath: string | undefined,
  user: LinuxUser,
  metadata: Record<string, string> | undefined,
): Promise<WrittenFile[]> {
  const writes: Promise<WrittenFile>[] = [];
  const ends: ((err?: unknown) => void)[] = [];
  let failWith: (err: unknown) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (failWith = reject));
  failed.catch(() => undefined);
  const splitter = new MultipartSplitter(boundary, (info): PartSink | undefined => {
    if (!info.file || info.name !== "file") return undefined;
    const target = queryPath ?? info.filename;
    if (target === undefined || target === "") {
      throw new WrennError(
        "invalid_argument",
        "no 'path' query parameter and the file part has no filename",
      );
    }
    const path = resolveUserPath(target, user);
    const writer = new BlockWriter();
    let end: (err?: unknown) => void = () => undefined;
    const ended = new Promise<void>((resolve, reject) => {
      end = (err) => (err === undefined ? resolve() : reject(err));
    });
    // Awaited only once the file is open, and never if its path is refused.
    ended.catch(() => undefined);
    ends.push(end);
    const write = writeOne(
      async (p) => {
        await writer.attach(p);
        try {
          await ended;
        } catch (err) {
          writer.fail(err);
        }
        await writer.finish();
      },
      path,
      user,
      metadata,
    );
    write.catch((err: unknown) => {
      writer.fail(err);
      void writer.abort();
      failWith(err);
    });
    writes.push(write);
    return { write: (d) => writer.copy(d), ready: () => writer.ready(true), end: () => end() };
  });
  try {
    await feed((d) => splitter.push(d), failed);
    splitter.end();
  } catch (err) {
    for (const end of ends) end(err);
    // A write's own failure names its file (a full disk is 507): it wins.
    const settled = await Promise.allSettled(writes);
    const failure = settled.find((r) => r.status === "rejected");
    throw failure === undefined ? err : failure.reason;
  }
  const files = await Promise.race([Promise.all(writes), failed]);
  if (files.length === 0) {
    throw new WrennError("invalid_argument", "multipart body has no 'file' part");
  }
  return files;
}

/** POST /files: multipart `file` parts or one application/octet-stream body, streamed to disk. */
export async function uploadFiles(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: EnvdContext,
): Promise<void> {
  let body: Readable = req;
  try {
    const user = await filesUser(url, ctx);
    const queryPath = pathParam(url);
    const metadata = metadataFrom(req);
    if (gzipped(req)) body = req.pipe(createGunzip());
    const type = (req.headers["content-type"] ?? "").toLowerCase();
    let files: WrittenFile[];
    const length = takeoverLength(req);
    const boundary = boundaryOf(req.headers["content-type"] ?? "");
    if (type.startsWith("multipart/form-data")) {
      if (boundary === undefined) {
        throw new WrennError(
          "invalid_argument",
          "bad multipart body: no boundary in its Content-Type",
        );
      }
      let feed: Feed;
      if (length !== undefined) {
        // The body is read past the parser: this connection ends with the answer.
        res.setHeader("connection", "close");
        feed = (take, stop) => takeBody(req, length, { ownSize: CHUNK, take }, stop);
      } else {
        feed = (take, stop) => feedStream(body, take, stop);
      }
      files = await uploadMultipart(feed, boundary, queryPath, user, metadata);
    } else {
      if (queryPath === undefined) {
        throw new WrennError(
          "invalid_argument",
          "query parameter 'path' is required for a raw upload",
        );
      }
      const path = resolveUserPath(queryPath, user);
      if (length === undefined) {
        files = [await writeOne((p) => receiveFile(body, p), path, user, metadata)];
      } else {
        // The body is read past the parser: this connection ends with the answer.
        res.setHeader("connection", "close");
        files = [await writeOne((p) => receiveBody(req, length, p), path, user, metadata)];
      }
    }
    sendJson(res, 200, files);
  } catch (err) {
    if (!req.complete) {
      // Do not read a body we refuse; close the connection once the error is out.
      res.setHeader("connection", "close");
      body.resume();
      req.resume();
    }
    sendFailure(res, err);
  }
}
