import { randomBytes } from "node:crypto";
import { messageOf } from "@wrenn/shared/errors.ts";
import { BUILDER_PREFIX, type BootSnapshots, type Shape } from "./boot-snapshots.ts";
import { create } from "./create.ts";
import { exec } from "./exec.ts";
import type { SandboxHost } from "./host.ts";
import { pause } from "./pause.ts";
import { saveSnapshot } from "./snapshot.ts";
import { destroy } from "./destroy.ts";
import type { BootSource, SnapshotMeta } from "./templates.ts";

/**
 * Boots a sandbox of `shape` for the agent itself, warms it, and keeps its
 * memory and disk as a boot snapshot in `snapshots`' store.
 */
export async function buildBootSnapshot(
  host: SandboxHost,
  snapshots: BootSnapshots,
  shape: Shape,
  name: string,
  source: BootSource,
): Promise<SnapshotMeta> {
  const id = `${BUILDER_PREFIX}${randomBytes(6).toString("hex")}`;
  await create(host, { id, ...shape, timeoutSec: 0, envVars: {} });
  try {
    // Clones then start with envd's exec and file paths compiled and the
    // command's files in the page cache: their first exec and first file
    // write are that much shorter.
    const { envd } = host.registry.running(id);
    const warm = "/tmp/.wrenn-boot-snapshot";
    await envd.writeFile(warm, Buffer.from("warm"));
    for await (const chunk of await envd.readFile(warm)) void chunk;
    await exec(host, id, { cmd: "rm", args: ["-f", warm], timeoutSec: 60 });
    await pause(host, id);
    return await host.registry.withLock(id, () =>
      saveSnapshot(host, id, snapshots.store, name, { source }),
    );
  } finally {
    await destroy(host, id).catch((err: unknown) =>
      host.log.error({ sandbox: id, err: messageOf(err) }, "boot snapshot builder not removed"),
    );
  }
}
