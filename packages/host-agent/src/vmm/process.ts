import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { open, readdir, readFile } from "node:fs/promises";
import { WrennError } from "@wrenn/shared/errors.ts";

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

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
}): Promise<VmmProcess> {
  const [cmd, ...args] = opts.netns ? ["ip", "netns", "exec", opts.netns, ...opts.argv] : opts.argv;
  if (!cmd) throw new WrennError("invalid_argument", "empty VMM command line");
  const log = openSync(opts.logPath, "a");
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ["ignore", log, log],
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

/**
 * True while `pid` exists and has not finished exiting. A zombie leader
 * whose other threads still run has not released its files yet (QEMU's disk
 * lock, for one): it counts as alive until it is the last thread left.
 */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The state letter follows the parenthesised command name, which may contain spaces.
    const close = stat.lastIndexOf(")");
    if (stat.slice(close + 2, close + 3) !== "Z") return true;
    return (await readdir(`/proc/${pid}/task`)).length > 1;
  } catch {
    return false;
  }
}

/** The argv of a running process, or null if it is gone. */
export async function cmdlineOf(pid: number): Promise<string[] | null> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return raw ? raw.replace(/\0$/, "").split("\0") : null;
  } catch {
    return null;
  }
}

/**
 * Exit of a process that is not our child (re-adopted after an agent
 * restart): we cannot wait() on it, so poll. `hint` (e.g. the control socket
 * closing) makes the poll start at once instead of at the next tick.
 */
export function watchForeignExit(pid: number, hint?: Promise<unknown>): Promise<ExitStatus> {
  return new Promise((resolve) => {
    const check = async () => {
      if (!(await isAlive(pid))) {
        clearInterval(timer);
        resolve({ code: null, signal: null });
      }
    };
    const timer = setInterval(() => void check(), 250);
    timer.unref();
    void hint?.then(async () => {
      // The socket closes a moment before the process is gone.
      for (let i = 0; i < 100 && (await isAlive(pid)); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await check();
    });
  });
}

/** Waits for `p` at most `ms`; returns whether it settled. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The last lines of a log file, for error messages. */
export async function tail(path: string, lines = 8): Promise<string> {
  let fh;
  try {
    fh = await open(path, "r");
    const { size } = await fh.stat();
    const len = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    return buf.toString("utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  } finally {
    await fh?.close();
  }
}
