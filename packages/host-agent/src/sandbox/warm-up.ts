/**
 * Running what a claim and a first command run, so a VM has done it once
 * before a user waits on it. Under TCG every piece of guest code is
 * translated the first time it runs in a QEMU process, and envd's
 * JavaScript is compiled again by V8 as it gets hot (new code, translated
 * again).
 */
import { WrennError } from "@wrenn/shared/errors.ts";
import { exec } from "./exec.ts";
import type { SandboxHost } from "./host.ts";

/**
 * `rounds` of /init (with the sandbox's own `token`) and the commands E2B's
 * SDK (a login bash) and /v1 (sh -c) start, as each of `users` (undefined:
 * the default), with output on both streams: the path a command's output
 * takes (pipe, envd's data events, the agent's buffers) is code a silent
 * command never runs.
 */
export async function warmUp(
  host: SandboxHost,
  id: string,
  opts: { rounds: number; token: string; users: (string | undefined)[] },
): Promise<void> {
  const { envd } = host.registry.running(id);
  for (let round = 0; round < opts.rounds; round++) {
    await envd.init({ envVars: {}, accessToken: opts.token, defaultUser: "user" });
    for (const user of opts.users) {
      const run = await exec(host, id, {
        cmd: "/bin/bash",
        args: ["-l", "-c", "/bin/sh -c 'echo warm; echo warm >&2'"],
        timeoutSec: 30,
        ...(user ? { user } : {}),
      });
      if (run.exitCode !== 0 || run.stdout.toString() !== "warm\n") {
        throw new WrennError(
          "internal",
          `warm-up exited ${run.exitCode}: ${run.stderr.toString()}`,
        );
      }
    }
  }
}
