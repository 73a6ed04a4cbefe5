/**
 * Agent start: re-adopt VMs that are still alive and healthy, keep paused
 * sandboxes whose disks are there, tear down the rest (a crash mid-create, a
 * VM that died while the agent was down), then remove network leftovers no
 * record accounts for.
 */
import { messageOf } from "@wrenn/shared/errors.ts";
import { EnvdClient, ENVD_PORT } from "../envd/client.ts";
import { BUILDER_PREFIX } from "./boot-snapshots.ts";
import type { SandboxHost } from "./host.ts";
import type { SandboxRecord } from "./records.ts";
import { newLive } from "./registry.ts";
import { teardown } from "./teardown.ts";
import { watchExit } from "./attach.ts";

export async function recover(host: SandboxHost): Promise<void> {
  const { registry, log } = host;
  const { storage, network } = host.opts;
  await host.templates.cleanupPartial();
  const { records, unreadable } = await host.records.loadAll();
  for (const id of unreadable) {
    log.warn({ sandbox: id }, "unreadable sandbox record; removing its directory");
    await host.records.remove(id);
  }
  await host.bootSnapshots?.store.cleanupPartial();
  const keep: number[] = [];
  for (const record of records) {
    if (record.id.startsWith(BUILDER_PREFIX)) {
      // A boot snapshot's builder the last agent did not finish: nobody waits for it.
      await teardown(host, record, null);
      continue;
    }
    if (record.status === "paused") {
      if (record.disk && (await storage.adopt(record.disk).catch(() => false))) {
        registry.set(newLive(record));
        continue;
      }
      log.warn({ sandbox: record.id }, "paused sandbox lost its disk; removing it");
    }
    if (record.status === "failed" && record.disk) {
      // A pause that failed after its VM stopped: its memory and disk stay
      // until its user destroys it (its slot, if still held, is freed below).
      record.slotIndex = null;
      await host.records.save(record);
      registry.set(newLive(record));
      continue;
    }
    const adopted = await adopt(host, record).catch((err: unknown) => {
      log.warn({ sandbox: record.id, err: messageOf(err) }, "re-adopt failed");
      return false;
    });
    if (adopted) {
      keep.push(record.slotIndex as number);
      continue;
    }
    await teardown(host, record, null);
    registry.reaped.set(record.id, "its VM was gone when the agent restarted; resources released");
    log.info({ sandbox: record.id }, "removed sandbox whose VM did not survive the restart");
  }
  await network.cleanupStale(keep);
}

async function adopt(host: SandboxHost, record: SandboxRecord): Promise<boolean> {
  if (record.status !== "running" || record.vm === null || record.slotIndex === null) return false;
  const { vmm, network } = host.opts;
  const vm = await vmm.adopt(record.vm);
  if (vm === null) return false;
  const slot = network.adopt(record.slotIndex);
  const live = { ...newLive(record), vm, slot };
  const envd = new EnvdClient(
    `${slot.hostAddress}:${ENVD_PORT}`,
    record.envdAccessToken,
    live.gone.signal,
  );
  if (!(await envd.healthy(3000))) {
    envd.close();
    await vm.stop().catch(() => undefined);
    await network.release(slot).catch(() => undefined);
    return false;
  }
  live.envd = envd;
  host.registry.set(live);
  watchExit(host, live, vm);
  host.log.info({ sandbox: record.id, pid: vm.pid }, "re-adopted running sandbox");
  return true;
}
