/**
 * Making a warm pool entry: a create like any other under a pool id, with
 * a token of its own and no env (a claim sets both), then a warm-up.
 */
import { randomBytes } from "node:crypto";
import { WrennError } from "@wrenn/shared/errors.ts";
import { timed } from "@wrenn/shared/log.ts";
import { create, sourceKey } from "./create.ts";
import { destroy } from "./destroy.ts";
import { exec } from "./exec.ts";
import type { SandboxHost } from "./host.ts";
import type { Recipe } from "./pool.ts";

/**
 * Rounds of the warm-up. Under TCG every piece of guest code is translated
 * the first time it runs in a VM, and envd's JavaScript is compiled again
 * by V8 as it gets hot (new code, translated again): the first /init and
 * command after a restore take hundreds of milliseconds, the third tens.
 */
const WARM_ROUNDS = 3;

/** Makes the entry; returns the source it was restored from (the pool's key). */
export async function makePoolEntry(
  host: SandboxHost,
  id: string,
  recipe: Recipe,
): Promise<string> {
  const token = randomBytes(16).toString("hex");
  const record = await create(host, {
    template: recipe.template,
    vcpus: recipe.vcpus,
    memoryMb: recipe.memoryMb,
    diskSizeMb: recipe.diskSizeMb,
    id,
    timeoutSec: 0,
    envVars: {},
    envdAccessToken: token,
  });
  try {
    const key = sourceKey(record);
    if (key === null) throw new WrennError("internal", "the entry booted instead of restoring");
    await timed(host.log.child({ sandbox: id }), "pool.warm", () => warm(host, id, token));
    return key;
  } catch (err) {
    await destroy(host, id);
    throw err;
  }
}

/** What a claim and a first command run: /init, and what E2B's SDK (a login bash) and /v1 (sh -c) start, with output. */
async function warm(host: SandboxHost, id: string, token: string): Promise<void> {
  const { envd } = host.registry.running(id);
  for (let round = 0; round < WARM_ROUNDS; round++) {
    await envd.init({ envVars: {}, accessToken: token, defaultUser: "user" });
    // Output on both streams: the path a command's output takes (pipe, envd's
    // data events, the agent's buffers) is code a silent command never runs.
    const run = await exec(host, id, {
      cmd: "/bin/bash",
      args: ["-l", "-c", "/bin/sh -c 'echo warm; echo warm >&2'"],
      timeoutSec: 30,
    });
    if (run.exitCode !== 0 || run.stdout.toString() !== "warm\n") {
      throw new WrennError("internal", `warm-up exited ${run.exitCode}: ${run.stderr.toString()}`);
    }
  }
}
