/**
 * Making a warm pool entry: a create like any other under a pool id, with
 * a token of its own and no env (a claim sets both), then a warm-up.
 */
import { randomBytes } from "node:crypto";
import { WrennError } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import { create, sourceKey } from "./create.ts";
import { destroy } from "./destroy.ts";
import type { SandboxHost } from "./host.ts";
import type { Recipe } from "./pool.ts";
import { warmUp } from "./warm-up.ts";

/**
 * Rounds of the warm-up (warm-up.ts). The boot snapshot an entry restores
 * was warmed already (envd's code compiled in its heap); what a new QEMU
 * process lacks is TCG's translations of that code, and one round makes
 * them. Measured against three rounds (6 claims each, twice, interleaved):
 * claim → first exec p50 86–99 ms against 88–95, and a claimed sandbox's VMM
 * 71.4 MiB PSS beyond guest RAM against 80.0 (the third round's new
 * translations, which a sandbox makes later only if it runs that far).
 */
const WARM_ROUNDS = 1;

/** Makes the entry; returns the source it was restored from (the pool's key). */
export async function makePoolEntry(
  host: SandboxHost,
  id: string,
  recipe: Recipe,
): Promise<string> {
  const token = randomBytes(16).toString("hex");
  const record = await create(host, {
    template: recipe.template,
    vcpus: recipe.vcpus,
    memoryMb: recipe.memoryMb,
    diskSizeMb: recipe.diskSizeMb,
    id,
    timeoutSec: 0,
    envVars: {},
    envdAccessToken: token,
  });
  try {
    const key = sourceKey(record);
    if (key === null) throw new WrennError("internal", "the entry booted instead of restoring");
    // From here on it takes a small CPU share: its warm-up (TCG translating
    // its code afresh) would otherwise take running sandboxes' cores.
    await host.registry.get(id).vm?.setBackground?.(true);
    await timed(host.log.child({ sandbox: id }), "pool.warm", () =>
      warmUp(host, id, { rounds: WARM_ROUNDS, token, users: [undefined] }),
    );
    return key;
  } catch (err) {
    await destroy(host, id);
    throw err;
  }
}
