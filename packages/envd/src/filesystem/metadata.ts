import { createRequire } from "node:module";
import type * as Xattr from "@napi-rs/xattr";
import { errnoOf } from "./errors.ts";

let xattrModule: typeof Xattr | undefined;

/**
 * The addon loads on first use, not at envd's start: a sandbox's boot waits
 * for envd to listen, and nothing before the first file call needs xattrs.
 */
function xattr(): typeof Xattr {
  xattrModule ??= createRequire(import.meta.url)("@napi-rs/xattr") as typeof Xattr;
  return xattrModule;
}

/** File metadata lives in extended attributes, so it follows the file through moves. */
const PREFIX = "user.e2b.";

/** Filesystems without user xattrs (some tmpfs, overlay setups) simply have no metadata. */
function unsupported(err: unknown): boolean {
  const code = errnoOf(err);
  return code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "ENODATA";
}

export async function readMetadata(path: string): Promise<Record<string, string>> {
  const metadata: Record<string, string> = {};
  let names: string[];
  try {
    names = await xattr().listAttributes(path);
  } catch (err) {
    if (unsupported(err) || errnoOf(err) === "ENOENT") return metadata;
    throw err;
  }
  for (const name of names) {
    if (!name.startsWith(PREFIX)) continue;
    const value = await xattr()
      .getAttribute(path, name)
      .catch(() => null);
    if (value !== null) metadata[name.slice(PREFIX.length)] = value.toString("utf8");
  }
  return metadata;
}

/** Replaces the file's metadata with exactly `metadata`. */
export async function writeMetadata(path: string, metadata: Record<string, string>): Promise<void> {
  const { listAttributes, removeAttribute, setAttribute } = xattr();
  const old = await listAttributes(path).catch((err: unknown) => {
    if (unsupported(err)) return [];
    throw err;
  });
  for (const name of old) {
    if (name.startsWith(PREFIX) && !(name.slice(PREFIX.length) in metadata)) {
      await removeAttribute(path, name);
    }
  }
  for (const [key, value] of Object.entries(metadata)) {
    await setAttribute(path, PREFIX + key, value);
  }
}
