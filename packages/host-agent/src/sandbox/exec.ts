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

/** Bytes of each stream a buffered exec keeps (WRENN_EXEC_BUFFER_BYTES overrides). */
export const EXEC_BUFFER_BYTES = Number(process.env.WRENN_EXEC_BUFFER_BYTES) || 16 * 1024 * 1024;

/** The first `cap` bytes of a stream, and whether more came. */
class Capped {
  readonly #chunks: Buffer[] = [];
  readonly #cap: number;
  #size = 0;
  truncated = false;

  constructor(cap: number) {
    this.#cap = cap;
  }

  push(data: Uint8Array): void {
    const room = this.#cap - this.#size;
    if (data.length > room) this.truncated = true;
    if (room <= 0) return;
    const kept = Buffer.from(data.subarray(0, room));
    this.#chunks.push(kept);
    this.#size += kept.length;
  }

  bytes(): Buffer {
    return Buffer.concat(this.#chunks, this.#size);
  }
}

/**
 * Runs a command to its end and returns its output, at most `cap` bytes per
 * stream. Output past the cap is read and dropped, not a reason to kill the
 * command: what it does (a build, an install) matters more than its log, its
 * exit code stays meaningful, and the caller's deadline still bounds it. A
 * caller who wants all of it streams instead.
 */
export async function exec(
  host: SandboxHost,
  id: string,
  params: ExecParams,
  cap = EXEC_BUFFER_BYTES,
): Promise<ExecResult> {
  const t0 = performance.now();
  const stdout = new Capped(cap);
  const stderr = new Capped(cap);
  let exitCode: number | undefined;
  for await (const ev of execStream(host, id, params)) {
    if (ev.type === "stdout") stdout.push(ev.data);
    else if (ev.type === "stderr") stderr.push(ev.data);
    else if (ev.type === "end") exitCode = ev.exitCode;
  }
  if (exitCode === undefined) {
    throw new WrennError("unavailable", `the command's stream ended without an exit status`);
  }
  const durationMs = Math.round(performance.now() - t0);
  if (stdout.truncated || stderr.truncated) {
    host.log.info(
      { sandbox: id, stdoutTruncated: stdout.truncated, stderrTruncated: stderr.truncated, cap },
      "exec output passed the buffered cap; the rest was dropped",
    );
  }
  return {
    stdout: stdout.bytes(),
    stderr: stderr.bytes(),
    stdoutTruncated: stdout.truncated,
    stderrTruncated: stderr.truncated,
    exitCode,
    durationMs,
  };
}
