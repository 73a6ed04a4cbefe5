import type { Stats } from "node:fs";
import { lstat, readlink } from "node:fs/promises";
import { basename } from "node:path";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  EntryInfoSchema,
  FileType,
  type EntryInfo,
} from "@wrenn/proto/filesystem/filesystem_pb.js";
import { fsError } from "./errors.ts";
import { readMetadata } from "./metadata.ts";
import type { IdNames } from "./names.ts";

export function fileTypeOf(stats: Stats): FileType {
  if (stats.isSymbolicLink()) return FileType.SYMLINK;
  if (stats.isDirectory()) return FileType.DIRECTORY;
  // Sockets, FIFOs and devices are files to a client: they can be read.
  return FileType.FILE;
}

function typeChar(stats: Stats): string {
  if (stats.isDirectory()) return "d";
  if (stats.isSymbolicLink()) return "l";
  if (stats.isCharacterDevice()) return "c";
  if (stats.isBlockDevice()) return "b";
  if (stats.isFIFO()) return "p";
  if (stats.isSocket()) return "s";
  return "-";
}

/** `ls -l`'s permission column, e.g. "-rw-r--r--" or "drwxrwsr-x". */
export function permissionsString(stats: Stats): string {
  const m = stats.mode;
  const triple = (shift: number, special: number, on: string, off: string): string => {
    const r = m & (4 << shift) ? "r" : "-";
    const w = m & (2 << shift) ? "w" : "-";
    const xSet = (m & (1 << shift)) !== 0;
    const x = m & special ? (xSet ? on : off) : xSet ? "x" : "-";
    return r + w + x;
  };
  return (
    typeChar(stats) +
    triple(6, 0o4000, "s", "S") +
    triple(3, 0o2000, "s", "S") +
    triple(0, 0o1000, "t", "T")
  );
}

/** stat's fractional milliseconds as a Timestamp (timestampFromMs expects whole ones). */
function timestampOf(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6));
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos });
}

/** Describes one filesystem object without following a final symlink. */
export async function entryInfo(path: string, names: IdNames, stats?: Stats): Promise<EntryInfo> {
  let st: Stats;
  try {
    st = stats ?? (await lstat(path));
  } catch (err) {
    throw fsError(err, path);
  }
  const symlink = st.isSymbolicLink();
  return create(EntryInfoSchema, {
    name: path === "/" ? "/" : basename(path),
    type: fileTypeOf(st),
    path,
    size: BigInt(st.size),
    mode: st.mode & 0o7777,
    permissions: permissionsString(st),
    owner: names.user(st.uid),
    group: names.group(st.gid),
    modifiedTime: timestampOf(st.mtimeMs),
    symlinkTarget: symlink ? await readlink(path).catch(() => undefined) : undefined,
    // xattr calls follow symlinks; a link's metadata would be its target's.
    metadata: symlink ? {} : await readMetadata(path),
  });
}
