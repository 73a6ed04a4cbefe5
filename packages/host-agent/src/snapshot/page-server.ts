/**
 * Starts and watches the native userfaultfd page server (native/uffd) for
 * one VM. The agent starts one per restored sandbox, hands `socketPath` to
 * Firecracker as the Uffd backend, and watches `exited`: if the server dies
 * while the VM runs, the VM would hang on its next fault, so the sandbox
 * must be marked failed.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { setPriority } from "node:os";
import { join, resolve } from "node:path";
import { WrennError, messageOf, type ErrorCode } from "@wrenn/shared/errors.ts";
import { runCommand, type Runner } from "@wrenn/shared/command.ts";
import { createLogger, type Logger } from "@wrenn/shared/log.ts";
import { isAlive, watchForeignExit } from "../util/process.ts";
import { HEADER_FILE } from "./header.ts";

const defaultLog = createLogger("page-server");

export const NATIVE_UFFD_DIR = resolve(import.meta.dirname, "../../../../native/uffd");

/** WRENN_UFFD_SERVER overrides where the binary is (e.g. an installed copy). */
export function pageServerBinary(): string {
  return process.env.WRENN_UFFD_SERVER ?? join(NATIVE_UFFD_DIR, "uffd-server");
}

/** Builds the page server and its test harness (gcc + make). */
export async function buildPageServer(runner: Runner = runCommand): Promise<void> {
  await runner("make", ["-s", "-C", NATIVE_UFFD_DIR]);
}

export interface PageServerOptions {
  /** Unix socket Firecracker connects to (`mem_backend.backend_path`). */
  socketPath: string;
  /** Snapshot directory: `memfile.header` + generations, or a legacy `memfile`. */
  snapshotDir: string;
  /** Pin the server to this CPU, the vCPU's: wakeups there are ~15x cheaper. */
  cpu?: number;
  /** Longest run copied per fault (KiB); bigger runs make sequential restore faster. */
  runKib?: number;
  /** Largest read-ahead window after sequential faults (KiB; 0 = off). */
  readaheadKib?: number;
  /**
   * Scheduling priority (nice, default -10): a vCPU waiting on a fault is
   * stalled until the server runs, so it must not queue behind batch work.
   */
  nice?: number;
  readyTimeoutMs?: number;
  binary?: string;
  /** The caller's logger (carrying its sandbox id); default a "page-server" one. */
  log?: Logger;
}

/**
 * Where a server's stderr goes: a file, not a pipe to the agent, so the
 * server outlives an agent restart (a write to a dead pipe would kill it and
 * hang its VM) and the next agent can still read why it ended.
 */
export function pageServerLog(socketPath: string): string {
  return `${socketPath}.log`;
}

export interface PageServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** What the exit means, in words. */
  reason: string;
  /** True when the server ended because its VM went away (the normal end). */
  vmExited: boolean;
  /**
   * Neither the VM's exit nor stop(): the VM, if still running, will hang
   * on its next page fault, so its sandbox must be marked failed.
   */
  unexpected: boolean;
}

/** The server's exit statuses (see uffd-server.c). */
const EXIT_REASONS: Record<number, [ErrorCode, string]> = {
  0: ["cancelled", "the VM exited"],
  2: ["invalid_argument", "bad arguments"],
  3: ["failed_precondition", "the memory snapshot is invalid"],
  4: ["unavailable", "the VMM's handshake failed"],
  5: ["internal", "a userfaultfd operation failed"],
};

export interface PageServer {
  readonly pid: number;
  readonly socketPath: string;
  readonly exited: Promise<PageServerExit>;
  /** The last lines the server wrote to stderr (its errors and final statistics). */
  stderr(): string;
  /** What a restarted agent needs to adopt the server (see adoptPageServer). */
  readonly record: PageServerRecord;
  /** Stops the server (SIGTERM, SIGKILL after a grace period) and waits for it; idempotent. */
  stop(): Promise<PageServerExit>;
}

const STDERR_KEEP = 16 << 10;

export async function startPageServer(opts: PageServerOptions): Promise<PageServer> {
  const log = opts.log ?? defaultLog;
  const binary = opts.binary ?? pageServerBinary();
  try {
    await access(binary);
  } catch {
    throw new WrennError(
      "failed_precondition",
      `page server ${binary} is not built (run 'make -C native/uffd'; needs gcc and make)`,
    );
  }
  const header = await access(join(opts.snapshotDir, HEADER_FILE)).then(
    () => join(opts.snapshotDir, HEADER_FILE),
    () => "-",
  );
  const args: string[] = [];
  if (opts.cpu !== undefined) args.push("--cpu", String(opts.cpu));
  if (opts.runKib !== undefined) args.push("--run-kib", String(opts.runKib));
  if (opts.readaheadKib !== undefined) args.push("--readahead-kib", String(opts.readaheadKib));
  args.push(opts.socketPath, header, opts.snapshotDir);

  const logPath = pageServerLog(opts.socketPath);
  const logFd = openSync(logPath, "w");
  // Its own process group: a Ctrl-C meant for the agent must not reach it.
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", logFd], detached: true });
  closeSync(logFd);
  let stopRequested = false;
  if (child.pid !== undefined) {
    try {
      setPriority(child.pid, opts.nice ?? -10);
    } catch (e) {
      log.warn(
        { serverPid: child.pid, err: messageOf(e) },
        "cannot raise the page server's priority",
      );
    }
  }
  const stderr = () => tailOf(logPath);

  const exited = new Promise<PageServerExit>((res) => {
    child.on("error", (e) => {
      res({
        code: null,
        signal: null,
        reason: `cannot run ${binary}: ${e.message}`,
        vmExited: false,
        unexpected: true,
      });
    });
    child.on("close", (code, signal) => {
      const err = stderr();
      const known = code === null ? undefined : EXIT_REASONS[code];
      const reason = signal
        ? `killed by ${signal}`
        : `${known?.[1] ?? `exit ${code}`}${code === 0 ? "" : `: ${lastLine(err)}`}`;
      const exit = {
        code,
        signal,
        reason,
        vmExited: code === 0,
        unexpected: code !== 0 && !stopRequested,
      };
      log.info({ serverPid: child.pid, ...exit, stats: lastLine(err) }, "page server exited");
      res(exit);
    });
  });

  await new Promise<void>((res, rej) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      rej(
        new WrennError(
          "deadline_exceeded",
          `page server for ${opts.snapshotDir} not ready after ${opts.readyTimeoutMs ?? 10_000} ms`,
        ),
      );
    }, opts.readyTimeoutMs ?? 10_000);
    const stdout = child.stdout;
    if (stdout === null) throw new WrennError("internal", "the page server has no stdout pipe");
    stdout.setEncoding("utf8");
    stdout.on("data", (s: string) => {
      out += s;
      if (out.includes("ready\n")) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then((exit) => {
      clearTimeout(timer);
      const code = exit.code === null ? undefined : EXIT_REASONS[exit.code];
      rej(
        new WrennError(
          code?.[0] ?? "internal",
          `page server for ${opts.snapshotDir} failed to start: ${exit.reason}`,
        ),
      );
    });
  });

  let stopping: Promise<PageServerExit> | undefined;
  return {
    pid: child.pid as number,
    socketPath: opts.socketPath,
    record: { pid: child.pid as number, socketPath: opts.socketPath },
    exited,
    stderr,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          stopRequested = true;
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
          const exit = await exited;
          clearTimeout(timer);
          return exit;
        }
        return exited;
      })();
      return stopping;
    },
  };
}

export interface PageServerRecord {
  pid: number;
  socketPath: string;
}

/**
 * Re-attaches to a page server an earlier agent started (its VM kept
 * running through the restart), or null when it is gone or `pid` is now
 * another process. Not our child: its exit is polled and its status read
 * from its log.
 */
export async function adoptPageServer(
  rec: PageServerRecord,
  log: Logger = defaultLog,
): Promise<PageServer | null> {
  const cmdline = await readFile(`/proc/${rec.pid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.split("\0").includes(rec.socketPath) || !(await isAlive(rec.pid))) return null;
  const logPath = pageServerLog(rec.socketPath);
  let stopRequested = false;
  const exited = watchForeignExit(rec.pid).then((): PageServerExit => {
    const last = lastLine(tailOf(logPath));
    // Its last words on a normal end name the VM's exit (see uffd-server.c).
    const vmExited = /VM process \d+ exited|the VM's memory is gone/.test(last);
    return {
      code: null,
      signal: null,
      reason: last || "exited without a word",
      vmExited,
      unexpected: !stopRequested && !vmExited,
    };
  });
  let stopping: Promise<PageServerExit> | undefined;
  log.info({ serverPid: rec.pid }, "re-adopted page server");
  return {
    pid: rec.pid,
    socketPath: rec.socketPath,
    record: rec,
    exited,
    stderr: () => tailOf(logPath),
    stop() {
      stopping ??= (async () => {
        stopRequested = true;
        const kill = (sig: NodeJS.Signals) => {
          try {
            process.kill(rec.pid, sig);
          } catch {
            // Gone already.
          }
        };
        kill("SIGTERM");
        const timer = setTimeout(() => kill("SIGKILL"), 2000);
        const exit = await exited;
        clearTimeout(timer);
        return exit;
      })();
      return stopping;
    },
  };
}

function tailOf(path: string): string {
  try {
    return readFileSync(path, "utf8").slice(-STDERR_KEEP);
  } catch {
    return "";
  }
}

function lastLine(s: string): string {
  return s.trim().split("\n").at(-1) ?? "";
}
