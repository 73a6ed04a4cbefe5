import { WrennError } from "@wrenn/shared/errors.ts";
import { exec } from "./exec.ts";
import type { SandboxHost } from "./host.ts";

/**
 * Asks a sandbox's envd for a full garbage collection (its SIGUSR2) before
 * its memory is saved for clones: a boot snapshot's builder, a snapshot
 * template. The young generation saved is what every clone starts with:
 * left full, one of a clone's first requests paid for a collection (a
 * scavenge under TCG ≈ 40 ms, its code translated afresh), which one
 * depending on the build, and a warm pool entry's warm-up ran it, which put
 * V8's collector in every claimed VMM's translation cache (≈ 8.7 MiB).
 * envd runs the collection before it reports the command's end (the signal
 * reaches it first). Only an envd started with `--expose-gc` is asked: one
 * in an image built before has no handler, and the signal would end it.
 */
export async function collectGarbage(host: SandboxHost, id: string): Promise<void> {
  const run = await exec(host, id, {
    cmd: "/bin/sh",
    args: [
      "-c",
      `for p in /proc/[0-9]*; do case "$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)" in ` +
        `"node "*--expose-gc*envd.cjs*) kill -USR2 "\${p#/proc/}";; esac; done`,
    ],
    user: "root",
    timeoutSec: 30,
  });
  if (run.exitCode !== 0) {
    throw new WrennError(
      "internal",
      `asking envd to collect exited ${run.exitCode}: ${run.stderr.toString()}`,
    );
  }
}
