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

export const runCommand: Runner = (cmd, args, options = {}) =>
  new Promise((resolve, reject) => {
    const line = [cmd, ...args].join(" ");
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
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") {
        reject(
          new WrennError("failed_precondition", `'${cmd}' is not installed (run 'wrenn setup')`, {
            cause: e,
          }),
        );
      } else if (e.name === "AbortError") {
        reject(new WrennError("cancelled", `${line}: cancelled`, { cause: e }));
      } else {
        reject(new CommandError(line, null, e.message, e));
      }
    });
    child.on("close", (code) => {
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (code === 0) resolve({ stdout, stderr });
      else reject(new CommandError(line, code, stderr));
    });
    child.stdin.on("error", () => {
      // The command may exit without reading its input; its exit status says what happened.
    });
    child.stdin.end(options.input);
  });
