import { isAbsolute, resolve } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { LinuxUser } from "../users.ts";

/**
 * Resolves a client's path the way E2B's envd does: absolute paths stay,
 * `~` and relative paths are taken from the user's home directory.
 */
export function resolveUserPath(path: string, user: LinuxUser): string {
  if (path === "") throw new WrennError("invalid_argument", "path is required");
  if (path.includes("\0"))
    throw new WrennError("invalid_argument", "path must not contain NUL bytes");
  if (path === "~") return user.home;
  if (path.startsWith("~/")) return resolve(user.home, path.slice(2));
  if (isAbsolute(path)) return resolve(path);
  return resolve(user.home, path);
}
