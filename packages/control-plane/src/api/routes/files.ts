import type { ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import busboy from "busboy";
import { createRoute, z } from "@hono/zod-openapi";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { GuestFiles } from "../../proxy/guest-files.ts";
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

/**
 * Files stream end to end: the multipart body is parsed as it arrives and
 * each chunk goes on to the agent's WriteFileStream; reads relay envd's
 * `/files` body through the agent's proxy hop as it comes (guest-files.ts
 * says why not ReadFileStream). Nothing holds a whole file in memory.
 */
export function fileRoutes(deps: Deps, service: SandboxService) {
  const app = router();
  const guestFiles = new GuestFiles({ agentCa: deps.agents.ca });

  app.openAPIRegistry.registerPath({
    method: "post",
    path: "/v1/sandboxes/{id}/files/write",
    tags: ["files"],
    summary: "Write a file: multipart with a `path` field, then a `file` part (or ?path=)",
    security,
    request: {
      params: IdParams,
      query: z.object({ path: FilePath.optional(), user: FileUser.optional() }),
      body: {
        required: true,
        content: {
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
    if (!contentType.toLowerCase().startsWith("multipart/form-data")) {
      throw new WrennError(
        "invalid_argument",
        "send multipart/form-data with a `path` field and a `file` part",
      );
    }
    const body = c.req.raw.body;
    if (!body) throw new WrennError("invalid_argument", "the request has no body");
    const { host } = await service.running(c.get("caller"), id.data.id, "write files to");
    let path = c.req.query("path");
    let user = c.req.query("user") ?? "";
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: { "content-type": contentType },
        limits: { files: 1, fields: 8, fieldSize: 8192 },
      });
    } catch (err) {
      throw new WrennError("invalid_argument", `bad multipart body: ${(err as Error).message}`);
    }
    const written = new Promise<{ path: string; size: number }>((resolve, reject) => {
      let sawFile = false;
      bb.on("field", (name, value) => {
        if (name === "path") path = value;
        if (name === "user") user = value;
      });
      bb.on("file", (name, stream) => {
        if (name !== "file" || sawFile) {
          stream.resume();
          return;
        }
        sawFile = true;
        const checked = FilePath.safeParse(path);
        const checkedUser = FileUser.safeParse(user);
        if (!checked.success || !checkedUser.success) {
          stream.resume();
          reject(
            new WrennError(
              "invalid_argument",
              path === undefined
                ? "send the `path` field before the `file` part, or pass ?path="
                : `bad ${checked.success ? "user" : "path"}: ${describeIssues((checked.error ?? checkedUser.error)?.issues ?? [])}`,
            ),
          );
          return;
        }
        const target = checked.data;
        async function* parts() {
          yield {
            part: {
              case: "header" as const,
              value: { sandboxId: id.data!.id, path: target, user },
            },
          };
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            yield { part: { case: "chunk" as const, value: chunk } };
          }
        }
        deps.agents
          .call(host, (a, o) => a.writeFileStream(parts(), o), FILE_TIMEOUT_MS)
          .then(
            (res) => resolve({ path: target, size: Number(res.size) }),
            (err: unknown) => {
              stream.resume();
              reject(err);
            },
          );
      });
      bb.on("error", (err: Error) =>
        reject(new WrennError("invalid_argument", `bad multipart body: ${err.message}`)),
      );
      bb.on("close", () => {
        if (!sawFile)
          reject(new WrennError("invalid_argument", "the multipart body has no `file` part"));
      });
    });
    const source = Readable.fromWeb(body as NodeReadableStream<Uint8Array>);
    source.on("error", (err) => bb.destroy(err));
    source.pipe(bb);
    return c.json(await written, 200);
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
      const file = await guestFiles.read(
        { sandboxId: id, host, envdAccessToken: row.envdAccessToken },
        { path: req.path, user: req.user ?? "" },
        AbortSignal.timeout(FILE_TIMEOUT_MS),
      );
      // The client's pace reaches the guest through TCP: the pipe pauses the
      // agent's socket when unread, and a client gone destroys it (which ends
      // the agent's request to the guest too).
      const headers: Record<string, string> = { "content-type": "application/octet-stream" };
      const length = file.headers["content-length"];
      if (length !== undefined && /^\d+$/.test(length)) headers["content-length"] = length;
      const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
      if (!outgoing) {
        // Not behind Node's server (app.request): a web stream, at its cost.
        const stream = Readable.toWeb(file) as unknown as ReadableStream<Uint8Array>;
        return c.body(stream, 200, headers);
      }
      // Piped straight to Node's response, as the traffic proxy relays: a web
      // stream and Hono's reader loop between them cost CPU on every chunk.
      outgoing.writeHead(200, headers);
      pipeline(file, outgoing).catch((err: unknown) => {
        deps.log.debug({ sandboxId: id, err: messageOf(err) }, "files/read: relay ended early");
      });
      return new Response(null, { headers: { [ALREADY_SENT]: "1" } });
    },
  );

  return app;
}
