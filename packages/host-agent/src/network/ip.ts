import { CommandError, type Runner } from "@wrenn/shared/command.ts";

/** Small helpers around `ip -batch` and `ip -j`, shared by setup, teardown and cleanup. */

/** The 1-based batch line `ip -batch` stopped at, from its "Command failed -:N" message. */
export function failedBatchLine(err: unknown): number | null {
  if (!(err instanceof CommandError)) return null;
  const match = /Command failed -:(\d+)/.exec(err.stderr);
  return match ? Number(match[1]) : null;
}

export function saysFileExists(err: unknown): boolean {
  return err instanceof CommandError && /File exists/.test(err.stderr);
}

/** What `ip` says when the thing to delete is already gone. */
const GONE =
  /^(Command failed -:\d+|Cannot find device ".*"|Cannot remove namespace file ".*": No such file or directory)$/;

/**
 * Runs deletions with `ip -force -batch -` (every line runs even if one
 * fails) and succeeds if each failure only says the thing was already gone,
 * so teardown is idempotent and one spawn covers many resources.
 */
export async function deleteAll(run: Runner, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  try {
    await run("ip", ["-force", "-batch", "-"], { input: lines.join("\n") + "\n" });
  } catch (err) {
    if (!(err instanceof CommandError) || err.exitCode === null) throw err;
    const unexpected = err.stderr
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !GONE.test(l));
    if (unexpected.length > 0) throw err;
  }
}

/** Names from `ip -j netns list` / `ip -j link show` (the former prints nothing when empty). */
export async function listNames(
  run: Runner,
  args: string[],
  key: "name" | "ifname",
): Promise<string[]> {
  const { stdout } = await run("ip", ["-j", ...args]);
  if (stdout.trim() === "") return [];
  const parsed: unknown = JSON.parse(stdout);
  if (!Array.isArray(parsed)) return [];
  const names: string[] = [];
  for (const entry of parsed as unknown[]) {
    if (typeof entry === "object" && entry !== null) {
      const value = (entry as Record<string, unknown>)[key];
      if (typeof value === "string") names.push(value);
    }
  }
  return names;
}

/** The interface of the host's IPv4 default route, or null when it has none. */
export async function defaultRouteInterface(run: Runner): Promise<string | null> {
  const { stdout } = await run("ip", ["-j", "-4", "route", "show", "default"]);
  if (stdout.trim() === "") return null;
  const parsed: unknown = JSON.parse(stdout);
  if (!Array.isArray(parsed)) return null;
  for (const entry of parsed as unknown[]) {
    if (typeof entry === "object" && entry !== null) {
      const dev = (entry as Record<string, unknown>).dev;
      if (typeof dev === "string") return dev;
    }
  }
  return null;
}
