/**
 * The agent's side of the spawner (spawner.ts): forked on first use and
 * again after it died, held open only while a request is under way.
 */
import { fork, type ChildProcess } from "node:child_process";
import { commandResult, type CommandOutcome, type Runner } from "@wrenn/shared/command.ts";
import { watchForeignExit, type ExitStatus } from "../util/process.ts";
import type { SpawnerReply, SpawnerRequest, StartRequest } from "./spawner.ts";

type Exit = (status: ExitStatus) => void;

let spawner: ChildProcess | null = null;
/** Starts the spawner has not answered yet, by request id. */
const starting = new Map<
  number,
  { resolve: (pid: number) => void; reject: (err: Error) => void; exit: Exit }
>();
/** Processes it started whose exit it has not reported yet, by request id. */
const running = new Map<number, { pid: number; exit: Exit }>();
/** Commands it runs whose outcome has not come back yet, by request id. */
const runs = new Map<number, (outcome: CommandOutcome) => void>();
let nextId = 1;

function spawnerProcess(): ChildProcess {
  if (spawner) return spawner;
  const child = fork(new URL("./spawner.ts", import.meta.url), [], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    execArgv: [],
    // Structured clone: a command's input may be bytes.
    serialization: "advanced",
  });
  child.on("message", (reply: SpawnerReply) => {
    if ("outcome" in reply) {
      runs.get(reply.id)?.(reply.outcome);
      runs.delete(reply.id);
    } else if ("pid" in reply) {
      const start = starting.get(reply.id);
      starting.delete(reply.id);
      if (start) running.set(reply.id, { pid: reply.pid, exit: start.exit });
      start?.resolve(reply.pid);
    } else if ("error" in reply) {
      const start = starting.get(reply.id);
      starting.delete(reply.id);
      const { code, message, stage } = reply.error;
      start?.reject(Object.assign(new Error(message), { code, stage }));
    } else {
      running.get(reply.id)?.exit(reply.exit);
      running.delete(reply.id);
    }
    quiet();
  });
  // A send that failed because the spawner just died: its exit fails what was sent.
  child.on("error", () => undefined);
  child.once("exit", () => {
    if (spawner === child) spawner = null;
    for (const start of starting.values()) start.reject(new Error("the spawner exited"));
    starting.clear();
    // Its VMMs run on (detached): watched from here on as any other process.
    for (const vmm of running.values()) void watchForeignExit(vmm.pid).then(vmm.exit);
    running.clear();
    // Its commands died with it.
    for (const settle of runs.values()) {
      settle({ failed: { message: "the host agent's spawner process exited" } });
    }
    runs.clear();
  });
  spawner = child;
  return child;
}

/**
 * Only a request under way keeps the agent's process alive: a VMM runs on
 * after its agent, and the spawner ends with it.
 */
function quiet(): void {
  if (!spawner) return;
  if (starting.size > 0 || runs.size > 0) {
    spawner.ref();
    spawner.channel?.ref();
  } else {
    spawner.unref();
    spawner.channel?.unref();
  }
}

function send(request: SpawnerRequest): void {
  const child = spawnerProcess();
  // Dead but not yet reaped: its exit fails the request.
  if (child.connected) child.send(request);
  quiet();
}

/**
 * Starts a detached process in its own process group; resolves with its
 * pid once it runs. Errors carry `code` and `stage` (spawner.ts).
 */
export async function spawnDetached(
  request: Omit<StartRequest, "kind" | "id">,
): Promise<{ pid: number; exited: Promise<ExitStatus> }> {
  const id = nextId++;
  let exit!: Exit;
  const exited = new Promise<ExitStatus>((resolve) => (exit = resolve));
  const pid = await new Promise<number>((resolve, reject) => {
    starting.set(id, { resolve, reject, exit });
    send({ kind: "start", id, ...request });
  });
  return { pid, exited };
}

/**
 * runCommand, run by the spawner: the same results and errors, without
 * forking the agent's large process on its event loop.
 */
export const spawnerRunner: Runner = async (cmd, args, options = {}) => {
  const { signal } = options;
  const id = nextId++;
  const outcome = await new Promise<CommandOutcome>((resolve) => {
    const aborted = (): CommandOutcome => ({
      failed: { name: "AbortError", message: "The operation was aborted" },
    });
    if (signal?.aborted) return resolve(aborted());
    const onAbort = () => {
      runs.delete(id);
      quiet();
      if (spawner?.connected) spawner.send({ kind: "cancel", id });
      resolve(aborted());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    runs.set(id, (o) => {
      signal?.removeEventListener("abort", onAbort);
      resolve(o);
    });
    send({
      kind: "run",
      id,
      cmd,
      args,
      ...(options.input !== undefined ? { input: options.input } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    });
  });
  return commandResult(cmd, args, outcome);
};
