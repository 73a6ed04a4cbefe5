/**
 * Named points in the lifecycle where a test can make the agent die as a
 * power cut or `kill -9` would: `WRENN_CRASH_AT=pause:after-memory` makes
 * the agent SIGKILL itself when it gets there. Read at each point, so one
 * process can be armed after it starts (tests); unset, a point costs one
 * environment lookup.
 */
export type CrashPoint =
  | "create:after-network"
  | "create:after-disk"
  | "create:after-vm"
  | "pause:after-freeze"
  | "pause:after-ram-link"
  | "pause:after-memory"
  | "pause:after-stop"
  | "pause:after-detach"
  | "resume:after-attach"
  | "resume:after-network"
  | "resume:after-restore"
  | "resume:after-commit"
  | "snapshot:after-flatten"
  | "snapshot:after-copy"
  | "destroy:after-stop"
  | "destroy:after-disk";

export function crashPoint(point: CrashPoint): void {
  if (process.env.WRENN_CRASH_AT === point) process.kill(process.pid, "SIGKILL");
}
