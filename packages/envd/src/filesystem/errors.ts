import { WrennError, type ErrorCode } from "@wrenn/shared/errors.ts";

const CODES: Record<string, ErrorCode> = {
  ENOENT: "not_found",
  ENOTDIR: "invalid_argument",
  EISDIR: "invalid_argument",
  EINVAL: "invalid_argument",
  ENAMETOOLONG: "invalid_argument",
  ELOOP: "invalid_argument",
  EEXIST: "already_exists",
  ENOTEMPTY: "already_exists",
  EACCES: "permission_denied",
  EPERM: "permission_denied",
  EROFS: "permission_denied",
  ENOSPC: "resource_exhausted",
  EDQUOT: "resource_exhausted",
};

const EXPLAIN: Record<string, string> = {
  ENOENT: "does not exist",
  ENOTDIR: "a parent of the path is not a directory",
  EISDIR: "is a directory",
  EEXIST: "already exists",
  ENOTEMPTY: "is a directory that is not empty",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "is on a read-only filesystem",
  ENOSPC: "no space left on the sandbox's disk",
  EDQUOT: "disk quota exceeded",
};

/** The errno code of a Node filesystem error, if it is one. */
export function errnoOf(err: unknown): string | undefined {
  if (err instanceof Error && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}

/**
 * Turns a filesystem failure into a WrennError that names the path, so a
 * client sees "'/x/y' does not exist" instead of a bare ENOENT.
 */
export function fsError(err: unknown, path: string): WrennError {
  if (err instanceof WrennError) return err;
  const errno = errnoOf(err);
  const code = (errno !== undefined ? CODES[errno] : undefined) ?? "internal";
  const why =
    (errno !== undefined ? EXPLAIN[errno] : undefined) ??
    (err instanceof Error ? err.message : String(err));
  return new WrennError(code, `'${path}': ${why}`, { cause: err });
}
