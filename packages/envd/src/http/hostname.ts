import { hostname } from "node:os";
import { loadClockAddon } from "@wrenn/clock";
import { messageOf, WrennError } from "@wrenn/shared/errors.ts";
import type { Logger } from "@wrenn/shared/log.ts";

/**
 * RFC 1123 names: dot-separated labels of letters, digits and inner hyphens,
 * of at most 64 characters, the kernel's limit on its host name.
 */
const HOSTNAME =
  /^(?=.{1,64}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

export function isHostname(name: string): boolean {
  return HOSTNAME.test(name);
}

/** How the name is set; tests pass a kernel of their own and a scratch /etc. */
export interface HostnameOptions {
  /** Renames the kernel (what `hostname` and `uname -n` print): sethostname(2). */
  kernel?: (name: string) => void;
  /** Holds `hostname` and `hosts`. */
  etc?: string;
  current?: string;
  isRoot?: boolean;
  loaded?: ReturnType<typeof loadClockAddon>;
}

let warned = false;

/**
 * Names the guest `name`: the kernel's name, /etc/hostname, and the
 * 127.0.1.1 line of /etc/hosts (so `sudo` and `hostname -f` resolve it),
 * through the @wrenn/clock addon: under the guest's TCG interpreter
 * Node's fs layer cost a claim ≈ 2 ms of its VMM for these three files. A
 * sandbox restored from a memory snapshot carries the name it was saved
 * with; each create and resume sends its own. Nothing is written when the
 * kernel already has it. Only root can rename the kernel: other users
 * (tests, development) skip it, as does an envd whose addon is not built
 * (it warns once). The files are the image's business: one that cannot be
 * written (a read-only /etc) is logged, not fatal. Returns the name it
 * replaced, or undefined when nothing changed (the caller logs the change).
 */
export function setHostname(
  name: string,
  log: Logger,
  options: HostnameOptions = {},
): string | undefined {
  const current = options.current ?? hostname();
  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  if (name === current || !isRoot) return undefined;
  const { addon, error } = options.loaded ?? loadClockAddon();
  if (typeof addon?.recordHostname !== "function") {
    if (!warned) {
      warned = true;
      log.warn(
        { err: error ?? "the addon has no recordHostname; run 'npm rebuild @wrenn/clock'" },
        "clock addon not loaded; the guest keeps the hostname it was saved with",
      );
    }
    return undefined;
  }
  const kernel = options.kernel ?? ((n: string) => addon.setHostname(n));
  try {
    kernel(name);
  } catch (err) {
    throw new WrennError("internal", `setting the hostname to '${name}': ${messageOf(err)}`, {
      cause: err,
    });
  }
  try {
    addon.recordHostname(options.etc ?? "/etc", name);
  } catch (err) {
    log.warn({ err, hostname: name }, "the hostname is set, but /etc could not record it");
  }
  return current;
}
