/**
 * Agent start: re-adopt VMs that are still alive and healthy, keep paused
 * sandboxes whose disks are there, finish or undo a pause or resume a crash
 * cut short (never losing saved memory or disk), tear down the rest (a crash
 * mid-create, a VM that died while the agent was down), then remove network
 * leftovers and VMM processes no record accounts for.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { messageOf } from "@wrenn/shared/errors.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import { EnvdClient } from "../envd/client.ts";
import { dropLeftoverKept, isDetached } from "../storage/keep.ts";
import { removeDiscarded } from "../util/fs.ts";
import { killIfNamed, killStrays } from "../util/process.ts";
import { BUILDER_PREFIX } from "./boot-snapshots.ts";
import { isPooled } from "./pool.ts";
import type { SandboxHost } from "./host.ts";
import type { SandboxRecord } from "./records.ts";
import { newLive } from "./registry.ts";
import { STANDBY_PREFIX } from "./standbys.ts";
import { teardown } from "./teardown.ts";
import { watchExit } from "./attach.ts";

export async function recover(host: SandboxHost): Promise<void> {
  const { registry, log } = host;
  const { storage, network } = host.opts;
  await host.templates.cleanupPartial();
  const { records, unreadable } = await host.records.loadAll();
  for (const id of unreadable) {
    const aside = await host.records.quarantine(id);
    log.error(
      { sandbox: id, movedTo: aside },
      "unreadable sandbox record: its directory was moved aside, not deleted; inspect it, then remove it",
    );
    registry.reaped.set(id, `its record could not be read; its files were moved to ${aside}`);
  }
  await host.bootSnapshots?.store.cleanupPartial();
  const keep: number[] = [];
  for (const record of records) {
    const slog = log.child({ sandbox: record.id });
    // A memory file a resume was deleting when the agent stopped.
    await removeDiscarded(host.keepDir(record));
    if (record.id.startsWith(BUILDER_PREFIX) || isPooled(record.id)) {
      // A boot snapshot's builder the last agent did not finish, or a warm
      // pool entry: nobody waits for either.
      await teardown(host, record, null);
      continue;
    }
    const op = record.op;
    if (op?.kind === "pause" && op.memorySaved) {
      slog.warn("the agent stopped mid-pause after the memory was saved; finishing the pause");
      await settlePaused(host, record);
      continue;
    }
    if (op?.kind === "resume") {
      if (record.status === "running" && (await adopt(host, record, false).catch(() => false))) {
        keep.push(record.slotIndex as number);
        delete record.op;
        await host.records.save(record);
        await dropLeftover(host, record);
        continue;
      }
      slog.warn("the agent stopped mid-resume; the sandbox is paused again");
      await settlePaused(host, record);
      continue;
    }
    if (record.status === "paused") {
      if (record.disk && (await storage.adopt(record.disk).catch(() => false))) {
        registry.set(newLive(record));
        continue;
      }
      slog.warn("paused sandbox lost its disk; removing it");
    }
    if (record.status === "failed" && record.disk) {
      // A pause that failed after its VM stopped: its memory and disk stay
      // until its user destroys it (its slot, if still held, is freed below).
      record.slotIndex = null;
      await host.records.save(record);
      registry.set(newLive(record));
      continue;
    }
    // A pause cut short before the memory was saved: the VM may be frozen.
    const unfreeze = op?.kind === "pause";
    const adopted = await adopt(host, record, unfreeze).catch((err: unknown) => {
      slog.warn({ err: messageOf(err) }, "re-adopt failed");
      return false;
    });
    if (adopted) {
      keep.push(record.slotIndex as number);
      await dropLeftover(host, record);
      if (unfreeze) {
        delete record.op;
        await host.records.save(record);
      }
      continue;
    }
    await teardown(host, record, null);
    registry.reaped.set(record.id, "its VM was gone when the agent restarted; resources released");
    slog.info("removed sandbox whose VM did not survive the restart");
  }
  await network.cleanupStale(keep);
  const running = registry.all().filter((l) => l.vm !== null);
  const strays = await killStrays(host.opts.runRoot, {
    dirs: running.map((l) => host.runDir(l.record)),
    names: running.map((l) => `wrenn-${l.vm?.vmId ?? ""}`),
  });
  if (strays.length > 0) log.warn({ pids: strays }, "killed VMM processes no record accounted for");
  // What standby VMMs nobody took left (their processes went with the strays).
  for (const name of await readdir(host.opts.runRoot).catch(() => [])) {
    if (name.startsWith(STANDBY_PREFIX)) {
      await rm(join(host.opts.runRoot, name), { recursive: true, force: true });
    }
  }
}

/** A running sandbox's paused disk that its resume, committed or about to be, did not delete. */
async function dropLeftover(host: SandboxHost, record: SandboxRecord): Promise<void> {
  if (record.disk === null || isDetached(record.disk)) return;
  if (await dropLeftoverKept(host.keepDir(record)).catch(() => false)) {
    host.log.info({ sandbox: record.id }, "deleted the paused disk its committed resume left");
  }
}

/**
 * Running again as it was: the VM alive, its envd answering. `unfreeze`
 * resumes its vCPUs first (a pause that stopped before saving the memory).
 */
async function adopt(
  host: SandboxHost,
  record: SandboxRecord,
  unfreeze: boolean,
): Promise<boolean> {
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
  // One that waited for disk space retries its write; without space, it waits again.
  if (unfreeze || vm.waitsForSpace) await vm.resume().catch(() => undefined);
  if (!(await envd.healthy(3000)) && !vm.waitsForSpace) {
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

/**
 * A sandbox whose memory is saved in its pause folder ends paused: its VM
 * stopped, its disk detached into the pause folder (or, cut short mid-resume,
 * the working copy dropped: the pause folder still holds the disk as
 * paused), its slot released. A step that fails leaves it failed with its
 * memory and disk kept.
 */
async function settlePaused(host: SandboxHost, record: SandboxRecord): Promise<void> {
  const { vmm, storage, network } = host.opts;
  const log = host.log.child({ sandbox: record.id });
  try {
    if (record.vm) {
      const vm = await vmm.adopt(record.vm).catch(() => null);
      if (vm) await vm.stop();
      else await killIfNamed(record.vm.pid, record.vm.vmId);
      record.vm = null;
    }
    if (record.disk) {
      await storage.adopt(record.disk);
      const kept = record.op?.kind === "resume" ? record.op.kept : undefined;
      if (kept && !isDetached(record.disk)) {
        await storage.destroy(record.disk);
        record.disk = kept;
      } else {
        record.disk = await storage.detach(record.disk, host.keepDir(record));
      }
    }
    if (record.slotIndex !== null) {
      await network.release(network.adopt(record.slotIndex));
      record.slotIndex = null;
    }
    await rm(host.runDir(record), { recursive: true, force: true });
    record.status = "paused";
  } catch (err) {
    log.error({ err: messageOf(err) }, "could not settle the sandbox as paused; keeping its files");
    record.status = "failed";
    record.error = `the agent restarted during a pause or resume and could not finish it (its memory and disk are kept until it is destroyed): ${messageOf(err)}`;
    record.slotIndex = null;
  }
  delete record.op;
  await host.records.save(record);
  host.registry.set(newLive(record));
}
