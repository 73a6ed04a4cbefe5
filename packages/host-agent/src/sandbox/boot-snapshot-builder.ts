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
import { collectGarbage } from "./collect-garbage.ts";
import type { BootSource, SnapshotMeta } from "./templates.ts";
import { warmUp } from "./warm-up.ts";

/** Warm-up rounds (warm-up.ts) before the snapshot, once per shape: dozens for V8's optimising tiers. */
const WARM_ROUNDS = 20;
/**
 * Under TCG envd runs on V8's interpreter alone (qemu/args.ts), so later
 * rounds compile nothing more: measured, 3 rounds instead of 20 took a
 * shape's first create from 17.3 s to 13.5 s (the warm-up 9.8 → 3.9 s), and
 * its restores answered as fast (create 323 vs 355 ms, first exec 233 vs
 * 231 ms, p50 of 9).
 */
const TCG_WARM_ROUNDS = 3;
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
    // optimising tiers too, where the guest has them — and the commands'
    // files in the page cache: every restore skips that work.
    const rounds = host.opts.vmm.accel === "tcg" ? TCG_WARM_ROUNDS : WARM_ROUNDS;
    // With a token, as a create has: envd's check of it is then compiled in
    // the snapshot. Else the first request of every clone with one compiled
    // it, and V8's first compile in a restored guest costs its VMM ≈ 4 000
    // translated blocks and 50–150 ms of CPU under TCG.
    const token = randomBytes(16).toString("hex");
    await timed(host.log.child({ sandbox: id }), "boot_snapshot.warm", async () => {
      await warmUp(host, id, { rounds, token, users: [undefined, "root"] });
      // A clone's /init comes without one (attach.ts).
      await host.registry
        .running(id)
        .envd.init({ envVars: {}, accessToken: "", defaultUser: "user", hostname: id });
      await collectGarbage(host, id);
    });
    // V8 compiles the hottest code on a background thread: let it land (the
    // collection has run by now: envd ran it before the command ended).
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
