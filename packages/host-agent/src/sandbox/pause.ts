/**
 * Pause, in the seed's order: freeze → save memory → stop the VMM → detach
 * the disk → release the slot (its teardown after the pause has answered).
 * A failure before the VMM stops resumes the vCPUs (the sandbox stays
 * usable). After it stops, the saved memory and the disk are the sandbox: a
 * failure then keeps both on disk and marks the sandbox failed with the
 * reason, until its user destroys it.
 */
import { mkdir, rm } from "node:fs/promises";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import type { SandboxDisk } from "../storage/storage.ts";
import { crashPoint } from "../util/crash-point.ts";
import { operationError } from "../util/disk-full.ts";
import type { SandboxHost } from "./host.ts";
import { Rollback } from "./rollback.ts";

export async function pause(
  host: SandboxHost,
  id: string,
  reason: "user" | "ttl" = "user",
): Promise<void> {
  await host.registry.withLock(id, async () => {
    const live = host.registry.get(id);
    const { record } = live;
    const { vm, slot } = live;
    if (record.status !== "running" || vm === null || slot === null) {
      throw new WrennError(
        "failed_precondition",
        `sandbox '${id}' is ${record.status}; only a running sandbox can be paused`,
      );
    }
    const { vmm, storage, network } = host.opts;
    const log = host.log.child({ sandbox: id, reason });
    const t0 = performance.now();
    const keep = host.keepDir(record);
    const undo = new Rollback(log);
    // What a crashed agent's successor must finish or undo (recovery.ts).
    record.op = { kind: "pause", memorySaved: false };
    try {
      await mkdir(keep, { recursive: true });
      await host.records.save(record);
    } catch (err) {
      // Nothing done yet (a full disk, typically): the sandbox runs on.
      delete record.op;
      throw await operationError("pause", err, "internal", host.opts.dataDir);
    }
    undo.push("forget the pause", () => {
      delete record.op;
      return host.records.save(record);
    });
    await timed(log, "pause.freeze", () => vm.pause());
    undo.push("resume vcpus", () => vm.resume());
    crashPoint("pause:after-freeze");
    try {
      const template = host.templateDirOf(record);
      await vmm.saveMemory(vm, {
        dir: keep,
        parents: template ? [keep, template] : [keep],
        memoryMb: record.memoryMb,
        log,
      });
      record.op = { kind: "pause", memorySaved: true };
      await host.records.save(record);
    } catch (err) {
      log.warn({ err: messageOf(err) }, "pause failed before the VMM stopped; resuming vCPUs");
      await undo.run();
      throw await operationError("pause", err, "internal", host.opts.dataDir);
    }
    crashPoint("pause:after-memory");
    live.stopping = true;
    try {
      await timed(log, "pause.stop_vmm", () => vm.stop());
      record.vm = null;
      live.vm = null;
      crashPoint("pause:after-stop");
      const disk = record.disk as SandboxDisk;
      record.disk = await timed(log, "pause.detach_disk", () => storage.detach(disk, keep));
      // Where the disk is now, before anything else: recovery finds it there.
      await host.records.save(record);
      crashPoint("pause:after-detach");
      // Off the pause's path: a slot's teardown is a few `ip` and `nft`
      // calls (27–38 ms of a 90–125 ms pause on a slow host). Its index
      // stays taken until the teardown is done, and after a failed one until
      // the next agent's start-up cleans what it left; the sandbox is paused
      // either way.
      const released = network.release(slot).catch((err: unknown) => {
        log.error(
          { err: messageOf(err), slot: slot.index },
          "tearing down a paused sandbox's network slot failed; its index stays taken until the agent restarts",
        );
      });
      // An earlier pause's teardown may still run (a resume and a pause since).
      const before = live.releasing;
      live.releasing = before ? Promise.all([before, released]).then(() => undefined) : released;
      live.slot = null;
      record.slotIndex = null;
      live.envd?.close();
      live.envd = null;
      // Reported together with the state, so no one sees "paused" without "auto".
      if (reason === "ttl") host.registry.autoPaused.add(id);
      record.status = "paused";
      delete record.op;
      await host.records.save(record);
      await rm(host.runDir(record), { recursive: true, force: true });
    } catch (err) {
      log.error(
        { err: messageOf(err) },
        "pause failed after the VMM stopped; keeping its memory and disk",
      );
      live.envd?.close();
      live.envd = null;
      record.status = "failed";
      delete record.op;
      record.error = `pause failed after the VM stopped (its memory and disk are kept until it is destroyed): ${messageOf(err)}`;
      await host.records.save(record).catch((e: unknown) => {
        log.error({ err: messageOf(e) }, "could not record the failed pause");
      });
      throw await operationError("pause", err, "internal", host.opts.dataDir);
    } finally {
      live.stopping = false;
    }
    log.info({ ms: Math.round(performance.now() - t0) }, "sandbox paused");
    host.writeBack.schedule(keep, log);
    // Its resume may take a VMM started meanwhile.
    void host
      .currentKernel()
      .then((kernel) => host.standbys.want(keep, kernel))
      .catch((err: unknown) => {
        log.warn({ err: messageOf(err) }, "could not start a standby VMM for the resume");
      });
  });
}
