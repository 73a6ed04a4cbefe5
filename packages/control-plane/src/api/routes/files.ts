import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { relayAnswerBody } from "@wrenn/shared/body-relay.ts";
import { boundaryOf } from "@wrenn/shared/multipart.ts";
import { takeoverLength } from "@wrenn/shared/socket-body.ts";
import { GuestFiles } from "../../proxy/guest-files.ts";
import { forwardUpload, type UploadTarget } from "../../proxy/upload-forward.ts";
import type { SandboxService } from "../../sandboxes.ts";
import type { Deps } from "../../context.ts";
import { describeIssues, router, security } from "../router.ts";
import {
  FilePath,
  FileUser,
  IdParams,
  ReadFileBody,
  WrittenFile,
  agentErrors,
  commonErrors,
  jsonBody,
  jsonResponse,
} from "../schemas.ts";

/** @hono/node-server's mark for a response the handler wrote to Node's own response. */
const ALREADY_SENT = "x-hono-already-sent";

// A 1 GiB upload at a slow link still finishes; a stuck agent still fails eventually.
const FILE_TIMEOUT_MS = 3600_000;

const errors = { ...commonErrors, ...agentErrors };

/** A raw upload's type: the body is the file, sent on to envd as it is (no multipart to split in the guest). */
const RAW_TYPE = "application/octet-stream";

/**
 * Files stream end to end through the agent's proxy hop to envd's `/files`:
 * an upload's body (raw or multipart) is forwarded as it arrives (upload-forward.ts),
 * a read relays envd's body as it comes (guest-files.ts says why not the
 * file RPCs). Nothing holds a whole file in memory.
 */
export function fileRoutes(deps: Deps, service: SandboxService) {
  const app = router();
  const guestFiles = new GuestFiles({ agentCa: deps.agents.ca, localHops: deps.localHops });

  app.openAPIRegistry.registerPath({
    method: "post",
    path: "/v1/sandboxes/{id}/files/write",
    tags: ["files"],
    summary:
      "Write a file: its bytes as application/octet-stream with ?path= (the fastest), or multipart with a `path` field, then a `file` part",
    security,
    request: {
      params: IdParams,
      query: z.object({ path: FilePath.optional(), user: FileUser.optional() }),
      body: {
        required: true,
        content: {
          "application/octet-stream": {
            schema: z.string().openapi({ type: "string", format: "binary" }),
          },
          "multipart/form-data": {
            schema: z.object({
              path: FilePath,
              user: FileUser.optional(),
              file: z.string().openapi({ type: "string", format: "binary" }),
            }),
          },
        },
      },
    },
    responses: { 200: jsonResponse(WrittenFile, "Written"), ...errors },
  });

  app.post("/v1/sandboxes/:id/files/write", async (c) => {
    const id = IdParams.safeParse({ id: c.req.param("id") });
    if (!id.success)
      throw new WrennError("invalid_argument", "sandbox ids are lowercase letters and digits");
    const contentType = c.req.header("content-type") ?? "";
    const type = contentType.split(";")[0]!.trim().toLowerCase();
    const boundary = type === RAW_TYPE ? undefined : boundaryOf(contentType);
    if (type === "multipart/form-data" ? boundary === undefined : type !== RAW_TYPE) {
      throw new WrennError(
        "invalid_argument",
        `send the file's bytes as ${RAW_TYPE} with ?path=, or multipart/form-data (with its boundary) with a \`path\` field and a \`file\` part`,
      );
    }
    const encoding = c.req.header("content-encoding")?.trim().toLowerCase();
    if (encoding !== undefined && encoding !== "" && encoding !== "identity") {
      // The answer's size counts the bytes as sent; envd would write them as they are.
      throw new WrennError(
        "invalid_argument",
        `Content-Encoding '${encoding}' is not supported: send the file's bytes unencoded`,
      );
    }
    const length = contentLength(c.req.header("content-length"));
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const body =
      incoming ??
      (c.req.raw.body
        ? Readable.fromWeb(c.req.raw.body as NodeReadableStream<Uint8Array>)
        : undefined);
    if (!body || length === 0) throw new WrennError("invalid_argument", "the request has no body");
    const { row, host } = await service.running(c.get("caller"), id.data.id, "write files to");
    const target = { sandboxId: id.data.id, host, envdAccessToken: row.envdAccessToken };
    const signal = AbortSignal.timeout(FILE_TIMEOUT_MS);
    const takeover = incoming ? takeoverLength(incoming) : undefined;
    // Read past the parser, the body leaves nothing for another request on this connection.
    if (takeover !== undefined) outgoing(c)?.setHeader("connection", "close");
    const written = await forwardUpload(body, {
      boundary,
      takeover,
      query: { path: c.req.query("path"), user: c.req.query("user") ?? "" },
      check: checkTarget,
      open: (file) => guestFiles.upload(target, file, { contentType, length }, signal),
    }).catch((err: unknown) =>
      service.guestGone(c.get("caller"), id.data.id, "write files to", err),
    );
    return c.json({ path: written.path, size: written.size }, 200);
  });

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes/{id}/files/read",
      tags: ["files"],
      summary: "Read a file; the bytes stream back as they are read",
      security,
      request: { params: IdParams, body: jsonBody(ReadFileBody) },
      responses: {
        200: {
          description: "The file's bytes",
          content: {
            "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) },
          },
        },
        ...errors,
      },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const req = c.req.valid("json");
      const { row, host } = await service.running(c.get("caller"), id, "read files from");
      // Resolves once envd has answered: a missing file is a 404 before any byte.
      const file = await guestFiles
        .read(
          { sandboxId: id, host, envdAccessToken: row.envdAccessToken },
          { path: req.path, user: req.user ?? "" },
          AbortSignal.timeout(FILE_TIMEOUT_MS),
        )
        .catch((err: unknown) => service.guestGone(c.get("caller"), id, "read files from", err));
      // The client's pace reaches the guest through TCP: the pipe pauses the
      // agent's socket when unread, and a client gone destroys it (which ends
      // the agent's request to the guest too).
      const headers: Record<string, string> = { "content-type": "application/octet-stream" };
      const length = file.headers["content-length"];
      if (length !== undefined && /^\d+$/.test(length)) headers["content-length"] = length;
      const response = outgoing(c);
      if (!response) {
        // Not behind Node's server (app.request): a web stream, at its cost.
        const stream = Readable.toWeb(file) as unknown as ReadableStream<Uint8Array>;
        return c.body(stream, 200, headers);
      }
      // Straight to Node's response, as the traffic proxy relays (a web stream
      // and Hono's reader loop between them cost CPU on every chunk).
      response.writeHead(200, headers);
      relayAnswerBody(file, response, "GET").catch((err: unknown) => {
        deps.log.debug({ sandboxId: id, err: messageOf(err) }, "files/read: relay ended early");
      });
      return new Response(null, { headers: { [ALREADY_SENT]: "1" } });
    },
  );

  return app;
}

/** The upload's target, from the query or the fields before the file part, checked as the API's schemas say. */
function checkTarget(path: string | undefined, user: string): UploadTarget {
  if (path === undefined) {
    throw new WrennError(
      "invalid_argument",
      "pass ?path= (or, in a multipart body, a `path` field before the `file` part)",
    );
  }
  const checked = FilePath.safeParse(path);
  if (!checked.success) {
    throw new WrennError("invalid_argument", `bad path: ${describeIssues(checked.error.issues)}`);
  }
  const checkedUser = FileUser.safeParse(user);
  if (!checkedUser.success) {
    throw new WrennError(
      "invalid_argument",
      `bad user: ${describeIssues(checkedUser.error.issues)}`,
    );
  }
  return { path: checked.data, user: checkedUser.data };
}

/** Node's response under @hono/node-server; none under app.request. */
function outgoing(c: Context): ServerResponse | undefined {
  return (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
}

/** A Content-Length header's value, when it is one. */
function contentLength(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}
