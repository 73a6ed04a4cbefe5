/** Commands in a running sandbox, streamed or buffered, under a deadline. */
import { WrennError } from "@wrenn/shared/errors.ts";
import type { ExecEvent } from "../envd/client.ts";
import type { SandboxHost } from "./host.ts";
import type { ExecParams, ExecResult } from "./options.ts";

/** Output events of a command; ends with an `end` event or throws. */
export async function* execStream(
  host: SandboxHost,
  id: string,
  params: ExecParams,
): AsyncGenerator<ExecEvent> {
  const { live, envd } = host.registry.running(id);
  const timeout = params.timeoutSec > 0 ? AbortSignal.timeout(params.timeoutSec * 1000) : undefined;
  let pid: number | undefined;
  try {
    for await (const ev of envd.execStream({ ...params, signal: timeout })) {
      if (ev.type === "start") pid = ev.pid;
      yield ev;
    }
  } catch (err) {
    if (timeout?.aborted) {
      if (pid !== undefined) await envd.kill(pid);
      throw new WrennError(
        "deadline_exceeded",
        `command did not finish within ${params.timeoutSec} s and was killed`,
      );
    }
    if (live.gone.signal.aborted || live.stopping) {
      throw new WrennError("unavailable", `sandbox '${id}' stopped during the command`);
    }
    throw err;
  } finally {
    live.record.lastActiveAtMs = Date.now();
  }
}

export async function exec(host: SandboxHost, id: string, params: ExecParams): Promise<ExecResult> {
  const t0 = performance.now();
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let exitCode: number | undefined;
  for await (const ev of execStream(host, id, params)) {
    if (ev.type === "stdout") stdout.push(Buffer.from(ev.data));
    else if (ev.type === "stderr") stderr.push(Buffer.from(ev.data));
    else if (ev.type === "end") exitCode = ev.exitCode;
  }
  if (exitCode === undefined) {
    throw new WrennError("unavailable", `the command's stream ended without an exit status`);
  }
  return {
    stdout: Buffer.concat(stdout),
    stderr: Buffer.concat(stderr),
    exitCode,
    durationMs: Math.round(performance.now() - t0),
  };
}
