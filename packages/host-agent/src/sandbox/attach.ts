/**
 * The steps every start of a VM shares (create, restore, resume): take a
 * network slot, make a disk, and once the VM runs, wait for its envd, give it
 * its identity and watch for its exit. Each step pushes its own undo.
 */
import { WrennError } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import { ENVD_PORT } from "@wrenn/shared/sandbox-proxy.ts";
import { EnvdClient } from "../envd/client.ts";
import { hasEgressRules } from "../network/egress.ts";
import type { NetworkSlot } from "../network/network.ts";
import type { SandboxDisk } from "../storage/storage.ts";
import type { VmHandle } from "../vmm/vmm.ts";
import type { SandboxHost } from "./host.ts";
import { homeOf } from "./records.ts";
import type { Live } from "./registry.ts";
import type { Rollback } from "./rollback.ts";
import { teardown } from "./teardown.ts";

export async function acquireSlot(
  host: SandboxHost,
  live: Live,
  log: Logger,
  phase: string,
  undo: Rollback,
  /** A slot taken already (a standby VMM's, which runs in it): the sandbox's from now on. */
  taken?: NetworkSlot,
): Promise<NetworkSlot> {
  const { network } = host.opts;
  const slot = taken ?? (await timed(log, `${phase}.network`, () => network.acquire()));
  live.slot = slot;
  live.record.slotIndex = slot.index;
  undo.push("release network", async () => {
    await network.release(slot);
    live.slot = null;
    live.record.slotIndex = null;
  });
  await host.records.save(live.record);
  // Before the VM runs: no moment without its rules (a resumed one gets a new slot).
  const rules = live.record.network;
  if (hasEgressRules(rules)) {
    await timed(log, `${phase}.egress`, () => network.setEgress(slot, rules));
  }
  return slot;
}

export async function createDisk(
  host: SandboxHost,
  live: Live,
  log: Logger,
  basePath: string,
  undo: Rollback,
): Promise<SandboxDisk> {
  const { record } = live;
  const { storage } = host.opts;
  const disk = await timed(log, "create.disk", () =>
    storage.create(
      homeOf(record),
      { name: record.template, path: basePath },
      record.diskSizeMb,
      host.records.sandboxDir(homeOf(record)),
    ),
  );
  record.disk = disk;
  undo.push("destroy disk", async () => {
    await storage.destroy(disk);
    record.disk = null;
  });
  await host.records.save(record);
  return disk;
}

/** Records a started VM and how to stop it. */
export function started(live: Live, vm: VmHandle, undo: Rollback): VmHandle {
  live.vm = vm;
  undo.push("stop vm", async () => {
    live.stopping = true;
    await vm.stop();
    live.record.vm = null;
  });
  return vm;
}

/** The VM is up: wait for envd, give it its identity (token, env, clock), mark it running. */
export async function attachVm(
  host: SandboxHost,
  live: Live,
  vm: VmHandle,
  phase: string,
  restored: boolean,
): Promise<void> {
  const { record } = live;
  const log = host.log.child({ sandbox: record.id });
  const slot = live.slot as NetworkSlot;
  live.gone = new AbortController();
  record.vm = host.opts.vmm.record(vm);
  // Saved beside the guest's first answer, not before it: this fsync is the
  // first since the RAM file was copied, and on an xfs pool it waits for the
  // guest pages that copy wrote back (100–250 ms after a resume, measured),
  // while the guest needs hundreds of ms to answer. A crash meanwhile leaves
  // the previous record, whose VM the next agent kills as a stray (recovery.ts).
  const saving = host.records.save(record);
  // Awaited below; a failure before then must not count as unhandled.
  saving.catch(() => undefined);
  const gone = live.gone;
  void vm.exited.then((exit) =>
    gone.abort(
      new WrennError(
        "unavailable",
        record.status === "running"
          ? "the VM exited; the sandbox is gone"
          : `the VM exited during ${phase} (${exitCause(exit)})`,
      ),
    ),
  );
  // The token envd holds now: none after a boot, the template's in a clone.
  const current =
    phase === "create" && record.fromSnapshot
      ? ((await host.templates.get(record.fromSnapshot))?.envdAccessToken ?? "")
      : phase === "create"
        ? ""
        : record.envdAccessToken;
  const envd = new EnvdClient(`${slot.hostAddress}:${ENVD_PORT}`, current, gone.signal);
  try {
    // A restored envd was answering when its memory was saved: /init itself
    // is the first request (a health round trip costs hundreds of ms in a
    // guest whose code TCG must translate again after every restore).
    if (!restored) {
      await timed(log, `${phase}.envd_health`, () =>
        envd.waitHealthy(host.opts.bootTimeoutMs ?? 120_000, gone.signal),
      );
    }
    await timed(log, `${phase}.envd_init`, () =>
      envd.init(
        {
          envVars: record.envVars,
          accessToken: record.envdAccessToken || undefined,
          defaultUser: "user",
          // A restored memory snapshot carries the name it was saved with.
          hostname: record.id,
        },
        gone.signal,
        restored ? (host.opts.restoreTimeoutMs ?? 30_000) : 10_000,
      ),
    );
    await saving;
  } catch (err) {
    envd.close();
    await saving.catch(() => undefined);
    throw err;
  }
  live.envd = envd;
  record.status = "running";
  record.lastActiveAtMs = Date.now();
  // envd answered: the operation (a resume's) is done, in this same save.
  delete record.op;
  await host.records.save(record);
  watchExit(host, live, vm);
}

/** Why a VM ended on its own, in words its user can act on. */
function exitCause(exit: { signal?: string | null; code?: number | null }): string {
  // Guest RAM is a file in the data dir, shared with the VMM (and reflinked
  // from snapshots): a page the guest first writes needs a block, and with
  // the disk full the kernel answers the VMM's write with SIGBUS.
  if (exit.signal === "SIGBUS") {
    return "SIGBUS: its memory file could not grow; is the host's data disk full?";
  }
  // -no-reboot: a guest that powers off, or whose kernel panics because its
  // init (tini, and envd under it) died, ends QEMU with status 0.
  if (exit.code === 0)
    return "code 0: the guest powered off or its kernel panicked (did envd die?)";
  return exit.signal ?? `code ${exit.code}`;
}

/**
 * A VM that dies on its own (or whose driver stopped it: Firecracker's page
 * server died under it) frees its resources at once and is reported as failed.
 */
export function watchExit(host: SandboxHost, live: Live, vm: VmHandle): void {
  void vm.exited.then(async (exit) => {
    live.gone.abort(new WrennError("unavailable", "the VM exited; the sandbox is gone"));
    if (host.closed || live.stopping || live.vm !== vm) return;
    const why = `the VM exited unexpectedly (${exitCause(exit)})`;
    host.log.error({ sandbox: live.record.id, why }, "sandbox lost");
    await host.registry.withLock(live.record.id, async () => {
      if (live.stopping || live.vm !== vm) return;
      live.stopping = true;
      await teardown(host, live.record, vm);
      live.vm = null;
      live.envd?.close();
      live.envd = null;
      Object.assign(live.record, {
        status: "failed",
        error: why,
        slotIndex: null,
        disk: null,
        vm: null,
      });
    });
  });
}
