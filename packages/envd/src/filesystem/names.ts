import { readFile } from "node:fs/promises";

/** uid/gid → name, read once per request (users may be added at any time). */
export interface IdNames {
  user(uid: number): string;
  group(gid: number): string;
}

function parseIds(text: string): Map<number, string> {
  const map = new Map<number, string>();
  for (const line of text.split("\n")) {
    const [name, , id] = line.split(":");
    if (name && id !== undefined && !map.has(Number(id))) map.set(Number(id), name);
  }
  return map;
}

export async function loadIdNames(): Promise<IdNames> {
  const [passwd, group] = await Promise.all([
    readFile("/etc/passwd", "utf8").catch(() => ""),
    readFile("/etc/group", "utf8").catch(() => ""),
  ]);
  const users = parseIds(passwd);
  const groups = parseIds(group);
  // Unknown ids show as numbers, as ls does.
  return {
    user: (uid) => users.get(uid) ?? String(uid),
    group: (gid) => groups.get(gid) ?? String(gid),
  };
}
