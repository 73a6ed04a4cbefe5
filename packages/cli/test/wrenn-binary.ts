import { spawn } from "node:child_process";
import { join, resolve } from "node:path";

export const repo = resolve(import.meta.dirname, "../../..");

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `./wrenn` as a user's shell would: own environment (a temp
 * config dir, no inherited WRENN_API_* unless given), optional stdin.
 */
export function wrenn(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number } = {},
): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.WRENN_API_URL;
  delete env.WRENN_API_KEY;
  delete env.FORCE_COLOR;
  const child = spawn(join(repo, "wrenn"), args, {
    env: { ...env, ...options.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (d: Buffer) => out.push(d));
  child.stderr.on("data", (d: Buffer) => err.push(d));
  child.stdin.end(options.input ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => {
      clearTimeout(timer);
      done({
        code,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
  });
}

/** Every command path `wrenn --help` leads to, found by reading the help pages. */
export async function commandPaths(prefix: string[] = []): Promise<string[][]> {
  const { stdout } = await wrenn([...prefix, "--help"]);
  const section = stdout.split(/^Commands:\n/m)[1] ?? "";
  const names = [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)]
    .map((m) => m[1]!)
    .filter((n) => n !== "help");
  const below = await Promise.all(names.map((name) => commandPaths([...prefix, name])));
  return names.flatMap((name, i) => [[...prefix, name], ...below[i]!]);
}
