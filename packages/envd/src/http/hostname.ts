import { readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";
import { errnoOf } from "../filesystem/errors.ts";

/** RFC 1123 names: dot-separated labels of letters, digits and inner hyphens. */
const HOSTNAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

export function isHostname(name: string): boolean {
  return HOSTNAME.test(name);
}

/** Where the name is kept; tests point these at a scratch directory. */
export interface HostnamePaths {
  /** The kernel's UTS name (what `hostname` and `uname -n` print). */
  kernel: string;
  /** Holds `hostname` and `hosts`. */
  etc: string;
}

const SYSTEM: HostnamePaths = { kernel: "/proc/sys/kernel/hostname", etc: "/etc" };

/** `hosts` with its 127.0.1.1 line naming `name` (added when it has none), as Debian keeps it. */
export function withLoopbackName(hosts: string, name: string): string {
  const line = `127.0.1.1\t${name}`;
  const lines = hosts.split("\n");
  // No regular expression: compiled for the first time in a restored TCG
  // guest, one made its next command ≈ 200 ms slower.
  const at = lines.findIndex((l) => l.startsWith("127.0.1.1") && (l[9] === " " || l[9] === "\t"));
  if (at >= 0) lines[at] = line;
  else lines.splice(hosts.endsWith("\n") ? lines.length - 1 : lines.length, 0, line);
  return lines.join("\n");
}

/**
 * Names the guest `name`: the kernel's name, /etc/hostname, and the
 * 127.0.1.1 line of /etc/hosts (so `sudo` and `hostname -f` resolve it). A
 * sandbox restored from a memory snapshot carries the name it was saved
 * with; each create and resume sends its own. Nothing is written when the
 * kernel already has it. Only root can rename the kernel: other users
 * (tests, development) skip it. The files are the image's business: one
 * that cannot be written (a read-only /etc) is logged, not fatal. Returns
 * the name it replaced, or undefined when nothing changed (the caller logs
 * the change).
 */
export function setHostname(
  name: string,
  log: Logger,
  options: { paths?: HostnamePaths; current?: string; isRoot?: boolean } = {},
): string | undefined {
  const paths = options.paths ?? SYSTEM;
  const current = options.current ?? hostname();
  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  if (name === current || !isRoot) return undefined;
  // Sync: three small writes cost less than three trips through the thread pool.
  try {
    writeFileSync(paths.kernel, name);
  } catch (err) {
    throw new WrennError("internal", `setting the hostname to '${name}': ${messageOf(err)}`, {
      cause: err,
    });
  }
  try {
    writeFileSync(join(paths.etc, "hostname"), `${name}\n`);
    const hostsPath = join(paths.etc, "hosts");
    let hosts = "127.0.0.1\tlocalhost\n";
    try {
      hosts = readFileSync(hostsPath, "utf8");
    } catch (err) {
      if (errnoOf(err) !== "ENOENT") throw err;
    }
    writeFileSync(hostsPath, withLoopbackName(hosts, name));
  } catch (err) {
    log.warn({ err, hostname: name }, "the hostname is set, but /etc could not record it");
  }
  return current;
}
