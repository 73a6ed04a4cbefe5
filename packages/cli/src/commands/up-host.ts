import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import type { ControlPlane } from "@wrenn/control-plane/server.ts";
import { hosts } from "@wrenn/control-plane/db/schema.ts";

/**
 * Registers `wrenn up`'s host agent, keeping the host row this data dir used
 * before even when the agent now listens elsewhere (`--agent-listen` with a
 * new port, or port 0): the row keeps its id, so sandboxes recorded on it
 * stay on it, and gets the new address, so the control plane stops calling
 * the old one. The row's id is remembered in the control plane's state dir.
 */
export async function registerUpHost(
  cp: ControlPlane,
  stateDir: string,
  address: string,
  secret: string,
): Promise<string> {
  const file = join(stateDir, "host.json");
  const remembered = await readFile(file, "utf8")
    .then((t) => (JSON.parse(t) as { host_id?: unknown }).host_id)
    .catch(() => undefined);
  let previous = typeof remembered === "string" ? remembered : undefined;
  if (previous === undefined && !process.env.DATABASE_URL) {
    // A data dir from before this file: its embedded database holds only its own host.
    const rows = await cp.db.select({ id: hosts.id }).from(hosts);
    if (rows.length === 1) previous = rows[0]!.id;
  }
  if (previous !== undefined) {
    const taken = await cp.db
      .select({ id: hosts.id })
      .from(hosts)
      .where(eq(hosts.address, address));
    if (taken.length === 0) {
      await cp.db.update(hosts).set({ address }).where(eq(hosts.id, previous));
    }
  }
  const id = await cp.addHost(address, { secret });
  await writeFile(file, `${JSON.stringify({ host_id: id })}\n`);
  return id;
}
