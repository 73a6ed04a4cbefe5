import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { WrennError } from "@wrenn/shared/errors.ts";
import type { ExitStatus } from "../util/process.ts";

export interface VmmProcess {
  pid: number;
  exited: Promise<ExitStatus>;
}

/**
 * Starts a VMM inside a network namespace (`ip netns exec` setns()es and then
 * execs, so the pid is the VMM's own). The process gets its own process group
 * and is not waited on by the event loop: it must outlive an agent restart.
 * stdout/stderr go to `logPath` so a failed start can be explained.
 */
export async function spawnInNetns(opts: {
  netns: string;
  argv: string[];
  logPath: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Open descriptors the VMM inherits as fd 3, 4, …: a file root opened
   * that the VMM, once it dropped to its own uid, could not open itself.
   */
  passFds?: number[];
}): Promise<VmmProcess> {
  const [cmd, ...args] = opts.netns ? ["ip", "netns", "exec", opts.netns, ...opts.argv] : opts.argv;
  if (!cmd) throw new WrennError("invalid_argument", "empty VMM command line");
  const log = openSync(opts.logPath, "a");
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ["ignore", log, log, ...(opts.passFds ?? [])],
      env: opts.env,
    });
    const exited = new Promise<ExitStatus>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.code === "ENOENT"
            ? new WrennError("failed_precondition", `'${cmd}' is not installed`, { cause: err })
            : new WrennError("internal", `starting ${cmd}: ${err.message}`, { cause: err }),
        ),
      );
    });
    child.unref();
    if (child.pid === undefined) throw new WrennError("internal", `${cmd} has no pid`);
    return { pid: child.pid, exited };
  } finally {
    closeSync(log);
  }
}
