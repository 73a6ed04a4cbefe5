/** QEMU's command line: what a VM of a sandbox runs as, and reading it back. */
import { join } from "node:path";
import { GUEST_TCG_NODE_FLAGS } from "../../image/store.ts";
import { hostTscKhz } from "../../util/tsc.ts";
import { qemuOpt } from "./quote.ts";

export type QemuAccel = "kvm" | "tcg";

/** MiB of TCG translation cache per VM (WRENN_QEMU_TB_MB overrides). */
export const TCG_TB_MB = Number(process.env.WRENN_QEMU_TB_MB) || 256;

/**
 * QEMU's machine type options and CPU model. A saved state loads only into a
 * QEMU started with the same ones (the PIT's device state, the CPU's
 * features), so a state records them and its restore uses them.
 */
export interface QemuPlatform {
  /** `-M` without the memory backend, e.g. "microvm,pit=off". */
  machine: string;
  /** `-cpu`, or absent for QEMU's default (qemu64). */
  cpu?: string;
}

/**
 * What VMs start with today. Under TCG: QEMU's default qemu64 CPU has no
 * ARAT, so Linux believes its local APIC timer stops in idle and keeps a
 * periodic 250 Hz tick through the PIT (nohz_mode 0 in /proc/timer_list);
 * with ARAT and no PIT the idle guest goes tickless: 3.5 % of a core per idle
 * sandbox → 2.4 % (the rest was mostly the agent's metrics poll). Under KVM
 * the host's CPU model already has ARAT.
 */
export function currentPlatform(accel: QemuAccel): QemuPlatform {
  return accel === "kvm"
    ? { machine: "microvm", cpu: "host" }
    : { machine: "microvm,pit=off", cpu: "qemu64,+arat" };
}

/** What VMs started with before states recorded it: a state without a platform was saved so. */
export function legacyPlatform(accel: QemuAccel): QemuPlatform {
  return accel === "kvm" ? { machine: "microvm", cpu: "host" } : { machine: "microvm" };
}

/** What a restore must recreate exactly: the machine the state was saved from. */
export interface QemuMachine {
  vcpus: number;
  memoryMb: number;
  kernelPath: string;
  initrdPath?: string;
  bootArgs: string;
  /** Absent in states saved before it was recorded: see legacyPlatform. */
  platform?: QemuPlatform;
}

/** Per-VM files, named for the VM so one runDir may hold several VMs. */
export function paths(runDir: string, vmId: string) {
  return {
    qmp: join(runDir, `${vmId}.qmp`),
    ram: join(runDir, `${vmId}.mem`),
    console: join(runDir, `${vmId}.console.log`),
    /** The serial console's socket the agent drains into the console log (as long as `qmp`). */
    consoleSocket: join(runDir, `${vmId}.con`),
    log: join(runDir, `${vmId}.qemu.log`),
  };
}

/** A disk as QEMU opens it: the file's format over its protocol (a file, or a block device). */
export interface DiskFile {
  path: string;
  format: "raw" | "qcow2";
  /** "host_device" for a block device (dm-snapshot's), else "file". */
  protocol: "file" | "host_device";
}

/** The block node the guest's virtio-blk device reads, fixed for the VM's life. */
export const DEVICE_NODE = "vda";
/** The node of the disk a VM started with (a standby's placeholder). */
export const DISK_NODE = "disk0";
/** The node of the disk a standby's resume put under the device. */
export const CLAIMED_NODE = "disk1";

/** The node that reads `disk` (blockdev-add's and -blockdev's JSON form). */
export function diskNode(nodeName: string, disk: DiskFile): Record<string, unknown> {
  const file = { driver: disk.protocol, filename: disk.path, discard: "unmap" };
  return disk.format === "raw"
    ? { ...file, "node-name": nodeName }
    : { driver: disk.format, "node-name": nodeName, discard: "unmap", file };
}

/** The device's node over `file` (blockdev-reopen changes its `file`). */
export function deviceNode(file: string): Record<string, unknown> {
  return { driver: "raw", "node-name": DEVICE_NODE, file, discard: "unmap" };
}

/** QEMU's command line for one VM (exported so its shape can be tested). */
export function qemuArgs(opts: {
  vmId: string;
  accel: QemuAccel;
  machine: QemuMachine;
  ramPath: string;
  sharedRam: boolean;
  rootfs: DiskFile;
  tapName: string;
  guestMac: string;
  qmpPath: string;
  consoleSocket: string;
  incoming: boolean;
  /** Run as this user (a name or `uid:gid`) after start-up, under QEMU's seccomp filter. */
  runAs?: string;
}): string[] {
  const m = opts.machine;
  const platform = m.platform ?? legacyPlatform(opts.accel);
  // Under TCG: the guest's TSC is the host's, but the kernel's watchdog checks
  // it against jiffies, which lag whenever the host is busy, and then drops
  // to the jiffies clocksource (4 ms clock, no vDSO: every clock read a
  // syscall). And TCG does not speculate, so Spectre mitigations (retpolines)
  // are pure cost. And an idle guest is woken only for work: no soft-lockup
  // watchdog (every 4 s; under a busy TCG host it also cries wolf) and no
  // proactive compaction (kcompactd polls every 500 ms). And no address
  // space randomisation in the guest: TCG keys its translated code by
  // virtual address (QEMU 7.2), so a process whose libraries land somewhere
  // new has them all translated afresh — measured in a guest, `/bin/true`
  // 24–50 ms → 9–16 ms, `sh -c 'echo hi'` 31–100 → 11 ms, `bash -l -c true`
  // 115–241 → 39–51 ms. The sandbox's boundary is the VM, not ASLR inside
  // it; KVM guests keep it. And envd runs on V8's interpreter alone
  // (wrenn.v8=, GUEST_TCG_NODE_FLAGS says why). Added only when missing: a
  // re-adopted VM's arguments, read back from its command line, already
  // carry them.
  const tcgArgs =
    opts.accel === "tcg"
      ? [
          "tsc=reliable",
          "mitigations=off",
          "nowatchdog",
          "sysctl.vm.compaction_proactiveness=0",
          "norandmaps",
          ...GUEST_TCG_NODE_FLAGS.map((flag) => `wrenn.v8=${flag}`),
        ]
      : [];
  const have = new Set(m.bootArgs.split(/\s+/));
  const bootArgs = [m.bootArgs, ...tcgArgs.filter((a) => !have.has(a))].join(" ").trim();
  return [
    "-name",
    `wrenn-${opts.vmId}`,
    "-M",
    `${platform.machine},memory-backend=ram0`,
    "-accel",
    // TCG's translation cache defaults to 1 GiB, nearly all of it resident
    // after a boot: that, not the guest, was most of a sandbox's host memory
    // (1257 MiB over a 256 MiB guest). 256 MiB keeps TCG's speed (32 MiB
    // halved it) at 355 MiB overhead.
    opts.accel === "tcg" ? `tcg,tb-size=${TCG_TB_MB}` : opts.accel,
    ...(platform.cpu ? ["-cpu", platform.cpu] : []),
    "-m",
    `${m.memoryMb}M`,
    "-smp",
    String(m.vcpus),
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    // A guest reboot or panic ends the process, so `exited` reports it.
    "-no-reboot",
    "-object",
    `memory-backend-file,id=ram0,size=${m.memoryMb}M,mem-path=${qemuOpt(opts.ramPath)},share=${opts.sharedRam ? "on" : "off"}`,
    "-kernel",
    m.kernelPath,
    ...(m.initrdPath ? ["-initrd", m.initrdPath] : []),
    "-append",
    bootArgs,
    // The console goes to a socket the agent drains into a capped, rotated
    // log (console-log.ts), not to a file: a guest can write to its serial
    // port without end, and a file would fill the host's disk. With no
    // agent connected (between agents) QEMU drops the output.
    "-chardev",
    `socket,id=con0,path=${qemuOpt(opts.consoleSocket)},server=on,wait=off`,
    "-serial",
    "chardev:con0",
    // The device's disk is a raw node over the one that reads the file: a
    // standby QEMU (standby.ts) starts on a placeholder, and its claim puts
    // the sandbox's disk under that fixed node (blockdev-reopen).
    "-blockdev",
    JSON.stringify(diskNode(DISK_NODE, opts.rootfs)),
    "-blockdev",
    JSON.stringify(deviceNode(DISK_NODE)),
    "-device",
    `virtio-blk-device,drive=${DEVICE_NODE}`,
    "-netdev",
    `tap,id=net0,ifname=${opts.tapName},script=no,downscript=no`,
    "-device",
    `virtio-net-device,netdev=net0,mac=${opts.guestMac}`,
    // Entropy for the guest: without it getrandom() (Node's start-up) blocks
    // for tens of seconds under TCG. Last, so the disk and NIC keep their slots.
    "-object",
    "rng-random,id=rng0,filename=/dev/urandom",
    "-device",
    "virtio-rng-device,rng=rng0",
    "-qmp",
    `unix:${qemuOpt(opts.qmpPath)},server=on,wait=off`,
    // Paused until the agent says: it moves QEMU into its cgroup first.
    "-S",
    ...(opts.incoming ? ["-incoming", "defer"] : []),
    // Confinement: a seccomp filter (obsolete and scheduling/affinity calls
    // denied; set*id must stay allowed for -runas to drop to the user, which
    // keeps no root id to return to; spawning too, for exec: migrations),
    // then the unprivileged user.
    ...(opts.runAs
      ? ["-sandbox", "on,obsolete=deny,resourcecontrol=deny", "-runas", opts.runAs]
      : []),
  ];
}

/** Adds `tsc_early_khz` unless the caller's boot args already set it. */
export function withTscArg(bootArgs: string): string {
  return /(^|\s)tsc_early_khz=/.test(bootArgs)
    ? bootArgs
    : `${bootArgs} tsc_early_khz=${hostTscKhz()}`.trim();
}

/** Recovers the boot configuration of a re-adopted VM from its command line. */
export function machineFromArgv(argv: string[]): QemuMachine | null {
  const after = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const kernelPath = after("-kernel");
  const bootArgs = after("-append");
  const mem = /^(\d+)M$/.exec(after("-m") ?? "")?.[1];
  const smp = after("-smp");
  const machineType = after("-M")?.replace(/,memory-backend=ram0$/, "");
  if (!kernelPath || bootArgs === undefined || !mem || !smp || !machineType) return null;
  const cpu = after("-cpu");
  return {
    vcpus: Number(smp),
    memoryMb: Number(mem),
    kernelPath,
    initrdPath: after("-initrd"),
    bootArgs,
    platform: { machine: machineType, ...(cpu ? { cpu } : {}) },
  };
}
