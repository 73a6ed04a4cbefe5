/** Firecracker's command line and the per-VM files it uses. */
import { join } from "node:path";

/**
 * Inside each VM's private mount namespace a tmpfs is mounted here and
 * `rootfs` in it links to the sandbox's disk: Firecracker records drive
 * paths in its snapshots, and this one is the same for every VM, so a
 * snapshot restores on any disk, in any slot.
 */
export const STABLE_DIR = "/run/wrenn/fc";
export const STABLE_ROOTFS = `${STABLE_DIR}/rootfs`;
export const ROOT_DRIVE_ID = "rootfs";
export const IFACE_ID = "eth0";

export function paths(runDir: string, vmId: string) {
  return { api: join(runDir, `${vmId}.fc.sock`), log: join(runDir, `${vmId}.fc.log`) };
}

/**
 * The command line: a private mount namespace with the stable rootfs link,
 * then Firecracker itself (`exec`, so the pid is Firecracker's).
 */
export function firecrackerArgv(opts: {
  binary: string;
  vmId: string;
  apiSocket: string;
  diskPath: string;
}): string[] {
  const script =
    'set -e; mount -t tmpfs -o size=64k,mode=0755 wrenn-fc "$1"; ln -s "$2" "$1/rootfs"; shift 2; exec "$@"';
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "sh",
    "-c",
    script,
    "wrenn-fc",
    STABLE_DIR,
    opts.diskPath,
    opts.binary,
    "--api-sock",
    opts.apiSocket,
    "--id",
    opts.vmId,
  ];
}
