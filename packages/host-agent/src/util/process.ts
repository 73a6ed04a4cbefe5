/** Process helpers: liveness, command lines, waits and log tails. */
import { open, readdir, readFile } from "node:fs/promises";
import { WrennError } from "@wrenn/shared/errors.ts";

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
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
 * SIGKILLs `pid` if its command line names `marker` (a pid may have been
 * reused by something else), and waits up to 2 s for it to be gone.
 */
export async function killIfNamed(pid: number, marker: string): Promise<void> {
  const argv = await cmdlineOf(pid);
  if (!argv?.some((arg) => arg.includes(marker))) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return; // Gone meanwhile.
  }
  for (let i = 0; i < 100 && (await isAlive(pid)); i++) {
    await new Promise((r) => setTimeout(r, 20));
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

/**
 * Kills every process whose command line names a path under `dir` but none
 * under the `keep.dirs`, and is not a VMM named (`-name`) one of
 * `keep.names`: VMMs and page servers an agent started and died before it
 * recorded (a crash between spawn and the record's write), and standby
 * VMMs nobody took (a taken one's paths name where it waited).
 */
export async function killStrays(
  dir: string,
  keep: { dirs: string[]; names: string[] },
): Promise<number[]> {
  const under = (d: string) => (d.endsWith("/") ? d : `${d}/`);
  const prefix = under(dir);
  const kept = keep.dirs.map(under);
  const names = new Set(keep.names);
  const killed: number[] = [];
  for (const name of await readdir("/proc").catch(() => [])) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const argv = await cmdlineOf(pid);
    if (!argv?.some((arg) => arg.includes(prefix))) continue;
    if (argv.some((arg) => kept.some((k) => arg.includes(k)))) continue;
    const vmName = argv[argv.indexOf("-name") + 1];
    if (argv.includes("-name") && vmName !== undefined && names.has(vmName)) continue;
    await killIfNamed(pid, prefix);
    killed.push(pid);
  }
  return killed;
}

/** Sends a signal to a process that may be gone already. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/**
 * Ends a process: `ask` it to exit (a VMM's own quit), SIGKILL it if it has
 * not after `graceMs`, and wait for `exited`; throws only if it survives SIGKILL.
 */
export async function endProcess(opts: {
  pid: number;
  exited: Promise<unknown>;
  graceMs: number;
  name: string;
  ask: () => void;
  onKill?: () => void;
}): Promise<void> {
  if (await isAlive(opts.pid)) {
    opts.ask();
    if (!(await within(opts.exited, opts.graceMs))) {
      opts.onKill?.();
      signal(opts.pid, "SIGKILL");
      if (!(await within(opts.exited, 10_000))) {
        throw new WrennError("internal", `${opts.name} pid ${opts.pid} survived SIGKILL`);
      }
    }
  }
  await opts.exited;
}
