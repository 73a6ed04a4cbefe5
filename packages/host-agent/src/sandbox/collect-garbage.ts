import { WrennError } from "@wrenn/shared/errors.ts";
import { exec } from "./exec.ts";
import type { SandboxHost } from "./host.ts";

/**
 * Asks a boot snapshot builder's envd for a full garbage collection (its
 * SIGUSR2) before its memory is saved for clones, so that none of their
 * first requests depends on how full the builder left its young generation
 * (in 2 of 4 builds one of a clone's first five requests paid for a
 * scavenge, ≈ 40 ms under TCG). envd runs the collection before it reports
 * the command's end (the signal reaches it first). Only an envd started
 * with `--expose-gc` is asked: one in an image built before has no handler,
 * and the signal would end it. Not for snapshot templates: clones of a used
 * sandbox saved after a collection held ≈ 3 MiB more beyond guest RAM and
 * answered a restored create's first exec ≈ 40 ms later (two templates
 * each way).
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
