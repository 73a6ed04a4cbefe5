/**
 * Firecracker's jailer command line: it makes the chroot
 * `<base>/<exec name>/<id>/root` (where the driver has staged the files,
 * see jail.ts), copies Firecracker in, puts itself in the VM's cgroup with
 * the given limits, joins the sandbox's network namespace, pivots into the
 * chroot in a mount namespace of its own, drops to the unprivileged uid/gid
 * and execs Firecracker with `--id` and the arguments after `--` — the
 * Firecracker counterpart of QEMU's `-runas` and `-sandbox on` (Firecracker
 * installs its own seccomp filters by default).
 *
 * No `--new-pid-ns`: with it the jailer forks, the pid we spawned is not
 * Firecracker's and exits at once, and Firecracker's exit status is lost to
 * us (it is no child of ours). Without it the jailer execs in place, so the
 * driver waits on Firecracker itself as it does unjailed; the chroot has no
 * /proc and the uid is unprivileged, so a PID namespace would add little.
 */
import type { CgroupLimits } from "../../cgroup/cgroup.ts";
import { JAIL_API_SOCKET, jailId } from "./jail.ts";

export interface JailerSpec {
  jailerBinary: string;
  /** Absolute path (the jailer copies it into the chroot). */
  firecrackerBinary: string;
  vmId: string;
  uid: number;
  gid: number;
  /** Where the jailer makes `<base>/<exec name>/<id>/root`. */
  chrootBaseDir: string;
  /** `ip netns` name: the jailer joins /var/run/netns/<name>. */
  netns: string;
  /** The VM's cgroup, made by the jailer under `parent`; none on a host without cgroups. */
  cgroup: { version: 1 | 2; parent: string; limits: CgroupLimits } | null;
}

export function jailerArgv(spec: JailerSpec): string[] {
  const cgroup = spec.cgroup;
  // The jailer's --cgroup takes controller files; v1 counts shares (1024 per
  // weight of 100), v2 weights.
  const files = !cgroup
    ? []
    : cgroup.version === 2
      ? [
          `cpu.weight=${cgroup.limits.cpuWeight}`,
          `memory.max=${cgroup.limits.memoryMaxBytes}`,
          `pids.max=${cgroup.limits.pidsMax}`,
        ]
      : [
          `cpu.shares=${Math.max(2, Math.round((cgroup.limits.cpuWeight * 1024) / 100))}`,
          `memory.limit_in_bytes=${cgroup.limits.memoryMaxBytes}`,
          `pids.max=${cgroup.limits.pidsMax}`,
        ];
  return [
    spec.jailerBinary,
    "--id",
    jailId(spec.vmId),
    "--exec-file",
    spec.firecrackerBinary,
    "--uid",
    String(spec.uid),
    "--gid",
    String(spec.gid),
    "--chroot-base-dir",
    spec.chrootBaseDir,
    ...(spec.netns ? ["--netns", `/var/run/netns/${spec.netns}`] : []),
    ...(cgroup
      ? ["--cgroup-version", String(cgroup.version), "--parent-cgroup", cgroup.parent]
      : []),
    ...files.flatMap((c) => ["--cgroup", c]),
    "--",
    // Firecracker's own arguments, relative to the chroot (the jailer adds --id).
    "--api-sock",
    JAIL_API_SOCKET,
  ];
}
