import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";

/** A host command something needs, and the Debian package that provides it. */
export interface Tool {
  command: string;
  aptPackage: string;
}

/** What `wrenn image build` runs on the host. */
export const IMAGE_BUILD_TOOLS: readonly Tool[] = [
  { command: "debootstrap", aptPackage: "debootstrap" },
  { command: "chroot", aptPackage: "coreutils" },
  { command: "mkfs.ext4", aptPackage: "e2fsprogs" },
  { command: "e2fsck", aptPackage: "e2fsprogs" },
  { command: "resize2fs", aptPackage: "e2fsprogs" },
  { command: "debugfs", aptPackage: "e2fsprogs" },
  { command: "apt-get", aptPackage: "apt" },
  { command: "apt-cache", aptPackage: "apt" },
  { command: "dpkg-deb", aptPackage: "dpkg" },
  { command: "cpio", aptPackage: "cpio" },
  { command: "busybox", aptPackage: "busybox-static" },
  { command: "lz4", aptPackage: "lz4" },
  { command: "xz", aptPackage: "xz-utils" },
  { command: "zstd", aptPackage: "zstd" },
];

/** What `wrenn setup` itself needs. */
export const SETUP_TOOLS: readonly Tool[] = [
  { command: "apt-get", aptPackage: "apt" },
  { command: "dpkg-query", aptPackage: "dpkg" },
];

/** The absolute path of `command` on `path` (a PATH-style list), or null. */
export function which(command: string, path = process.env.PATH ?? ""): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

export function missingTools(tools: readonly Tool[], path = process.env.PATH): Tool[] {
  return tools.filter((t) => which(t.command, path) === null);
}

/**
 * Fails before any work starts, naming every missing command and the package
 * that brings it, so one `apt-get install` (or `wrenn setup`) fixes all.
 */
export function requireTools(
  tools: readonly Tool[],
  opts: { path?: string; needsRoot?: boolean; hint?: string } = {},
): void {
  const problems: string[] = [];
  if (opts.needsRoot && process.getuid?.() !== 0) problems.push("it must run as root");
  const missing = missingTools(tools, opts.path ?? process.env.PATH);
  if (missing.length > 0) {
    const names = missing.map((t) => `${t.command} (apt package ${t.aptPackage})`).join(", ");
    problems.push(`missing commands: ${names}`);
  }
  if (problems.length === 0) return;
  const hint = opts.hint ?? "";
  throw new WrennError("failed_precondition", `${problems.join("; ")}${hint}`);
}
