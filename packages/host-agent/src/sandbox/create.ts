/**
 * Create: from the warm pool when it holds the template (claim.ts), else
 * from a snapshot template (restore its memory), from a base template's
 * boot snapshot (the same), or by booting the base template. Whatever a
 * failed create took is given back before it reports.
 */
import { mkdir, rm } from "node:fs/promises";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { timed, type Logger } from "@wrenn/shared/log.ts";
import { crashPoint } from "../util/crash-point.ts";
import { operationError } from "../util/disk-full.ts";
import { GUEST_IP, TAP_IP } from "../network/network.ts";
import { BootSnapshots, BUILDER_PREFIX, type Shape } from "./boot-snapshots.ts";
import type { SandboxHost } from "./host.ts";
import type { CreateParams } from "./options.ts";
import type { SandboxRecord } from "./records.ts";
import { newLive, type Live } from "./registry.ts";
import { Rollback } from "./rollback.ts";
import type { BootSource, SnapshotMeta } from "./templates.ts";
import { acquireSlot, attachVm, createDisk, started } from "./attach.ts";
import { claim } from "./claim.ts";
import { isPooled } from "./pool.ts";

const NETMASK = "255.255.255.252";

export async function create(host: SandboxHost, params: CreateParams): Promise<SandboxRecord> {
  const { registry } = host;
  if (registry.has(params.id)) {
    throw new WrennError("already_exists", `sandbox '${params.id}' already exists on this host`);
  }
  const now = Date.now();
  const fresh = (): SandboxRecord => ({
    id: params.id,
    template: params.template,
    vcpus: params.vcpus,
    memoryMb: params.memoryMb,
    diskSizeMb: params.diskSizeMb,
    timeoutSec: params.timeoutSec,
    createdAtMs: now,
    lastActiveAtMs: now,
    status: "starting",
    vmm: host.opts.vmm.name,
    slotIndex: null,
    disk: null,
    vm: null,
    envVars: params.envVars,
    envdAccessToken: params.envdAccessToken ?? "",
    network: params.network ?? { allowOut: [], denyOut: [] },
    basePath: "",
    fromSnapshot: null,
  });
  const live = newLive(fresh());
  registry.set(live);
  const snapshot = await host.templates.get(params.template);
  let source: string | null = null;
  try {
    return await registry.withLock(params.id, async () => {
      if (snapshot) {
        source = sourceKey({ fromSnapshot: snapshot.name });
        return (
          (await fromPool(host, live, source, params)) ??
          (await restoreTemplate(host, live, snapshot, "template"))
        );
      }
      const boot = await bootSnapshotOf(host, live.record);
      if (boot === null) return bootVm(host, live);
      source = sourceKey({ bootSnapshot: boot.name });
      return (
        (await fromPool(host, live, source, params)) ??
        (await restoreBootSnapshot(host, live, boot, fresh))
      );
    });
  } finally {
    // Refilled after this create, not beside it: two restores at once slow both.
    if (source !== null && !isPooled(params.id)) {
      const { template, vcpus, memoryMb, diskSizeMb } = params;
      host.pool?.wanted(source, { template, vcpus, memoryMb, diskSizeMb });
    }
  }
}

/** The warm pool's name for what a sandbox was restored from; null: booted, not poolable. */
export function sourceKey(r: {
  fromSnapshot?: string | null;
  bootSnapshot?: string | null;
}): string | null {
  if (r.fromSnapshot) return `template:${r.fromSnapshot}`;
  if (r.bootSnapshot) return `boot:${r.bootSnapshot}`;
  return null;
}

function fromPool(
  host: SandboxHost,
  live: Live,
  source: string | null,
  params: CreateParams,
): Promise<SandboxRecord | null> | null {
  if (source === null || host.pool === null || isPooled(params.id)) return null;
  return claim(host, live, source, params);
}

async function restoreBootSnapshot(
  host: SandboxHost,
  live: Live,
  boot: SnapshotMeta,
  fresh: () => SandboxRecord,
): Promise<SandboxRecord> {
  const { registry } = host;
  const { id } = live.record;
  try {
    return await restoreTemplate(host, live, boot, "boot");
  } catch (err) {
    // Everything it took is released by now. A boot snapshot the VMM
    // cannot start from (its kernel file gone, a damaged file) must not
    // fail every create of its shape: this one boots, and so do the next
    // for a while. A VM that started and then died is this create's error.
    const vmStarted = live.vm !== null;
    if (vmStarted || (err instanceof WrennError && err.code === "resource_exhausted")) throw err;
    host.log.warn(
      { sandbox: id, snapshot: boot.name, err: messageOf(err) },
      "restoring the boot snapshot failed; booting instead",
    );
    host.bootSnapshots?.failed(boot.name);
    const retry = newLive(fresh());
    registry.set(retry);
    return bootVm(host, retry);
  }
}

/** The boot snapshot a create from a base template restores, or null to boot it. */
async function bootSnapshotOf(
  host: SandboxHost,
  record: SandboxRecord,
): Promise<SnapshotMeta | null> {
  if (host.bootSnapshots === null || record.id.startsWith(BUILDER_PREFIX)) return null;
  const shape: Shape = {
    template: record.template,
    vcpus: record.vcpus,
    memoryMb: record.memoryMb,
    diskSizeMb: record.diskSizeMb,
  };
  const { bootSnapshots } = host;
  // A burst of creates of one shape looks its files up once.
  const key = `${shape.template}/${shape.vcpus}/${shape.memoryMb}/${shape.diskSizeMb}`;
  return host.bootSnapshotLookups.run(key, async () => {
    try {
      // By the files themselves (real paths): image dirs that link to one
      // build share its boot snapshots.
      const [kernel, image] = await Promise.all([
        host.currentKernel(),
        host.opts.images.template(record.template),
      ]);
      const source: BootSource = { rootfs: image.rootfs, kernel: kernel.kernelPath };
      const name = BootSnapshots.nameOf(shape, source, host.opts.vmm.name);
      return await bootSnapshots.get(shape, name, source);
    } catch {
      return null; // the boot reports what is wrong (no such template, no kernel)
    }
  });
}

/**
 * Runs a create's steps with the record and run dir in place; on failure
 * every step's undo runs and the sandbox is forgotten.
 */
async function withUndo(
  host: SandboxHost,
  live: Live,
  log: Logger,
  fn: (undo: Rollback) => Promise<SandboxRecord>,
): Promise<SandboxRecord> {
  const { record } = live;
  const undo = new Rollback(log);
  try {
    undo.push("remove record", () => host.records.remove(record));
    await host.records.save(record);
    undo.push("remove run dir", () => rm(host.runDir(record), { recursive: true, force: true }));
    await mkdir(host.runDir(record), { recursive: true });
    return await fn(undo);
  } catch (err) {
    live.stopping = true;
    log.warn({ err: messageOf(err) }, "create failed; releasing what it acquired");
    // Judged before the undo frees what the failed VM held (a full disk shows).
    const failure = await operationError("create", err, "internal", host.opts.dataDir);
    await undo.run();
    host.registry.delete(record.id);
    throw failure;
  }
}

async function bootVm(host: SandboxHost, live: Live): Promise<SandboxRecord> {
  const { record } = live;
  const log = host.log.child({ sandbox: record.id });
  const t0 = performance.now();
  return withUndo(host, live, log, async (undo) => {
    const [{ kernelPath, initrdPath }, template] = await timed(log, "create.images", () =>
      Promise.all([host.currentKernel(), host.opts.images.template(record.template)]),
    );
    const templateMb = Math.ceil(template.sizeBytes / (1024 * 1024));
    if (record.diskSizeMb < templateMb) {
      throw new WrennError(
        "invalid_argument",
        `disk_size_mb ${record.diskSizeMb} is smaller than template '${record.template}' (${templateMb} MiB)`,
      );
    }
    record.basePath = template.rootfs;
    const slot = await acquireSlot(host, live, log, "create", undo);
    crashPoint("create:after-network");
    const disk = await createDisk(host, live, log, template.rootfs, undo);
    crashPoint("create:after-disk");
    const vm = started(
      live,
      await timed(log, "create.boot", () =>
        host.opts.vmm.boot({
          ...host.machine(record, slot, disk),
          kernelPath,
          initrdPath,
          bootArgs: host.opts.images.bootArgs({
            guestIp: GUEST_IP,
            gatewayIp: TAP_IP,
            netmask: NETMASK,
            // Its own comes with /init (attach.ts): a boot snapshot's
            // builder is renamed by its warm-up (warm-up.ts says why).
            hostname: record.template,
          }),
        }),
      ),
      undo,
    );
    crashPoint("create:after-vm");
    await attachVm(host, live, vm, "create", false);
    log.info(
      { ms: Math.round(performance.now() - t0), vmm: record.vmm, pid: vm.pid },
      "sandbox created",
    );
    return record;
  });
}

/**
 * Create from a snapshot template, or from a base template's boot
 * snapshot: restore its memory instead of booting.
 */
async function restoreTemplate(
  host: SandboxHost,
  live: Live,
  snap: SnapshotMeta,
  kind: "template" | "boot",
): Promise<SandboxRecord> {
  const { record } = live;
  const { vmm } = host.opts;
  const store = kind === "boot" ? (host.bootSnapshots as BootSnapshots).store : host.templates;
  const log = host.log.child({ sandbox: record.id, template: snap.name, kind });
  const t0 = performance.now();
  return withUndo(host, live, log, async (undo) => {
    if (snap.vmm !== vmm.name) {
      throw new WrennError(
        "failed_precondition",
        `snapshot template '${snap.name}' was taken with ${snap.vmm}; this host runs ${vmm.name}`,
      );
    }
    // A snapshot carries its machine: the guest's memory and filesystem were sized for it.
    record.vcpus = snap.vcpus;
    record.memoryMb = snap.memoryMb;
    record.diskSizeMb = snap.diskSizeMb;
    if (kind === "template") record.fromSnapshot = snap.name;
    else record.bootSnapshot = snap.name;
    const files = store.files(snap.name);
    record.basePath = files.rootfs;
    const slot = await acquireSlot(host, live, log, "create", undo);
    crashPoint("create:after-network");
    const disk = await createDisk(host, live, log, files.rootfs, undo);
    crashPoint("create:after-disk");
    const kernel = await host.currentKernel();
    const gated = performance.now();
    let queuedMs = 0;
    const vm = await host.restoreGate.run(async () => {
      queuedMs = Math.round(performance.now() - gated);
      const vm = started(
        live,
        await timed(log, "create.restore", () =>
          vmm.restore({
            ...host.machine(record, slot, disk),
            snapshotDir: files.dir,
            clone: true,
            kernel,
          }),
        ),
        undo,
      );
      crashPoint("create:after-vm");
      await attachVm(host, live, vm, "create", true);
      return vm;
    });
    log.info(
      { ms: Math.round(performance.now() - t0), queuedMs, vmm: record.vmm, pid: vm.pid },
      kind === "template" ? "sandbox created from snapshot template" : "sandbox created",
    );
    // Its first pause's resume may take a VMM started meanwhile.
    void host.standbys.want(files.dir, kernel, { spare: true }).catch((err: unknown) => {
      log.warn({ err: messageOf(err) }, "could not start a standby VMM for the machine");
    });
    return record;
  });
}
