/**
 * Leak checks for host-agent tests: take a snapshot of the host resources a
 * test could leave behind, run the test, then assert nothing new is left.
 *
 *   const before = await snapshotHostResources({ prefix: "wnt", markers: [dir], dirs: [dir] });
 *   try { …test… } finally { await assertNoLeaks(before); }
 *
 * `npm test` runs two test files at once, so scope the check to what your
 * test creates: give its resources their own name prefix, and pass
 * `markers` (e.g. its temporary directory) so another file's VMs and loop
 * devices do not count as yours.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "@wrenn/shared/command.ts";
import { messageOf } from "@wrenn/shared/errors.ts";

export interface LeakScope {
  /**
   * Namespaces, links and nftables tables whose name starts with this count.
   * Required: test files run two at once, and a check scoped to all of
   * "wrenn" would report, and purge, another file's live namespace.
   */
  prefix: string;
  /**
   * Only loop devices whose backing file, and only processes whose command
   * line, contains one of these strings count — any process, not only VMMs.
   * Required for the same reason as `prefix`: a check of every VMM on the
   * host reported, and killed, another file's live sandbox.
   */
  markers: string[];
  /** Directories whose contents (recursively) must be the same afterwards. */
  dirs?: string[];
}

export interface HostResources {
  scope: LeakScope;
  netns: string[];
  links: string[];
  nftTables: string[];
  loopDevices: string[];
  processes: string[];
  files: string[];
}

type Kind = Exclude<keyof HostResources, "scope">;
const KINDS: Kind[] = ["netns", "links", "nftTables", "loopDevices", "processes", "files"];

export async function snapshotHostResources(scope: LeakScope): Promise<HostResources> {
  const { prefix } = scope;
  const [netns, links, nftTables, loopDevices, processes, files] = await Promise.all([
    ipNames(["netns", "list"], "name").then((n) => n.filter((x) => x.startsWith(prefix))),
    ipNames(["link", "show"], "ifname").then((n) => n.filter((x) => x.startsWith(prefix))),
    nftTableNames().then((n) => n.filter((x) => x.split(" ")[1]?.startsWith(prefix))),
    loops(scope.markers),
    processList(scope.markers),
    listFiles(scope.dirs ?? []),
  ]);
  return { scope, netns, links, nftTables, loopDevices, processes, files };
}

/** What exists now and did not before, per kind (empty when nothing leaked). */
export async function findLeaks(before: HostResources): Promise<Partial<Record<Kind, string[]>>> {
  const now = await snapshotHostResources(before.scope);
  const leaks: Partial<Record<Kind, string[]>> = {};
  for (const kind of KINDS) {
    const old = new Set(before[kind]);
    const added = now[kind].filter((x) => !old.has(x));
    if (added.length > 0) leaks[kind] = added;
  }
  return leaks;
}

/**
 * Fails if anything new is left. Waits up to `settleMs` for things that go
 * away asynchronously (exiting processes). Unless `purge` is false, removes
 * what leaked after reporting it, so one failing test does not fail the next.
 */
export async function assertNoLeaks(
  before: HostResources,
  options: { settleMs?: number; purge?: boolean } = {},
): Promise<void> {
  const deadline = Date.now() + (options.settleMs ?? 2000);
  let leaks = await findLeaks(before);
  while (Object.keys(leaks).length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    leaks = await findLeaks(before);
  }
  if (Object.keys(leaks).length === 0) return;
  const report = Object.entries(leaks)
    .map(([kind, items]) => `  ${kind}: ${items.join(", ")}`)
    .join("\n");
  if (options.purge ?? true) await purge(leaks);
  throw new Error(`host resources leaked:\n${report}`);
}

async function purge(leaks: Partial<Record<Kind, string[]>>): Promise<void> {
  const quiet = (p: Promise<unknown>) => p.catch(() => undefined);
  for (const entry of leaks.processes ?? []) {
    const pid = Number(entry.split(" ")[0]);
    if (pid > 0) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
  for (const link of leaks.links ?? []) await quiet(runCommand("ip", ["link", "del", link]));
  for (const ns of leaks.netns ?? []) await quiet(runCommand("ip", ["netns", "del", ns]));
  for (const table of leaks.nftTables ?? []) {
    await quiet(runCommand("nft", ["delete", "table", ...table.split(" ")]));
  }
  for (const loop of leaks.loopDevices ?? []) {
    await quiet(runCommand("losetup", ["-d", loop.split(" ")[0] ?? ""]));
  }
}

async function ipNames(args: string[], key: string): Promise<string[]> {
  const { stdout } = await runCommand("ip", ["-j", ...args]);
  if (stdout.trim() === "") return [];
  const parsed = JSON.parse(stdout) as Array<Record<string, unknown>>;
  return parsed.map((e) => e[key]).filter((n): n is string => typeof n === "string");
}

/** "family name" of every nftables table; none when nft is not installed. */
async function nftTableNames(): Promise<string[]> {
  try {
    const { stdout } = await runCommand("nft", ["-j", "list", "tables"]);
    const parsed = JSON.parse(stdout) as { nftables?: Array<Record<string, unknown>> };
    const tables: string[] = [];
    for (const item of parsed.nftables ?? []) {
      const table = item.table as { family?: string; name?: string } | undefined;
      if (table?.family && table.name) tables.push(`${table.family} ${table.name}`);
    }
    return tables;
  } catch (err) {
    if (/not installed/.test(messageOf(err))) return [];
    throw err;
  }
}

/** "device backing-file" of every loop device backed by a marked file. */
async function loops(markers: string[]): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await runCommand("losetup", ["-J", "-l"]));
  } catch (err) {
    if (/not installed/.test(messageOf(err))) return [];
    throw err;
  }
  if (stdout.trim() === "") return [];
  const parsed = JSON.parse(stdout) as { loopdevices?: Array<Record<string, unknown>> };
  return (parsed.loopdevices ?? [])
    .map((d) => `${String(d.name)} ${String(d["back-file"] ?? "")}`)
    .filter((d) => markers.some((m) => d.includes(m)));
}

/** "pid command line" of every process whose command line holds a marker. */
async function processList(markers: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    const line = cmdline.split("\0").join(" ").trim();
    if (line === "") continue; // kernel thread or zombie
    if (markers.some((m) => line.includes(m))) out.push(`${entry} ${line.slice(0, 200)}`);
  }
  return out;
}

async function listFiles(dirs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const dir of dirs) {
    try {
      await stat(dir);
    } catch {
      continue;
    }
    out.push(dir);
    for (const entry of await readdir(dir, { recursive: true })) out.push(join(dir, entry));
  }
  return out;
}
