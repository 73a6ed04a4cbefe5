import { createRoute, z } from "@hono/zod-openapi";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { SandboxService } from "../../sandboxes.ts";
import type { Caller } from "../../context.ts";
import { router, security } from "../router.ts";
import {
  FilePath,
  FileUser,
  IdParams,
  agentErrors,
  commonErrors,
  jsonBody,
  jsonResponse,
  noContent,
} from "../schemas.ts";

const errors = { ...commonErrors, ...agentErrors };

export const DirEntry = z
  .object({
    name: z.string(),
    path: z.string(),
    type: z.enum(["file", "dir", "symlink", "other"]),
    size: z.number().int(),
    modified_at: z.string(),
  })
  .openapi("DirEntry");

const PathQuery = z.object({ path: FilePath, user: FileUser.optional() });
const PathBody = z.object({ path: FilePath, user: FileUser.optional() }).openapi("GuestPath");

// Exit codes of the listing script, so "missing" and "not a directory" are told apart from failures.
const MISSING = 3;
const NOT_DIR = 4;
const LIST_SCRIPT = `if [ ! -e "$1" ]; then exit ${MISSING}; fi
if [ ! -d "$1" ]; then exit ${NOT_DIR}; fi
exec find "$1" -mindepth 1 -maxdepth 1 -printf '%y\\t%s\\t%T@\\t%f\\0'`;

const TYPES: Record<string, z.infer<typeof DirEntry>["type"]> = {
  f: "file",
  d: "dir",
  l: "symlink",
};

/**
 * Directory listing, mkdir and delete for the dashboard's file browser. They
 * run as commands in the guest (paths travel as arguments, never through a
 * shell's parsing), so they need nothing from the agent beyond exec.
 */
export function guestFileRoutes(service: SandboxService) {
  const app = router();

  async function run(caller: Caller, id: string, args: string[], user: string | undefined) {
    const res = await service.exec(caller, id, {
      cmd: "/bin/sh",
      args,
      timeout_sec: 30,
      ...(user ? { user } : {}),
    });
    const text = (s: string) =>
      res.encoding === "base64" ? Buffer.from(s, "base64").toString() : s;
    return { exit: res.exit_code, stdout: text(res.stdout), stderr: text(res.stderr).trim() };
  }

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/sandboxes/{id}/files/list",
      tags: ["files"],
      summary: "List a directory in the sandbox: directories first, then by name",
      security,
      request: { params: IdParams, query: PathQuery },
      responses: { 200: jsonResponse(z.array(DirEntry), "The directory's entries"), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const { path, user } = c.req.valid("query");
      const r = await run(c.get("caller"), id, ["-c", LIST_SCRIPT, "sh", path], user);
      if (r.exit === MISSING) throw new WrennError("not_found", `no such directory: ${path}`);
      if (r.exit === NOT_DIR)
        throw new WrennError("invalid_argument", `${path} is not a directory`);
      if (r.exit !== 0) {
        throw new WrennError("failed_precondition", `listing ${path} failed: ${r.stderr}`);
      }
      const base = path.endsWith("/") ? path : `${path}/`;
      const entries = r.stdout
        .split("\0")
        .filter((line) => line !== "")
        .map((line) => {
          const [type = "", size = "0", mtime = "0", ...rest] = line.split("\t");
          const name = rest.join("\t");
          return {
            name,
            path: base + name,
            type: TYPES[type] ?? ("other" as const),
            size: Number(size) || 0,
            modified_at: new Date(Math.round(Number(mtime) * 1000) || 0).toISOString(),
          };
        })
        .sort((a, b) =>
          a.type === "dir" && b.type !== "dir"
            ? -1
            : b.type === "dir" && a.type !== "dir"
              ? 1
              : a.name.localeCompare(b.name),
        );
      return c.json(entries, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes/{id}/files/mkdir",
      tags: ["files"],
      summary: "Create a directory (and its parents) in the sandbox",
      security,
      request: { params: IdParams, body: jsonBody(PathBody) },
      responses: { 204: noContent, ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const { path, user } = c.req.valid("json");
      const r = await run(c.get("caller"), id, ["-c", 'mkdir -p -- "$1"', "sh", path], user);
      if (r.exit !== 0) throw new WrennError("failed_precondition", `mkdir ${path}: ${r.stderr}`);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/sandboxes/{id}/files/remove",
      tags: ["files"],
      summary: "Delete a file or a directory with everything in it",
      security,
      request: { params: IdParams, body: jsonBody(PathBody) },
      responses: { 204: noContent, ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const { path, user } = c.req.valid("json");
      if (path.replace(/\/+/g, "/") === "/") {
        throw new WrennError("invalid_argument", "refusing to delete the root directory");
      }
      const r = await run(
        c.get("caller"),
        id,
        ["-c", 'if [ ! -e "$1" ] && [ ! -L "$1" ]; then exit 3; fi; rm -rf -- "$1"', "sh", path],
        user,
      );
      if (r.exit === MISSING) throw new WrennError("not_found", `no such file: ${path}`);
      if (r.exit !== 0) throw new WrennError("failed_precondition", `delete ${path}: ${r.stderr}`);
      return c.body(null, 204);
    },
  );

  return app;
}
