/**
 * A create served from the warm pool: an entry becomes the sandbox — its
 * id, timeout, env, token and egress rules — and keeps the name its host
 * resources were made under (record.home). envd's /init gives the guest
 * its identity: the token, the env, its hostname, the host's clock and
 * fresh entropy, so no two entries restored from one snapshot share their
 * name or random state.
 */
import { messageOf } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import { hasEgressRules } from "../network/egress.ts";
import type { SandboxHost } from "./host.ts";
import type { CreateParams } from "./options.ts";
import { homeOf, type SandboxRecord } from "./records.ts";
import type { Live } from "./registry.ts";
import { teardown } from "./teardown.ts";

/**
 * Takes a ready entry of `key` for the create `params` (whose placeholder
 * holds its id in the registry, under its lock); null when the pool has
 * none that works, and the create takes the slow path.
 */
export async function claim(
  host: SandboxHost,
  placeholder: Live,
  key: string,
  params: CreateParams,
): Promise<SandboxRecord | null> {
  const { pool, registry } = host;
  for (let id = pool?.take(key) ?? null; id !== null; id = pool?.take(key) ?? null) {
    const entry = registry.find(id);
    if (entry === undefined) continue;
    if (entry.record.status !== "running" || entry.envd === null || entry.stopping) {
      // Its VM died while it waited: what it held is released; the record goes too.
      registry.delete(id);
      await teardown(host, entry.record, null).catch(() => undefined);
      continue;
    }
    if (entry.vm?.waitsForSpace) {
      // Stopped until the data disk has space: its /init would only time
      // out, and destroying it frees what it holds on that disk.
      host.log.warn(
        { sandbox: params.id, entry: id },
        "a warm pool entry waits for disk space; destroying it",
      );
      await discard(host, entry);
      continue;
    }
    const t0 = performance.now();
    try {
      const record = await registry.withLock(id, () => personalise(host, entry, params));
      host.log.info(
        { sandbox: params.id, entry: id, ms: Math.round(performance.now() - t0) },
        "sandbox created from the warm pool",
      );
      return record;
    } catch (err) {
      host.log.warn(
        { sandbox: params.id, entry: id, err: messageOf(err) },
        "a warm pool entry could not be claimed; destroying it",
      );
      await discard(host, entry, placeholder);
    }
  }
  return null;
}

/**
 * Destroys an entry a claim cannot use: its VM, what it holds, its record.
 * Once personalised, its record carries the create's id: the create's
 * `placeholder` goes back in its place.
 */
async function discard(host: SandboxHost, entry: Live, placeholder?: Live): Promise<void> {
  entry.stopping = true;
  entry.envd?.close();
  host.registry.delete(entry.record.id);
  if (placeholder) host.registry.set(placeholder);
  await teardown(host, entry.record, entry.vm).catch((e: unknown) => {
    host.log.error(
      { entry: homeOf(entry.record), err: messageOf(e) },
      "tearing down a warm pool entry failed",
    );
  });
}

async function personalise(
  host: SandboxHost,
  entry: Live,
  params: CreateParams,
): Promise<SandboxRecord> {
  const { record } = entry;
  // Its vCPUs' CPU share back before its first request (a failure here, as
  // below, destroys the entry and the create takes the slow path).
  await entry.vm?.setBackground?.(false);
  const rules = params.network ?? { allowOut: [], denyOut: [] };
  if (hasEgressRules(rules) && entry.slot !== null) {
    await host.opts.network.setEgress(entry.slot, rules);
  }
  const envd = entry.envd;
  if (envd === null) throw new Error("the entry's envd is gone");
  const log = host.log.child({ sandbox: params.id, entry: record.id });
  await timed(log, "claim.envd_init", () =>
    host.claimGate.run(() =>
      envd.init(
        {
          envVars: params.envVars,
          // "" clears the entry's own token: a sandbox without one answers anyone.
          accessToken: params.envdAccessToken ?? "",
          defaultUser: "user",
          hostname: params.id,
        },
        entry.gone.signal,
      ),
    ),
  );
  const now = Date.now();
  const poolId = record.id;
  Object.assign(record, {
    home: homeOf(record),
    id: params.id,
    timeoutSec: params.timeoutSec,
    createdAtMs: now,
    lastActiveAtMs: now,
    envVars: params.envVars,
    envdAccessToken: params.envdAccessToken ?? "",
    network: rules,
  });
  host.registry.delete(poolId);
  host.registry.set(entry);
  await timed(log, "claim.save", () => host.records.save(record));
  return record;
}
