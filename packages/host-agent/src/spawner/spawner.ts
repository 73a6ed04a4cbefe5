/**
 * The spawner: a small Node process the agent forks once (client.ts), which
 * starts VMMs and runs the agent's host commands (ip, nft, qemu-img, cp, …)
 * for it. A spawn forks the spawning process, copying its page tables, on
 * the event loop: from `wrenn up`'s process (control plane, PGlite and
 * agent, 525 MiB resident) a spawn blocked it 20–22 ms, from a bare Node
 * 1 ms (measured here; 47 ms with 500 MiB held, 105 ms with 1.5 GiB).
 *
 * Requests and replies are messages over the IPC channel. VMMs run
 * detached: they outlive this process, which ends with its agent. A command
 * under way when it dies is reported failed to its caller.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { runOutcome, type CommandOutcome } from "@wrenn/shared/command.ts";

/** Starts a VMM, detached. */
export interface StartRequest {
  kind: "start";
  id: number;
  cmd: string;
  args: string[];
  logPath: string;
  env?: NodeJS.ProcessEnv;
  /** Opened here (as root) and inherited as fd 3, 4, …, positioned at `position` (a FIFO read-write). */
  files: Array<{ path: string; position: number }>;
}

/** Runs a command to its end and returns its output (a Runner's call). */
export interface RunRequest {
  kind: "run";
  id: number;
  cmd: string;
  args: string[];
  input?: string | Uint8Array;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Ends a command of a run request early (its caller's signal fired). */
export interface CancelRequest {
  kind: "cancel";
  id: number;
}

export type SpawnerRequest = StartRequest | RunRequest | CancelRequest;

export type SpawnerReply =
  | { id: number; pid: number }
  /** `opening`: the log or a passed file; `spawning`: the command itself. */
  | { id: number; error: { stage: "opening" | "spawning"; code?: string; message: string } }
  | { id: number; exit: { code: number | null; signal: NodeJS.Signals | null } }
  | { id: number; outcome: CommandOutcome };

/** A file open for reading whose position (shared with the child) is `position`. */
function openAt(path: string, position: number): number {
  // A FIFO (a standby QEMU's state, written at its claim) opens for reading
  // and writing: for reading alone the open waits for a writer, and a read
  // with no writer yet would see the stream's end.
  const fd = openSync(path, statSync(path).isFIFO() ? "r+" : "r");
  try {
    if (position > 0 && readSync(fd, Buffer.alloc(position), 0, position, null) !== position) {
      throw new Error(`${path} ends before byte ${position}`);
    }
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function start(req: StartRequest, reply: (r: SpawnerReply) => void): void {
  const fds: number[] = [];
  try {
    fds.push(openSync(req.logPath, "a"));
    for (const f of req.files) fds.push(openAt(f.path, f.position));
    const [log, ...pass] = fds as [number, ...number[]];
    const child: ChildProcess = spawn(req.cmd, req.args, {
      detached: true,
      stdio: ["ignore", log, log, ...pass],
      env: req.env,
    });
    child.once("spawn", () => reply({ id: req.id, pid: child.pid ?? -1 }));
    child.once("error", (err: NodeJS.ErrnoException) =>
      reply({ id: req.id, error: { stage: "spawning", code: err.code, message: err.message } }),
    );
    child.once("exit", (code, signal) => reply({ id: req.id, exit: { code, signal } }));
    child.unref();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    reply({ id: req.id, error: { stage: "opening", code: e.code, message: e.message } });
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** Commands running for run requests, by request id: a cancel aborts one. */
const runs = new Map<number, AbortController>();

async function run(req: RunRequest, reply: (r: SpawnerReply) => void): Promise<void> {
  const abort = new AbortController();
  runs.set(req.id, abort);
  try {
    const outcome = await runOutcome(req.cmd, req.args, {
      ...(req.input !== undefined ? { input: Buffer.from(req.input) } : {}),
      ...(req.timeoutMs !== undefined ? { timeoutMs: req.timeoutMs } : {}),
      ...(req.env ? { env: req.env } : {}),
      ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
      signal: abort.signal,
    });
    reply({ id: req.id, outcome });
  } finally {
    runs.delete(req.id);
  }
}

if (process.send) {
  const send = process.send.bind(process);
  process.on("message", (req: SpawnerRequest) => {
    if (req.kind === "start") start(req, (r) => send(r));
    else if (req.kind === "run") void run(req, (r) => send(r));
    else runs.get(req.id)?.abort();
  });
  // The agent is gone: so is this process (its VMMs are not its to end).
  process.on("disconnect", () => process.exit(0));
}
