import { spawn } from "node:child_process";
import { WrennError } from "./errors.ts";

export interface CommandOptions {
  /** Written to the command's stdin, then stdin is closed. */
  input?: string | Buffer;
  signal?: AbortSignal;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** A command that exited non-zero; keeps what it said so callers can match on it. */
export class CommandError extends WrennError {
  readonly command: string;
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(command: string, exitCode: number | null, stderr: string, cause?: unknown) {
    const detail = stderr.trim().split("\n").slice(-3).join(" / ");
    super(
      "internal",
      `${command} failed (${exitCode === null ? "killed" : `exit ${exitCode}`})${detail ? `: ${detail}` : ""}`,
      { cause },
    );
    this.name = "CommandError";
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/**
 * Runs a host command (ip, nft, losetup, dmsetup, qemu-img, …) and returns
 * its output. Drivers take a `Runner` so their exact command lines can be
 * tested where the real tool cannot run.
 */
export type Runner = (
  cmd: string,
  args: string[],
  options?: CommandOptions,
) => Promise<CommandResult>;

/** How a command ended, wherever it ran (here, or in the host agent's spawner). */
export type CommandOutcome =
  | { exitCode: number | null; stdout: string; stderr: string }
  /** It did not run to an exit: not found (`ENOENT`), cancelled (`AbortError`), or else. */
  | { failed: { code?: string; name?: string; message: string } };

/** The result of a command that exited 0; the error a caller can act on otherwise. */
export function commandResult(cmd: string, args: string[], outcome: CommandOutcome): CommandResult {
  const line = [cmd, ...args].join(" ");
  if ("failed" in outcome) {
    const e = outcome.failed;
    const cause = Object.assign(new Error(e.message), { code: e.code, name: e.name ?? "Error" });
    if (e.code === "ENOENT") {
      throw new WrennError("failed_precondition", `'${cmd}' is not installed (run 'wrenn setup')`, {
        cause,
      });
    }
    if (e.name === "AbortError") throw new WrennError("cancelled", `${line}: cancelled`, { cause });
    throw new CommandError(line, null, e.message, cause);
  }
  if (outcome.exitCode === 0) return { stdout: outcome.stdout, stderr: outcome.stderr };
  throw new CommandError(line, outcome.exitCode, outcome.stderr);
}

/** Runs a command as a child of this process, to its end (see Runner). */
export function runOutcome(
  cmd: string,
  args: string[],
  options: CommandOptions = {},
): Promise<CommandOutcome> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      stdio: ["pipe", "pipe", "pipe"],
      signal: options.signal,
      timeout: options.timeoutMs,
      env: options.env,
      cwd: options.cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e: NodeJS.ErrnoException) =>
      resolve({ failed: { code: e.code, name: e.name, message: e.message } }),
    );
    child.on("close", (exitCode) =>
      resolve({
        exitCode,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
    child.stdin.on("error", () => {
      // The command may exit without reading its input; its exit status says what happened.
    });
    child.stdin.end(options.input);
  });
}

export const runCommand: Runner = async (cmd, args, options = {}) =>
  commandResult(cmd, args, await runOutcome(cmd, args, options));
