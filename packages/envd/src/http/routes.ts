import type { IncomingMessage, ServerResponse } from "node:http";
import type { EnvdContext } from "../context.ts";

/** Plain HTTP routes beside the Connect services: /health, /init, /files. */
export async function handleHttp(
  req: IncomingMessage,
  res: ServerResponse,
  _ctx: EnvdContext,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://envd");
  if (req.method === "GET" && url.pathname === "/health") {
    res.writeHead(204).end();
    return;
  }
  res.writeHead(404, { "content-type": "application/json" });
  res.end(JSON.stringify({ code: 404, message: `no route for ${req.method} ${url.pathname}` }));
}
