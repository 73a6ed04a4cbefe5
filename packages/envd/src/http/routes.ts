import type { IncomingMessage, ServerResponse } from "node:http";
import type { EnvdContext } from "../context.ts";
import { checkAccess } from "./auth.ts";
import type * as Files from "./files.ts";
import { handleInit } from "./init.ts";
import { MetricsSampler } from "./metrics.ts";
import { sendError, sendFailure, sendJson } from "./respond.ts";

let files: Promise<typeof Files> | undefined;
/** One per process: every envd in it sees the same machine, and CPU % is since the last call. */
let metrics: MetricsSampler | undefined;

/**
 * /files (zlib, the multipart splitter, the transfer code) loads on the first transfer: a
 * sandbox's create waits for envd to listen and needs none of it until then.
 */
function filesRoutes(): Promise<typeof Files> {
  files ??= import("./files.ts");
  return files;
}

/** Plain HTTP routes beside the Connect services: /health, /metrics, /init, /files. */
export async function handleHttp(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: EnvdContext,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://envd");
  const route = `${req.method ?? "GET"} ${url.pathname}`;
  try {
    switch (route) {
      case "GET /health":
        // E2B's envd answers 204 without a body; the version rides in a header for the host agent.
        res
          .writeHead(204, { "x-envd-version": ctx.state.version, "cache-control": "no-store" })
          .end();
        return;
      case "GET /version":
        checkAccess(req, url, ctx.state);
        sendJson(res, 200, { version: ctx.state.version });
        return;
      case "GET /metrics":
        checkAccess(req, url, ctx.state);
        metrics ??= new MetricsSampler();
        sendJson(res, 200, metrics.sample());
        return;
      case "POST /init":
        checkAccess(req, url, ctx.state);
        await handleInit(req, ctx);
        res.writeHead(204).end();
        return;
      case "GET /files":
        checkAccess(req, url, ctx.state, "read");
        await (await filesRoutes()).downloadFile(req, res, url, ctx);
        return;
      case "POST /files":
        checkAccess(req, url, ctx.state, "write");
        await (await filesRoutes()).uploadFiles(req, res, url, ctx);
        return;
      default:
        req.resume();
        sendError(res, 404, `no route for ${req.method} ${url.pathname}`);
    }
  } catch (err) {
    if (!req.complete) {
      res.setHeader("connection", "close");
      req.resume();
    }
    if (!res.headersSent) ctx.log.debug({ route, err }, "request failed");
    sendFailure(res, err);
  }
}
