import { randomBytes } from "node:crypto";
import { setTimeout } from "node:timers/promises";
import { messageOf } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import { BUILDER_PREFIX, type BootSnapshots, type Shape } from "./boot-snapshots.ts";
import { create } from "./create.ts";
import type { SandboxHost } from "./host.ts";
import { pause } from "./pause.ts";
import { saveSnapshot } from "./snapshot.ts";
import { destroy } from "./destroy.ts";
import type { BootSource, SnapshotMeta } from "./templates.ts";
import { warmUp } from "./warm-up.ts";

/** Warm-up rounds (warm-up.ts) before the snapshot: ≈ 0.1–0.3 s each under TCG, once per shape. */
const WARM_ROUNDS = 20;
const SETTLE_MS = 1000;

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
    // Clones then start with envd's exec and file paths compiled — by V8's
    // optimising tiers too, which take dozens of runs — and the commands'
    // files in the page cache: every restore skips that work.
    await timed(host.log.child({ sandbox: id }), "boot_snapshot.warm", () =>
      warmUp(host, id, { rounds: WARM_ROUNDS, token: "", users: [undefined, "root"] }),
    );
    // V8 compiles the hottest code on a background thread: let it land.
    await setTimeout(SETTLE_MS);
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
