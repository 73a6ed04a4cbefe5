/** envd as its own process, for tests that need it as the guest runs it. */
import { spawn, type ChildProcessByStdio, type SpawnOptionsWithoutStdio } from "node:child_process";
import { userInfo } from "node:os";
import type { Readable } from "node:stream";
import type { TestContext } from "node:test";

export interface SpawnedEnvd {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** The URL envd logged it listens on. */
  url: string;
  /** Its stderr (pino JSON lines) so far: it may trail an HTTP answer. */
  log: () => string;
  /** Its stdout so far (V8's traces: `nodeFlags` may ask for some). */
  out: () => string;
  exited: Promise<number | null>;
}

/**
 * Runs `node [nodeFlags] <entry>` (envd's sources or bundle) on a free
 * loopback port with `user` as its default user, and resolves once it logs
 * "envd listening"; rejects with its log if it exits first. SIGKILLed when
 * the test ends, also after a failure.
 */
export async function spawnEnvd(
  t: TestContext,
  entry: string,
  user = userInfo().username,
  { nodeFlags = [], ...options }: SpawnOptionsWithoutStdio & { nodeFlags?: string[] } = {},
): Promise<SpawnedEnvd> {
  const args = [...nodeFlags, entry, "--port", "0", "--host", "127.0.0.1", "--default-user", user];
  const child = spawn(process.execPath, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  t.after(async () => {
    child.kill("SIGKILL");
    await exited;
  });
  let log = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      log += chunk;
      const m = /"url":"(http:\/\/[^"]+)".*"envd listening"/.exec(log);
      if (m?.[1]) resolve(m[1]);
    });
    void exited.then((code) => reject(new Error(`envd exited (${code}): ${log}`)));
  });
  return { child, url, log: () => log, out: () => out, exited };
}
