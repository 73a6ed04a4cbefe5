/**
 * Firecracker's jailer, for hosts that have it: it puts Firecracker in a
 * chroot of its own, a fresh PID and mount namespace, the sandbox's network
 * namespace and cgroup, and drops to an unprivileged uid/gid before exec —
 * the Firecracker counterpart of QEMU's `-runas` and `-sandbox on`
 * (Firecracker installs its own seccomp filters by default).
 *
 * Not wired into the driver yet: inside the chroot the API socket, kernel
 * and disk are at chroot-relative paths (`<base>/firecracker/<id>/root/…`),
 * so the driver must stage them there (hard links or bind mounts) and talk
 * to `<root>/run/firecracker.socket`. This module fixes the command line.
 */
import { join } from "node:path";

export interface JailerSpec {
  jailerBinary: string;
  firecrackerBinary: string;
  vmId: string;
  uid: number;
  gid: number;
  /** Where the jailer makes `<base>/firecracker/<vmId>/root`. */
  chrootBaseDir: string;
  /** `ip netns` name: the jailer joins /var/run/netns/<name>. */
  netns: string;
  cgroupVersion: 1 | 2;
  /** The parent cgroup the VM's own group goes under (ours: "wrenn"). */
  parentCgroup: string;
  cpuWeight: number;
  memoryMaxBytes: number;
  pidsMax: number;
}

/** The chroot the jailer builds for a VM (the driver stages files here). */
export function jailRoot(chrootBaseDir: string, firecrackerBinary: string, vmId: string): string {
  const exe = firecrackerBinary.split("/").pop() ?? "firecracker";
  return join(chrootBaseDir, exe, vmId, "root");
}

export function jailerArgv(spec: JailerSpec): string[] {
  // The jailer's --cgroup takes controller files; v1 counts shares (1024 per
  // weight of 100), v2 weights.
  const cgroups =
    spec.cgroupVersion === 2
      ? [
          `cpu.weight=${spec.cpuWeight}`,
          `memory.max=${spec.memoryMaxBytes}`,
          `pids.max=${spec.pidsMax}`,
        ]
      : [
          `cpu.shares=${Math.max(2, Math.round((spec.cpuWeight * 1024) / 100))}`,
          `memory.limit_in_bytes=${spec.memoryMaxBytes}`,
          `pids.max=${spec.pidsMax}`,
        ];
  return [
    spec.jailerBinary,
    "--id",
    spec.vmId,
    "--exec-file",
    spec.firecrackerBinary,
    "--uid",
    String(spec.uid),
    "--gid",
    String(spec.gid),
    "--chroot-base-dir",
    spec.chrootBaseDir,
    "--netns",
    `/var/run/netns/${spec.netns}`,
    "--new-pid-ns",
    "--cgroup-version",
    String(spec.cgroupVersion),
    "--parent-cgroup",
    spec.parentCgroup,
    ...cgroups.flatMap((c) => ["--cgroup", c]),
    "--",
    // Firecracker's own arguments, relative to the chroot.
    "--api-sock",
    "/run/firecracker.socket",
    "--id",
    spec.vmId,
  ];
}
