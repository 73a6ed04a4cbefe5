import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { OpenAPIHono } from "@hono/zod-openapi";
import { compress } from "hono/compress";
import type { AppEnv } from "../context.ts";
import { errorBody } from "../errors.ts";

/** The dashboard's build (`npm run build -w @wrenn/web`); WRENN_WEB_DIST points elsewhere. */
export function defaultWebDist(): string {
  return (
    process.env.WRENN_WEB_DIST ?? fileURLToPath(new URL("../../../web/dist/", import.meta.url))
  );
}

/**
 * Client routes live under `/dashboard` (plus `/` and the seed's `/test`), so
 * they never shadow E2B's root paths (`/sandboxes`, `/templates`, `/v2/…`)
 * and no unknown path answers HTML instead of a JSON 404.
 */
export const DASHBOARD_ROUTES = ["/", "/test", "/dashboard", "/dashboard/*"] as const;

const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".json": "application/json",
  ".map": "application/json",
};

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Wrenn</title>
<body style="font:16px system-ui;max-width:40rem;margin:4rem auto;padding:0 1rem">
<h1>The dashboard is not built</h1>
<p>Run <code>npm run build -w @wrenn/web</code> in the repository (<code>wrenn up</code> does it
when the build is missing), then reload. The API is at <a href="/docs">/docs</a>.</p></body>`;

/** Serves the dashboard's static build; the API routes are mounted before it. */
export function mountDashboard(app: OpenAPIHono<AppEnv>, dist: string = defaultWebDist()): void {
  const index = async () => readFile(join(dist, "index.html"), "utf8").catch(() => null);
  app.use("/assets/*", compress());
  for (const path of DASHBOARD_ROUTES) app.use(path, compress());
  for (const path of DASHBOARD_ROUTES) {
    app.get(path, async (c) => {
      const html = await index();
      c.header("cache-control", "no-cache");
      return html === null ? c.html(NOT_BUILT, 503) : c.html(html);
    });
  }
  app.get("/assets/*", async (c) => {
    // normalize() resolves `..`; anything that leaves the assets folder is not ours.
    let rel: string;
    try {
      rel = normalize(decodeURIComponent(c.req.path)).replace(/^[/\\]+/, "");
    } catch {
      return c.json(
        errorBody("invalid_argument", "the asset path is not valid percent-encoding"),
        400,
      );
    }
    const file = join(dist, rel);
    if (!rel.startsWith(`assets${sep}`) || !file.startsWith(join(dist, "assets") + sep)) {
      return c.json(errorBody("not_found", `no asset ${c.req.path}`), 404);
    }
    const body = await readFile(file).catch(() => null);
    if (body === null) return c.json(errorBody("not_found", `no asset ${c.req.path}`), 404);
    // Vite names assets by content hash: a name never changes meaning.
    c.header("cache-control", "public, max-age=31536000, immutable");
    c.header("content-type", TYPES[extname(file)] ?? "application/octet-stream");
    return c.body(body);
  });
}
