import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { CommandError } from "@wrenn/shared/command.ts";
import { WrennError } from "@wrenn/shared/errors.ts";

/**
 * How far a step's work is: bytes (downloads, the image being filled) or
 * items (packages unpacked), against a total when one is known. A new label
 * starts a new measure within the step (debootstrap downloads, then unpacks).
 */
export interface Measure {
  label: string;
  done: number;
  total?: number;
  unit: "bytes" | "items";
}

/** How a build reports what it is doing: step headers, the detail lines of long commands, and measures. */
export interface Progress {
  step(message: string): void;
  detail(line: string): void;
  measure(m: Measure): void;
}

export const silentProgress: Progress = { step: () => {}, detail: () => {}, measure: () => {} };

/**
 * Reports `read()` (bytes written so far, e.g. a growing file) every
 * `everyMs` until the returned stop is called; for work whose tool says
 * nothing about its progress (apt-get download off a terminal, mkfs.ext4 -d).
 */
export function pollBytes(
  read: () => Promise<number>,
  report: (done: number) => void,
  everyMs = 250,
): () => Promise<void> {
  let last: Promise<void> = Promise.resolve();
  const tick = () => {
    last = read().then(report, () => {});
  };
  tick();
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await last;
    tick();
    await last;
  };
}

/**
 * Runs a long host command (debootstrap, apt-get) and forwards its output line
 * by line, so the user sees progress instead of minutes of silence. The last
 * lines are kept for the error when it fails.
 */
export function runStreaming(
  cmd: string,
  args: string[],
  onLine: (line: string) => void,
  opts: {
    cwd?: string;
    env?: NodeJS.ProcessEnv;
    /** Lines of the child's fd 3 (debootstrap --debian-installer's status protocol). */
    onStatus?: (line: string) => void;
    /** What the error names besides the last lines of output (the status channel's errors). */
    failure?: () => string;
  } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ["ignore", "pipe", "pipe", opts.onStatus ? "pipe" : "ignore"],
    });
    const tail: string[] = [];
    const take = (line: string): void => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      onLine(line);
    };
    if (child.stdout === null || child.stderr === null) throw new Error("spawn gave no pipes");
    createInterface({ input: child.stdout }).on("line", take);
    createInterface({ input: child.stderr }).on("line", take);
    const status = child.stdio[3];
    if (opts.onStatus && status && "on" in status) {
      createInterface({ input: status as NodeJS.ReadableStream }).on("line", opts.onStatus);
    }
    child.on("error", (e: NodeJS.ErrnoException) => {
      reject(
        e.code === "ENOENT"
          ? new WrennError("failed_precondition", `'${cmd}' is not installed (run 'wrenn setup')`)
          : new CommandError([cmd, ...args].join(" "), null, e.message, e),
      );
    });
    child.on("close", (code) => {
      if (code === 0) resolve();
      else {
        const why = opts.failure?.() ?? "";
        reject(new CommandError([cmd, ...args].join(" "), code, [...tail, why].join("\n")));
      }
    });
  });
}
