import { WrennError } from "@wrenn/shared/errors.ts";
import { spawnDetached } from "../spawner/client.ts";
import type { ExitStatus } from "../util/process.ts";
import { NETNS_DIR } from "./confine.ts";

export interface VmmProcess {
  pid: number;
  exited: Promise<ExitStatus>;
}

/**
 * Starts a VMM inside a network namespace (nsenter, or `ip netns exec`,
 * setns()es and then execs, so the pid is the VMM's own), through the
 * spawner: the agent's own process is too large to fork on its event loop.
 * The process gets its own process group and outlives the agent (an agent
 * restart re-adopts it). stdout/stderr go to `logPath` so a failed start
 * can be explained.
 */
export async function spawnInNetns(opts: {
  netns: string;
  argv: string[];
  logPath: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Files the VMM inherits open as fd 3, 4, …, at `position`: opened by
   * root, where the VMM, once it dropped to its own uid, could not open them.
   */
  passFiles?: Array<{ path: string; position: number }>;
  /**
   * The VMM looks its devices up under /sys (Firecracker checks its tap in
   * /sys/class/net): it starts through `ip netns exec`, which mounts the
   * namespace's own /sys in a mount namespace of the VMM's. Otherwise
   * nsenter joins the network namespace alone: 1.64 ms of CPU a start
   * against 2.33 (perf stat here), and no mount namespace per VMM.
   */
  readsSys?: boolean;
}): Promise<VmmProcess> {
  const join = opts.readsSys
    ? ["ip", "netns", "exec", opts.netns]
    : ["nsenter", `--net=${NETNS_DIR}/${opts.netns}`, "--"];
  const [cmd, ...args] = opts.netns ? [...join, ...opts.argv] : opts.argv;
  if (!cmd) throw new WrennError("invalid_argument", "empty VMM command line");
  return spawnDetached({
    cmd,
    args,
    logPath: opts.logPath,
    ...(opts.env ? { env: opts.env } : {}),
    files: opts.passFiles ?? [],
  }).catch((err: NodeJS.ErrnoException & { stage?: string }) => {
    throw err.code === "ENOENT" && err.stage === "spawning"
      ? new WrennError("failed_precondition", `'${cmd}' is not installed`, { cause: err })
      : new WrennError("internal", `starting ${cmd}: ${err.message}`, { cause: err });
  });
}
