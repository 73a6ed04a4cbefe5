import { access, constants } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { WrennError, messageOf } from "@wrenn/shared/errors.ts";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { detectCgroups } from "../cgroup/cgroup.ts";
import { findKernel } from "../image/store.ts";
import { FirecrackerDriver } from "./firecracker/driver.ts";
import { probeKvm, type KvmProbe } from "./kvm-probe.ts";
import { QemuDriver, type QemuAccel } from "./qemu/driver.ts";
import type { VmmDriver, VmmName } from "./vmm.ts";

const QEMU = "qemu-system-x86_64";

/** The executable `name` would run from PATH, or null. */
export async function onPath(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return null;
}

export interface VmmChoice {
  name: VmmName;
  accel?: QemuAccel;
  kvm: KvmProbe;
  why: string;
}

/**
 * Decides which VMM to use: Firecracker when its binary is installed and
 * KVM is usable, else QEMU (KVM when the boot probe passes, TCG otherwise).
 * `override` (config) forces the VMM; WRENN_QEMU_ACCEL forces QEMU's accelerator.
 */
export async function chooseVmm(opts: { override?: VmmName; dataDir: string }): Promise<VmmChoice> {
  const [firecracker, qemu] = await Promise.all([onPath("firecracker"), onPath(QEMU)]);
  let kernel: { vmlinuz: string } | null = null;
  try {
    kernel = await findKernel(opts.dataDir);
  } catch {
    // No guest kernel yet: the probe cannot boot one.
  }
  const kvm = await probeKvm({
    dataDir: opts.dataDir,
    kernelPath: kernel?.vmlinuz ?? null,
    qemuInstalled: qemu !== null,
  });
  const forced = process.env.WRENN_QEMU_ACCEL;
  const accel: QemuAccel =
    forced === "kvm" || forced === "tcg" ? forced : kvm.usable ? "kvm" : "tcg";
  const accelWhy = forced ? `WRENN_QEMU_ACCEL=${forced}` : `KVM: ${kvm.reason}`;

  if (opts.override === "firecracker") {
    if (!firecracker) {
      throw new WrennError("failed_precondition", "vmm=firecracker but no 'firecracker' on PATH");
    }
    return { name: "firecracker", kvm, why: "configured" };
  }
  if (opts.override !== "qemu" && firecracker && kvm.usable) {
    return { name: "firecracker", kvm, why: `${firecracker} found; ${kvm.reason}` };
  }
  if (!qemu) {
    throw new WrennError(
      "failed_precondition",
      firecracker
        ? `firecracker is installed but KVM is not usable (${kvm.reason}), and ${QEMU} is missing: apt-get install qemu-system-x86`
        : `no VMM found: apt-get install qemu-system-x86 (or install firecracker on a KVM host)`,
    );
  }
  const why =
    opts.override === "qemu"
      ? `configured; ${accelWhy}`
      : `${firecracker ? "firecracker needs KVM" : "no firecracker binary"}; ${accelWhy}`;
  return { name: "qemu", accel, kvm, why };
}

/** The VMM driver for this host, logging the choice and why. */
export async function selectVmm(opts: {
  override?: VmmName;
  dataDir: string;
  log?: Logger;
  /** The data dir makes reflink copies: QEMU clones then get their own RAM file. */
  reflinkCopies?: boolean;
  /** And reflinks in place there (QEMU copies a VM's memory while it starts). */
  reflinkInPlace?: boolean;
}): Promise<VmmDriver> {
  const log = opts.log ?? createLogger("host-agent");
  let choice: VmmChoice;
  try {
    choice = await chooseVmm(opts);
  } catch (err) {
    log.error({ err: messageOf(err) }, "no usable VMM");
    throw err;
  }
  log.info({ vmm: choice.name, accel: choice.accel, why: choice.why }, "VMM selected");
  await sweepCgroups(log);
  if (choice.name === "firecracker") {
    // The jailer confines every VM (chroot, VMM user, cgroup); without it the driver warns.
    const [binary, jailerBinary] = await Promise.all([onPath("firecracker"), onPath("jailer")]);
    return new FirecrackerDriver({ log, binary: binary ?? undefined, jailerBinary });
  }
  return new QemuDriver({
    accel: choice.accel ?? "tcg",
    log,
    reflinkCopies: opts.reflinkCopies,
    reflinkInPlace: opts.reflinkInPlace,
  });
}

/**
 * Agent start: removes the VM cgroups a crashed agent or a killed VMM left
 * empty. A group whose VMM still runs (to be re-adopted) refuses removal.
 */
export async function sweepCgroups(log: Logger): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const cgroups = await detectCgroups();
  if (!cgroups) {
    log.warn("no cgroup controllers (cpu, memory, pids) found: VMMs run without resource limits");
    return;
  }
  try {
    const removed = await cgroups.sweep();
    if (removed.length > 0)
      log.info({ removed, cgroup: cgroups.version }, "removed stale VM cgroups");
  } catch (err) {
    log.warn({ err: messageOf(err) }, "could not sweep stale VM cgroups");
  }
}
