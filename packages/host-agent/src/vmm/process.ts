import { fork, type ChildProcess } from "node:child_process";
import { WrennError } from "@wrenn/shared/errors.ts";
import { watchForeignExit, type ExitStatus } from "../util/process.ts";
import type { SpawnReply, SpawnRequest } from "./spawner.ts";

export interface VmmProcess {
  pid: number;
  exited: Promise<ExitStatus>;
}

type Exit = (status: ExitStatus) => void;

/** The spawner process (spawner.ts), forked on first use and again after it died. */
let spawner: ChildProcess | null = null;
/** Spawns the spawner has not answered yet, by request id. */
const starting = new Map<
  number,
  { resolve: (pid: number) => void; reject: (err: Error) => void; exit: Exit }
>();
/** VMMs it started whose exit it has not reported yet, by request id. */
const running = new Map<number, { pid: number; exit: Exit }>();
let nextId = 1;

function spawnerProcess(): ChildProcess {
  if (spawner) return spawner;
  const child = fork(new URL("./spawner.ts", import.meta.url), [], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    execArgv: [],
    serialization: "json",
  });
  child.on("message", (reply: SpawnReply) => {
    const start = starting.get(reply.id);
    starting.delete(reply.id);
    if ("pid" in reply) {
      if (start) running.set(reply.id, { pid: reply.pid, exit: start.exit });
      start?.resolve(reply.pid);
    } else if ("error" in reply) {
      const { code, message, stage } = reply.error;
      start?.reject(Object.assign(new Error(message), { code, stage }));
    } else {
      running.get(reply.id)?.exit(reply.exit);
      running.delete(reply.id);
    }
    quiet();
  });
  child.once("exit", () => {
    if (spawner === child) spawner = null;
    for (const start of starting.values()) start.reject(new Error("the VMM spawner exited"));
    starting.clear();
    // Its VMMs run on (detached): watched from here on as any other process.
    for (const vmm of running.values()) void watchForeignExit(vmm.pid).then(vmm.exit);
    running.clear();
  });
  spawner = child;
  return child;
}

/**
 * Only a spawn under way keeps the agent's process alive: a VMM runs on
 * after its agent, and the spawner ends with it.
 */
function quiet(): void {
  if (!spawner) return;
  if (starting.size > 0) {
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
  let exit!: Exit;
  const exited = new Promise<ExitStatus>((resolve) => (exit = resolve));
  const pid = await new Promise<number>((resolve, reject) => {
    starting.set(id, { resolve, reject, exit });
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
