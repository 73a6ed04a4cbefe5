/**
 * Resume: attach a working copy of the paused disk, take a slot, restore the
 * VM from a copy of its memory, wait for envd, sync its clock. The pause
 * folder is not touched until the resume commits, so if anything fails —
 * even after the guest ran and wrote — every step is undone and the sandbox
 * stays paused exactly as it was, ready for another try.
 */
import { mkdir, rename, rm } from "node:fs/promises";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import { crashPoint } from "../util/crash-point.ts";
import { operationError } from "../util/disk-full.ts";
import type { SandboxHost } from "./host.ts";
import type { SandboxRecord } from "./records.ts";
import { Rollback } from "./rollback.ts";
import { acquireSlot, attachVm, started } from "./attach.ts";

export async function resume(
  host: SandboxHost,
  id: string,
  timeoutSec?: number,
): Promise<SandboxRecord> {
  return host.registry.withLock(id, async () => {
    const live = host.registry.get(id);
    const { record } = live;
    const detached = record.disk;
    if (record.status !== "paused" || detached === null) {
      throw new WrennError(
        "failed_precondition",
        `sandbox '${id}' is ${record.status}; only a paused sandbox can be resumed`,
      );
    }
    const { vmm, storage } = host.opts;
    const log = host.log.child({ sandbox: id });
    const t0 = performance.now();
    const keep = host.keepDir(record);
    const undo = new Rollback(log);
    /** The machine of the standby this resume took: the next is started for it once done. */
    let took: string | null = null;
    // The copies below write back what they copy; a failed resume reschedules.
    const unwritten = host.writeBack.cancel(keep);
    undo.push("write the pause folder back later", async () => host.writeBack.schedule(keep, log));
    try {
      // A crash from here on leaves what recovery.ts undoes: the sandbox paused again.
      record.op = { kind: "resume" };
      await host.records.save(record);
      undo.push("remove run dir", () => rm(host.runDir(record), { recursive: true, force: true }));
      await mkdir(host.runDir(record), { recursive: true });
      const disk = await timed(log, "resume.attach_disk", () =>
        storage.attach(detached, { name: record.template, path: record.basePath }),
      );
      record.disk = disk;
      record.op = { kind: "resume", kept: detached };
      undo.push("drop the disk's working copy", async () => {
        await storage.destroy(disk);
        record.disk = detached;
      });
      await host.records.save(record);
      crashPoint("resume:after-attach");
      const kernel = await host.currentKernel();
      const standby = await host.standbys.take(keep, kernel);
      took = standby?.vm.key ?? null;
      const slot = await acquireSlot(host, live, log, "resume", undo, standby?.slot);
      if (standby) {
        // Until the restore takes it (then its handle's stop is the VM's).
        undo.push("stop the standby VMM", async () => {
          await standby.vm.stop();
          await rm(standby.dir, { recursive: true, force: true });
        });
        // Its sockets and files are where the sandbox's VM keeps them now.
        await rename(standby.dir, host.runDir(record));
      }
      crashPoint("resume:after-network");
      const vm = started(
        live,
        await timed(log, "resume.restore", () =>
          vmm.restore({
            ...host.machine(record, slot, disk),
            ...(standby ? { vmId: standby.vm.vmId, standby: standby.vm } : {}),
            snapshotDir: keep,
            clone: false,
            unwritten,
            kernel,
          }),
        ),
        undo,
      );
      if (timeoutSec) record.timeoutSec = timeoutSec;
      // Committed once envd answered: its record, running, has no op.
      await attachVm(host, live, vm, "resume", true);
      crashPoint("resume:after-restore");
    } catch (err) {
      log.warn({ err: messageOf(err) }, "resume failed; the sandbox stays paused");
      // Judged before the undo frees what the failed VM held (a full disk shows).
      const failure = await operationError("resume", err, "unavailable", host.opts.dataDir);
      await undo.run();
      live.vm = null;
      delete record.op;
      record.status = "paused";
      live.stopping = false;
      // On a full disk the record cannot be rewritten: the one on disk still
      // reads paused (or mid-resume, which start-up turns back into paused).
      await host.records.save(record).catch((e: unknown) => {
        log.warn({ err: messageOf(e) }, "could not save the paused record after the failed resume");
      });
      if (took) host.standbys.replace(took);
      throw failure;
    }
    host.registry.autoPaused.delete(id);
    await vmm.afterResume(keep, log);
    crashPoint("resume:after-commit");
    // Committed: what the pause kept is no longer the sandbox. Left behind
    // (a full disk, a crash), the next pause, the next agent or the destroy removes it.
    await storage.dropKept(detached).catch((err: unknown) => {
      log.warn({ err: messageOf(err) }, "could not delete the paused disk after the resume");
    });
    log.info({ ms: Math.round(performance.now() - t0) }, "sandbox resumed");
    if (took) host.standbys.replace(took);
    return record;
  });
}
