import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { CommandError } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

/** How a build reports what it is doing: step headers, and the detail lines of long commands. */
export interface Progress {
  step(message: string): void;
  detail(line: string): void;
}

export const silentProgress: Progress = { step: () => {}, detail: () => {} };

/**
 * Runs a long host command (debootstrap, apt-get) and forwards its output line
 * by line, so the user sees progress instead of minutes of silence. The last
 * lines are kept for the error when it fails.
 */
export function runStreaming(
  cmd: string,
  args: string[],
  onLine: (line: string) => void,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const tail: string[] = [];
    const take = (line: string): void => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      onLine(line);
    };
    createInterface({ input: child.stdout }).on("line", take);
    createInterface({ input: child.stderr }).on("line", take);
    child.on("error", (e: NodeJS.ErrnoException) => {
      reject(
        e.code === "ENOENT"
          ? new WrennError("failed_precondition", `'${cmd}' is not installed (run 'wrenn setup')`)
          : new CommandError([cmd, ...args].join(" "), null, e.message, e),
      );
    });
    child.on("close", (code) => {
      if (code === 0) resolve();
      else reject(new CommandError([cmd, ...args].join(" "), code, tail.join("\n")));
    });
  });
}
