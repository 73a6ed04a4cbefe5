import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { WrennError } from "@wrenn/shared/errors.ts";
import { isAlive } from "../util/process.ts";

export const CLAIM_DIR = "/run/wrenn";

/**
 * One host agent per network prefix on a host: a second one would take the
 * first's namespaces and links for a crash's leftovers and remove them. The
 * claim is a pid file; one whose process is gone is stale and taken over.
 * Returns the release.
 */
export async function claimPrefix(prefix: string, dir = CLAIM_DIR): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `network-${prefix}.pid`);
  const release = async () => {
    const owner = await readFile(path, "utf8").catch(() => "");
    if (Number(owner.trim()) === process.pid) await rm(path, { force: true });
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: "wx" });
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
    // This process already holds it (an agent restarted in the same process).
    if (pid === process.pid) return release;
    if (Number.isInteger(pid) && pid > 0 && (await isAlive(pid))) {
      throw new WrennError(
        "failed_precondition",
        `another host agent (pid ${pid}) uses the network prefix '${prefix}' on this host; give each agent its own --network-prefix`,
      );
    }
    await rm(path, { force: true });
  }
  throw new WrennError("unavailable", `could not claim the network prefix '${prefix}' (${path})`);
}

/** Host agents running on this machine (each holds its network prefix's claim). */
export async function liveAgents(claimDir = CLAIM_DIR): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir(claimDir).catch(() => [])) {
    if (!/^network-.+\.pid$/.test(name)) continue;
    const pid = Number((await readFile(join(claimDir, name), "utf8").catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && (await isAlive(pid))) pids.push(pid);
  }
  return pids;
}
