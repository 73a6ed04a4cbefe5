import { fork, type ChildProcess } from "node:child_process";
import { WrennError } from "@wrenn/shared/errors.ts";
import { watchForeignExit, type ExitStatus } from "../util/process.ts";
import type { SpawnReply, SpawnRequest } from "./spawner.ts";

export interface VmmProcess {
  pid: number;
  exited: Promise<ExitStatus>;
}

interface Pending {
  started: { resolve: (pid: number) => void; reject: (err: Error) => void } | null;
  pid: number | null;
  exit: (status: ExitStatus) => void;
}

/** The spawner process (spawner.ts), forked on first use and again after it died. */
let spawner: ChildProcess | null = null;
const pending = new Map<number, Pending>();
let nextId = 1;

function spawnerProcess(): ChildProcess {
  if (spawner) return spawner;
  const child = fork(new URL("./spawner.ts", import.meta.url), [], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    execArgv: [],
    serialization: "json",
  });
  child.on("message", (reply: SpawnReply) => {
    const p = pending.get(reply.id);
    if (!p) return;
    if ("pid" in reply) {
      p.pid = reply.pid;
      p.started?.resolve(reply.pid);
      p.started = null;
      quiet();
    } else if ("error" in reply) {
      const { code, message, stage } = reply.error;
      p.started?.reject(Object.assign(new Error(message), { code, stage }));
      pending.delete(reply.id);
      quiet();
    } else {
      pending.delete(reply.id);
      p.exit(reply.exit);
    }
  });
  child.once("exit", () => {
    if (spawner === child) spawner = null;
    // Its VMMs run on (detached): watched from here on as any other process.
    for (const [id, p] of pending) {
      pending.delete(id);
      if (p.started) p.started.reject(new Error("the VMM spawner exited"));
      else if (p.pid !== null) void watchForeignExit(p.pid).then(p.exit);
    }
  });
  spawner = child;
  quiet();
  return child;
}

/**
 * Only a spawn under way keeps the agent's process alive: a VMM runs on
 * after its agent, and the spawner ends with it.
 */
function quiet(): void {
  if (!spawner) return;
  const starting = [...pending.values()].some((p) => p.started !== null);
  if (starting) {
    spawner.ref();
    spawner.channel?.ref();
  } else {
    spawner.unref();
    spawner.channel?.unref();
  }
}

/**
 * Starts a VMM inside a network namespace (`ip netns exec` setns()es and then
 * execs, so the pid is the VMM's own), through the spawner (spawner.ts): the
 * agent's own process is too large to fork on its event loop. The process
 * gets its own process group and outlives the agent (an agent restart
 * re-adopts it). stdout/stderr go to `logPath` so a failed start can be
 * explained.
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
}): Promise<VmmProcess> {
  const [cmd, ...args] = opts.netns ? ["ip", "netns", "exec", opts.netns, ...opts.argv] : opts.argv;
  if (!cmd) throw new WrennError("invalid_argument", "empty VMM command line");
  const id = nextId++;
  let exit!: (status: ExitStatus) => void;
  const exited = new Promise<ExitStatus>((resolve) => (exit = resolve));
  const pid = await new Promise<number>((resolve, reject) => {
    pending.set(id, { started: { resolve, reject }, pid: null, exit });
    const request: SpawnRequest = {
      id,
      cmd,
      args,
      logPath: opts.logPath,
      ...(opts.env ? { env: opts.env } : {}),
      files: opts.passFiles ?? [],
    };
    spawnerProcess().send(request);
    quiet();
  }).catch((err: NodeJS.ErrnoException & { stage?: string }) => {
    throw err.code === "ENOENT" && err.stage === "spawning"
      ? new WrennError("failed_precondition", `'${cmd}' is not installed`, { cause: err })
      : new WrennError("internal", `starting ${cmd}: ${err.message}`, { cause: err });
  });
  return { pid, exited };
}
