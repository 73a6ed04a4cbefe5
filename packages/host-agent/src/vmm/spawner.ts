/**
 * The VMM spawner: a small Node process the agent forks once (process.ts),
 * which starts VMMs for it and reports their exits. A spawn forks the
 * spawning process, copying its page tables, on the event loop: from `wrenn
 * up`'s process (control plane, PGlite and agent, 525 MiB resident) a spawn
 * blocked it 20–22 ms, from a bare Node 1 ms (measured here; 47 ms with
 * 500 MiB held, 105 ms with 1.5 GiB).
 *
 * Requests and replies are JSON messages over the IPC channel. The VMMs run
 * detached: they outlive this process, which ends with its agent.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readSync } from "node:fs";

export interface SpawnRequest {
  id: number;
  cmd: string;
  args: string[];
  logPath: string;
  env?: NodeJS.ProcessEnv;
  /** Opened here (as root) and inherited as fd 3, 4, …, positioned at `position`. */
  files: Array<{ path: string; position: number }>;
}

export type SpawnReply =
  | { id: number; pid: number }
  /** `opening`: the log or a passed file; `spawning`: the command itself. */
  | { id: number; error: { stage: "opening" | "spawning"; code?: string; message: string } }
  | { id: number; exit: { code: number | null; signal: NodeJS.Signals | null } };

/** A file open for reading whose position (shared with the child) is `position`. */
function openAt(path: string, position: number): number {
  const fd = openSync(path, "r");
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

function start(req: SpawnRequest, reply: (r: SpawnReply) => void): void {
  const fds: number[] = [];
  try {
    fds.push(openSync(req.logPath, "a"));
    for (const f of req.files) fds.push(openAt(f.path, f.position));
    const [log, ...pass] = fds as [number, ...number[]];
    const child = spawn(req.cmd, req.args, {
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

if (process.send) {
  const send = process.send.bind(process);
  process.on("message", (req: SpawnRequest) => start(req, (r) => send(r)));
  // The agent is gone: so is this process (its VMMs are not its to end).
  process.on("disconnect", () => process.exit(0));
}
